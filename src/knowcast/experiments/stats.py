"""Statistics for A/B tests as pure functions over sufficient statistics.

Every test takes one :class:`SampleStats` (or :class:`RatioStats`) per arm, so the same code serves a
database query (which returns ``n, sum, sum_squares``), a DataFrame, or a dashboard. The formulas follow
GrowthBook's open-source stats engine (gbstats) so our numbers can be checked against its published test
cases; each function's docstring states its formula.

Notation: arm ``a`` is control, ``b`` treatment; ``m`` a mean, ``v`` a per-unit variance, ``n`` units.

* absolute effect ``d = m_b - m_a``, ``se^2 = v_b/n_b + v_a/n_a``
* relative effect ``d = (m_b - m_a) / m_a`` with the delta method
  ``se^2 = v_b / (m_a^2 n_b) + v_a m_b^2 / (m_a^4 n_a)``
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from scipy import stats as _st

__all__ = [
    "SampleStats",
    "RatioStats",
    "CupedStats",
    "FrequentistResult",
    "BayesianResult",
    "SequentialResult",
    "CupedResult",
    "SampleSizeResult",
    "effect_moments",
    "frequentist_test",
    "bayesian_test",
    "sequential_test",
    "cuped",
    "srm_p_value",
    "SRM_THRESHOLD",
    "adjust_p_values",
    "sample_size",
    "expected_duration_days",
]

#: Sample-ratio mismatch is flagged below this chi-square p-value (GrowthBook's default).
SRM_THRESHOLD = 0.001


class _Moments(Protocol):
    """Anything with a unit count, a mean and a per-unit variance can be tested."""

    @property
    def n(self) -> int: ...

    @property
    def mean(self) -> float: ...

    @property
    def variance(self) -> float: ...


# --------------------------------------------------------------------------------------------------
# sufficient statistics
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleStats:
    """Sufficient statistics of one arm: unit count, sum and sum of squares of the per-unit values.

    ``kind="proportion"`` marks a 0/1 metric (``sum == sum_squares`` = converters); its variance is the
    binomial ``p(1-p)`` as in gbstats' ``ProportionStatistic``. ``kind="mean"`` uses the unbiased sample
    variance ``(sum_squares - sum^2/n) / (n-1)`` (gbstats' ``SampleMeanStatistic``).
    """

    n: int
    sum: float
    sum_squares: float
    kind: Literal["mean", "proportion"] = "mean"

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"SampleStats.n must be >= 0, got {self.n}")
        if self.kind not in ("mean", "proportion"):
            raise ValueError(f"SampleStats.kind must be 'mean' or 'proportion', got {self.kind!r}")
        if self.kind == "proportion":
            if not 0 <= self.sum <= self.n:
                raise ValueError(f"SampleStats.sum (converters) must be in [0, n={self.n}], got {self.sum}")
            if self.sum != self.sum_squares:
                raise ValueError("a proportion needs sum == sum_squares == number of converters")
        elif self.sum_squares < 0:
            raise ValueError(f"SampleStats.sum_squares must be >= 0, got {self.sum_squares}")

    @classmethod
    def proportion(cls, n: int, converters: float) -> SampleStats:
        """A conversion metric: ``n`` exposed units of which ``converters`` converted."""
        return cls(int(n), float(converters), float(converters), "proportion")

    @classmethod
    def from_values(cls, values: Sequence[float] | np.ndarray, kind: Literal["mean", "proportion"] = "mean"
                    ) -> SampleStats:
        """Sufficient statistics of per-unit values (NaN is refused: a unit without data is a 0)."""
        x = np.asarray(values, dtype=float)
        if np.isnan(x).any():
            raise ValueError("SampleStats.from_values: values contain NaN")
        return cls(int(x.size), float(x.sum()), float((x * x).sum()), kind)

    @property
    def mean(self) -> float:
        return self.sum / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        if self.kind == "proportion":
            p = self.mean
            return p * (1.0 - p)
        if self.n <= 1:
            return 0.0
        return max((self.sum_squares - self.sum**2 / self.n) / (self.n - 1), 0.0)

    def __add__(self, other: SampleStats) -> SampleStats:
        kind = self.kind if self.kind == other.kind else "mean"
        return SampleStats(self.n + other.n, self.sum + other.sum, self.sum_squares + other.sum_squares, kind)


def _covariance(n: int, a: SampleStats, b: SampleStats, sum_products: float) -> float:
    """Covariance of two per-unit values from their sums and the sum of their products."""
    if n <= 1:
        return 0.0
    if a.kind == "proportion" and b.kind == "proportion":
        return sum_products / n - a.sum * b.sum / n**2
    return (sum_products - a.sum * b.sum / n) / (n - 1)


@dataclass(frozen=True)
class RatioStats:
    """A ratio metric ``sum(m) / sum(d)`` over units (e.g. revenue per session), by the delta method.

    ``variance`` is the per-unit variance of the ratio estimate:
    ``v_m/m_d^2 - 2 cov(m,d) m_m/m_d^3 + m_m^2 v_d/m_d^4``; dividing by ``n`` gives its squared standard
    error, so ratio metrics plug into every test below unchanged.
    """

    numerator: SampleStats
    denominator: SampleStats
    sum_products: float

    def __post_init__(self) -> None:
        if self.numerator.n != self.denominator.n:
            raise ValueError(
                f"RatioStats: numerator.n={self.numerator.n} != denominator.n={self.denominator.n}"
            )

    @classmethod
    def from_values(cls, numerator: Sequence[float] | np.ndarray, denominator: Sequence[float] | np.ndarray
                    ) -> RatioStats:
        m = np.asarray(numerator, dtype=float)
        d = np.asarray(denominator, dtype=float)
        if m.shape != d.shape:
            raise ValueError(f"RatioStats.from_values: numerator has {m.size} values, denominator {d.size}")
        return cls(SampleStats.from_values(m), SampleStats.from_values(d), float((m * d).sum()))

    @property
    def n(self) -> int:
        return self.numerator.n

    @property
    def mean(self) -> float:
        return self.numerator.sum / self.denominator.sum if self.denominator.sum else 0.0

    @property
    def covariance(self) -> float:
        return _covariance(self.n, self.numerator, self.denominator, self.sum_products)

    @property
    def variance(self) -> float:
        mm, md = self.numerator.mean, self.denominator.mean
        if md == 0 or self.n <= 1:
            return 0.0
        v = (
            self.numerator.variance / md**2
            - 2 * self.covariance * mm / md**3
            + mm**2 * self.denominator.variance / md**4
        )
        return max(v, 0.0)


@dataclass(frozen=True)
class CupedStats:
    """One arm's metric after exposure (``post``), the same metric before (``pre``) and ``sum(post*pre)``."""

    post: SampleStats
    pre: SampleStats
    sum_products: float

    def __post_init__(self) -> None:
        if self.post.n != self.pre.n:
            raise ValueError(f"CupedStats: post.n={self.post.n} != pre.n={self.pre.n}")

    @classmethod
    def from_values(cls, post: Sequence[float] | np.ndarray, pre: Sequence[float] | np.ndarray,
                    kind: Literal["mean", "proportion"] = "mean") -> CupedStats:
        y = np.asarray(post, dtype=float)
        x = np.asarray(pre, dtype=float)
        if y.shape != x.shape:
            raise ValueError(f"CupedStats.from_values: post has {y.size} values, pre {x.size}")
        return cls(SampleStats.from_values(y, kind), SampleStats.from_values(x, kind), float((x * y).sum()))

    @property
    def n(self) -> int:
        return self.post.n

    @property
    def covariance(self) -> float:
        return _covariance(self.n, self.post, self.pre, self.sum_products)


# --------------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrequentistResult:
    """Welch t-test: ``expected`` effect, its ``ci``, two-sided ``p_value``; ``se`` and Welch ``dof``."""

    expected: float
    ci: tuple[float, float]
    p_value: float
    se: float
    dof: float
    relative: bool
    error: str | None = None


@dataclass(frozen=True)
class BayesianResult:
    """Posterior of the effect: mean, credible interval, P(treatment better), expected loss.

    ``risk = (risk_control, risk_treatment)``: the expected loss of shipping control resp. treatment.
    """

    expected: float
    ci: tuple[float, float]
    chance_to_win: float
    risk: tuple[float, float]
    se: float
    relative: bool
    error: str | None = None


@dataclass(frozen=True)
class SequentialResult:
    """Always-valid confidence interval and p-value (valid at any number of looks)."""

    expected: float
    ci: tuple[float, float]
    p_value: float
    se: float
    n_star: float
    relative: bool
    error: str | None = None


@dataclass(frozen=True)
class CupedResult:
    """CUPED-adjusted test with the unadjusted one next to it and the variance reduction achieved.

    ``variance_reduction = 1 - se_adjusted^2 / se_unadjusted^2`` (0.3 means 30 % less variance, i.e. the
    same precision with 30 % fewer users).
    """

    theta: float
    adjusted: FrequentistResult | BayesianResult | SequentialResult
    unadjusted: FrequentistResult | BayesianResult | SequentialResult
    variance_reduction: float


@dataclass(frozen=True)
class SampleSizeResult:
    per_variant: int
    total: int
    baseline: float
    mde_absolute: float
    alpha: float
    power: float


# --------------------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------------------


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _check_stats(name: str, s: object) -> None:
    if not all(hasattr(s, a) for a in ("n", "mean", "variance")):
        raise TypeError(f"{name} must be SampleStats or RatioStats, got {type(s).__name__}")


def effect_moments(control: _Moments, treatment: _Moments, relative: bool = True
                   ) -> tuple[float, float, str | None]:
    """Point estimate and standard error of the effect; an error string when it is not estimable."""
    _check_stats("control", control)
    _check_stats("treatment", treatment)
    if control.n == 0 or treatment.n == 0:
        return 0.0, 0.0, "an arm has no units"
    if relative and control.mean == 0:
        return 0.0, 0.0, "control mean is zero: relative effect undefined"
    va, vb = control.variance, treatment.variance
    if va <= 0 or vb <= 0:
        return 0.0, 0.0, "zero or negative variance in an arm"
    ma, mb = control.mean, treatment.mean
    if relative:
        d = (mb - ma) / ma
        var = vb / (ma**2 * treatment.n) + va * mb**2 / (ma**4 * control.n)
    else:
        d = mb - ma
        var = vb / treatment.n + va / control.n
    return float(d), float(math.sqrt(var)), None


def _welch_dof(va: float, na: int, vb: float, nb: int) -> float:
    """Welch–Satterthwaite degrees of freedom."""
    if na <= 1 or nb <= 1 or va <= 0 or vb <= 0:
        return 1.0
    num = (vb / nb + va / na) ** 2
    den = vb**2 / (nb**2 * (nb - 1)) + va**2 / (na**2 * (na - 1))
    return float(num / den)


def _freq_from_moments(d: float, se: float, dof: float, alpha: float, relative: bool) -> FrequentistResult:
    half = float(_st.t.ppf(1 - alpha / 2, dof)) * se
    p = float(2 * _st.t.sf(abs(d / se), dof)) if se > 0 else 1.0
    return FrequentistResult(d, (d - half, d + half), p, se, dof, relative)


def _bayes_from_moments(d: float, se: float, alpha: float, relative: bool,
                        prior_mean: float | None, prior_variance: float | None) -> BayesianResult:
    if prior_variance is not None:
        if prior_variance <= 0:
            raise ValueError(f"prior_variance must be > 0, got {prior_variance}")
        prec = 1 / se**2 + 1 / prior_variance
        d = (d / se**2 + (prior_mean or 0.0) / prior_variance) / prec
        se = math.sqrt(1 / prec)
    z = float(_st.norm.ppf(1 - alpha / 2))
    ctw = float(_st.norm.sf(0.0, loc=d, scale=se))
    # expected loss, closed form of the truncated-normal means:
    # E[max(X,0)] = mu Phi(mu/s) + s phi(mu/s); E[max(-X,0)] = -mu Phi(-mu/s) + s phi(mu/s)
    k = d / se
    pdf = float(_st.norm.pdf(k))
    risk_ctrl = d * float(_st.norm.cdf(k)) + se * pdf
    risk_trt = -d * float(_st.norm.cdf(-k)) + se * pdf
    return BayesianResult(d, (d - z * se, d + z * se), ctw, (risk_ctrl, risk_trt), se, relative)


def _sequential_from_moments(d: float, se: float, n: int, n_star: float, alpha: float, relative: bool
                             ) -> SequentialResult:
    # normal-mixture confidence sequence (Howard et al. 2021; Waudby-Smith et al. 2023, eq. 155), tuned so
    # that the interval is tightest at n = n_star units in total
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / n_star
    s2 = se**2 * n
    tr = n * rho2 + 1
    half = math.sqrt(s2) * math.sqrt(2 * tr * math.log(math.sqrt(tr) / alpha) / (n**2 * rho2))
    st2 = d**2 * n / se**2
    log_e = rho2 * st2 / (2 * tr) - 0.5 * math.log(tr)
    p = float(min(1.0, math.exp(-log_e)))
    return SequentialResult(d, (d - half, d + half), p, se, n_star, relative)


# --------------------------------------------------------------------------------------------------
# public tests
# --------------------------------------------------------------------------------------------------


def frequentist_test(control: _Moments, treatment: _Moments, relative: bool = True, alpha: float = 0.05
                     ) -> FrequentistResult:
    """Welch's two-sided t-test of the (relative or absolute) effect.

    ``t = d / se``, Welch–Satterthwaite ``dof``; ``ci = d ± t_{1-alpha/2, dof} se``;
    ``p = 2 (1 - T_dof(|t|))``. For absolute effects this is ``scipy.stats.ttest_ind_from_stats``
    with ``equal_var=False``; relative effects use the delta method as gbstats' ``TwoSidedTTest``.
    """
    _check_alpha(alpha)
    d, se, err = effect_moments(control, treatment, relative)
    if err:
        return FrequentistResult(0.0, (0.0, 0.0), 1.0, 0.0, 0.0, relative, err)
    dof = _welch_dof(control.variance, control.n, treatment.variance, treatment.n)
    return _freq_from_moments(d, se, dof, alpha, relative)


def bayesian_test(control: _Moments, treatment: _Moments, relative: bool = True, alpha: float = 0.05,
                  prior_mean: float | None = None, prior_variance: float | None = None) -> BayesianResult:
    """Bayesian test on the normal approximation of the effect (gbstats' ``EffectBayesianABTest``).

    With the default flat (improper) prior the posterior of the effect is ``N(d, se^2)``; a proper prior
    ``N(prior_mean, prior_variance)`` on the effect gives precision ``1/se^2 + 1/prior_variance``.
    ``chance_to_win = P(effect > 0)``; credible interval ``mean ± z_{1-alpha/2} sd``;
    ``risk = (E[max(effect, 0)], E[max(-effect, 0)])``: what is lost by keeping control resp. shipping
    treatment if we are wrong.
    """
    _check_alpha(alpha)
    d, se, err = effect_moments(control, treatment, relative)
    if err:
        return BayesianResult(0.0, (0.0, 0.0), 0.5, (0.0, 0.0), 0.0, relative, err)
    return _bayes_from_moments(d, se, alpha, relative, prior_mean, prior_variance)


def sequential_test(control: _Moments, treatment: _Moments, n_star: float, relative: bool = True,
                    alpha: float = 0.05) -> SequentialResult:
    """Always-valid two-sided test (gbstats' ``SequentialTwoSidedTTest``).

    With ``N = n_a + n_b``, ``rho^2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / n_star``, ``s^2 = se^2 N``:
    ``half-width = s sqrt(2 (N rho^2 + 1) ln(sqrt(N rho^2 + 1) / alpha) / (N rho)^2)`` and
    ``p = min(1, sqrt(N rho^2 + 1) exp(-rho^2 d^2 N / (2 se^2 (N rho^2 + 1))))``.
    ``n_star`` is the total sample size where the interval should be tightest (gbstats' default 5000).
    """
    _check_alpha(alpha)
    if n_star <= 0:
        raise ValueError(f"n_star must be > 0, got {n_star}")
    d, se, err = effect_moments(control, treatment, relative)
    if err:
        return SequentialResult(0.0, (0.0, 0.0), 1.0, 0.0, n_star, relative, err)
    return _sequential_from_moments(d, se, control.n + treatment.n, n_star, alpha, relative)


def cuped(control: CupedStats, treatment: CupedStats, relative: bool = True, alpha: float = 0.05,
          method: Literal["frequentist", "bayesian", "sequential"] = "frequentist",
          n_star: float = 5000.0) -> CupedResult:
    """CUPED (Deng et al. 2013): regress out the pre-experiment value of the same metric.

    ``theta = cov(post, pre) / var(pre)`` pooled over both arms; each arm's adjusted mean is
    ``mean(post) - theta mean(pre)`` with per-unit variance
    ``v_post + theta^2 v_pre - 2 theta cov(post, pre)``. The relative effect divides by the *unadjusted*
    control mean, with gbstats' delta-method variance (``frequentist_variance_relative_cuped``).
    """
    _check_alpha(alpha)
    for name, s in (("control", control), ("treatment", treatment)):
        if not isinstance(s, CupedStats):
            raise TypeError(f"{name} must be CupedStats, got {type(s).__name__}")
    a, b = control, treatment
    n = a.n + b.n
    jpost = SampleStats(n, a.post.sum + b.post.sum, a.post.sum_squares + b.post.sum_squares, a.post.kind)
    jpre = SampleStats(n, a.pre.sum + b.pre.sum, a.pre.sum_squares + b.pre.sum_squares, a.pre.kind)
    theta = 0.0
    if jpre.variance > 0 and jpost.variance > 0:
        theta = _covariance(n, jpost, jpre, a.sum_products + b.sum_products) / jpre.variance

    def run(th: float) -> FrequentistResult | BayesianResult | SequentialResult:
        ma_u = a.post.mean
        ma = a.post.mean - th * a.pre.mean
        mb = b.post.mean - th * b.pre.mean
        va = a.post.variance + th**2 * a.pre.variance - 2 * th * a.covariance
        vb = b.post.variance + th**2 * b.pre.variance - 2 * th * b.covariance
        err = None
        if a.n == 0 or b.n == 0:
            err = "an arm has no units"
        elif relative and ma_u == 0:
            err = "control mean is zero: relative effect undefined"
        elif va <= 0 or vb <= 0:
            err = "zero or negative variance in an arm"
        if err is None:
            if relative:
                d = (mb - ma) / ma_u
                v_trt = vb / (b.n * ma_u**2)
                c = -b.post.mean
                v_ctrl = (a.post.variance * c**2 / ma_u**2 + 2 * th * a.covariance * c / ma_u
                          + th**2 * a.pre.variance) / (a.n * ma_u**2)
                var = v_trt + v_ctrl
            else:
                d = mb - ma
                var = vb / b.n + va / a.n
            se = math.sqrt(var)
        if method == "frequentist":
            if err:
                return FrequentistResult(0.0, (0.0, 0.0), 1.0, 0.0, 0.0, relative, err)
            return _freq_from_moments(d, se, _welch_dof(va, a.n, vb, b.n), alpha, relative)
        if method == "bayesian":
            if err:
                return BayesianResult(0.0, (0.0, 0.0), 0.5, (0.0, 0.0), 0.0, relative, err)
            return _bayes_from_moments(d, se, alpha, relative, None, None)
        if method == "sequential":
            if err:
                return SequentialResult(0.0, (0.0, 0.0), 1.0, 0.0, n_star, relative, err)
            return _sequential_from_moments(d, se, n, n_star, alpha, relative)
        raise ValueError(f"method must be 'frequentist', 'bayesian' or 'sequential', got {method!r}")

    adjusted, unadjusted = run(theta), run(0.0)
    vr = 1 - adjusted.se**2 / unadjusted.se**2 if unadjusted.se > 0 else 0.0
    return CupedResult(float(theta), adjusted, unadjusted, float(vr))


def srm_p_value(counts: Sequence[int], weights: Sequence[float]) -> float:
    """Sample-ratio mismatch: chi-square goodness of fit of observed units per arm to the weights.

    ``chi2 = sum((o - e)^2 / e)``, ``e = N w / sum(w)``, ``k - 1`` degrees of freedom. A result is
    untrustworthy when ``p < SRM_THRESHOLD`` (0.001): assignment or logging is broken.
    """
    o = np.asarray(counts, dtype=float)
    w = np.asarray(weights, dtype=float)
    if o.ndim != 1 or o.shape != w.shape or o.size < 2:
        raise ValueError(f"srm_p_value: need >= 2 counts and as many weights, got {o.size} and {w.size}")
    if (o < 0).any():
        raise ValueError(f"srm_p_value: counts must be >= 0, got {list(o)}")
    if (w <= 0).any():
        raise ValueError(f"srm_p_value: weights must be > 0, got {list(w)}")
    total = o.sum()
    if total == 0:
        return 1.0
    e = total * w / w.sum()
    chi2 = float(((o - e) ** 2 / e).sum())
    return float(_st.chi2.sf(chi2, o.size - 1))


def adjust_p_values(p_values: Sequence[float], method: Literal["holm", "bh"] = "holm") -> list[float]:
    """Multiple-testing adjusted p-values, in the input order.

    ``holm``: sort ascending, ``p_(i) (m - i + 1)`` with a running maximum, capped at 1 (controls the
    family-wise error rate). ``bh`` (Benjamini–Hochberg): ``p_(i) m / i`` with a running minimum from the
    top (controls the false discovery rate). Same numbers as statsmodels' ``multipletests``.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError("adjust_p_values: p_values must be a flat sequence")
    if p.size == 0:
        return []
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"adjust_p_values: p-values must be in [0, 1], got {list(p)}")
    m = p.size
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    if method == "holm":
        adj = np.maximum.accumulate(ps * (m - np.arange(m)))
    elif method == "bh":
        adj = np.minimum.accumulate((ps * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"adjust_p_values: method must be 'holm' or 'bh', got {method!r}")
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return [float(x) for x in out]


def sample_size(baseline: float, mde: float, alpha: float = 0.05, power: float = 0.8, relative: bool = True,
                std: float | None = None, n_variants: int = 2) -> SampleSizeResult:
    """Units per variant for a two-sided test to detect ``mde`` with the given power.

    Conversion metric (``std`` None, ``baseline`` a rate ``p1``): ``p2 = p1 (1 + mde)`` (or ``p1 + mde``),
    ``n = (z_{1-alpha/2} + z_{power})^2 (p1(1-p1) + p2(1-p2)) / (p2 - p1)^2``.
    Continuous metric (``std`` given, ``baseline`` its mean): ``n = 2 (z_a + z_b)^2 std^2 / delta^2``.
    This is statsmodels' ``NormalIndPower`` with the effect size standardised by the average variance.
    """
    _check_alpha(alpha)
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if mde == 0:
        raise ValueError("mde must be non-zero")
    if n_variants < 2:
        raise ValueError(f"n_variants must be >= 2, got {n_variants}")
    delta = baseline * mde if relative else mde
    z = float(_st.norm.ppf(1 - alpha / 2) + _st.norm.ppf(power))
    if std is None:
        p1, p2 = baseline, baseline + delta
        if not (0 < p1 < 1 and 0 < p2 < 1):
            raise ValueError(f"baseline rate {p1} and target rate {p2} must both be in (0, 1)")
        var_sum = p1 * (1 - p1) + p2 * (1 - p2)
    else:
        if std <= 0:
            raise ValueError(f"std must be > 0, got {std}")
        var_sum = 2 * std**2
    n = math.ceil(z**2 * var_sum / delta**2)
    return SampleSizeResult(n, n * n_variants, baseline, abs(delta), alpha, power)


def expected_duration_days(required_per_variant: int, current_per_variant: Sequence[int],
                           daily_units: float, weights: Sequence[float] | None = None) -> float:
    """Days until every variant reaches ``required_per_variant`` at ``daily_units`` exposed per day.

    Each variant gets ``daily_units * w_i / sum(w)`` per day; the slowest variant decides. 0 when done,
    ``inf`` when there is no traffic.
    """
    cur = np.asarray(current_per_variant, dtype=float)
    w = np.ones_like(cur) if weights is None else np.asarray(weights, dtype=float)
    if cur.shape != w.shape:
        raise ValueError("expected_duration_days: current_per_variant and weights differ in length")
    left = np.maximum(required_per_variant - cur, 0)
    if not left.any():
        return 0.0
    if daily_units <= 0:
        return math.inf
    per_day = daily_units * w / w.sum()
    return float(np.max(left / per_day))


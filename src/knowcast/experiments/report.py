"""The experiment report: per-variant numbers, SRM, guardrails, a recommendation and a forest plot.

Pure function of sufficient statistics, so the API, the CLI and the real-log analyses render the same
dict. The recommendation is deliberately conservative:

1. sample-ratio mismatch (p < 0.001) -> **stop**: the split is broken, no metric can be trusted;
2. a treatment that is significantly better on the decision metric and breaks no guardrail -> **ship** it;
3. every treatment significantly worse on the decision metric -> **stop** (keep control);
4. otherwise **keep running**, with the days left until the sample size for the minimum detectable
   effect is reached; if that is more than ``max_days`` away -> **stop** as inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from knowcast.experiments.stats import (
    SRM_THRESHOLD,
    CupedStats,
    RatioStats,
    SampleStats,
    adjust_p_values,
    bayesian_test,
    cuped,
    expected_duration_days,
    frequentist_test,
    sample_size,
    sequential_test,
    srm_p_value,
)

__all__ = ["build_report", "forest_plot", "format_table"]

Engine = Literal["frequentist", "bayesian", "sequential"]
_Stats = SampleStats | RatioStats | CupedStats


def _plain(stats: _Stats) -> SampleStats | RatioStats:
    return stats.post if isinstance(stats, CupedStats) else stats


def _row(
    control: _Stats, treat: _Stats, engine: Engine, alpha: float, relative: bool, n_star: float
) -> dict[str, Any]:
    """All numbers for one treatment arm against control; ``effect``/``ci`` follow the engine."""
    c, t = _plain(control), _plain(treat)
    f = frequentist_test(c, t, relative, alpha)
    b = bayesian_test(c, t, relative, alpha)
    row: dict[str, Any] = {
        "n": t.n,
        "mean": t.mean,
        "effect": f.expected,
        "ci": list(f.ci),
        "p_value": f.p_value,
        "chance_to_win": b.chance_to_win,
        "risk": list(b.risk),
        "credible_interval": list(b.ci),
        "error": f.error,
    }
    if engine == "bayesian":
        row["ci"] = list(b.ci)
    elif engine == "sequential":
        s = sequential_test(c, t, n_star, relative, alpha)
        row["ci"], row["p_value"] = list(s.ci), s.p_value
    if isinstance(control, CupedStats) and isinstance(treat, CupedStats):
        method = engine
        cr = cuped(control, treat, relative, alpha, method=method, n_star=n_star)
        adj = cr.adjusted
        row["cuped"] = {
            "theta": cr.theta,
            "effect": adj.expected,
            "ci": list(adj.ci),
            "p_value": getattr(adj, "p_value", None),
            "chance_to_win": getattr(adj, "chance_to_win", None),
            "variance_reduction": cr.variance_reduction,
        }
    else:
        row["cuped"] = None
    return row


def _better(
    row: dict[str, Any], engine: Engine, alpha: float, higher_is_better: bool, use_cuped: bool
) -> int:
    """+1 significantly better, -1 significantly worse, 0 not (yet) distinguishable."""
    src = row["cuped"] if use_cuped and row.get("cuped") else row
    if row.get("error"):
        return 0
    if engine == "bayesian":
        ctw = src["chance_to_win"]
        sig_up, sig_down = ctw > 1 - alpha, ctw < alpha
    else:
        lo, hi = src["ci"]
        sig_up, sig_down = lo > 0, hi < 0
    sign = 1 if higher_is_better else -1
    return sign if sig_up else (-sign if sig_down else 0)


def build_report(
    key: str,
    variants: Sequence[str],
    weights: Sequence[float],
    metrics: Mapping[str, Mapping[str, _Stats]],
    decision_metric: str,
    guardrails: Sequence[str] = (),
    higher_is_better: Mapping[str, bool] | None = None,
    engine: Engine = "frequentist",
    alpha: float = 0.05,
    relative: bool = True,
    n_star: float = 5000.0,
    mde: float = 0.05,
    power: float = 0.8,
    daily_units: float | None = None,
    max_days: float = 60.0,
    descriptions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The full report dict (JSON-ready). ``metrics[name][variant]`` holds each arm's statistics.

    Control is ``variants[0]``. ``mde`` is the relative minimum detectable effect used to estimate the days
    left; ``daily_units`` the exposed units per day (None: no duration estimate).
    """
    if decision_metric not in metrics:
        raise ValueError(f"decision metric {decision_metric!r} has no statistics (have {sorted(metrics)})")
    for g in guardrails:
        if g not in metrics:
            raise ValueError(f"guardrail {g!r} has no statistics (have {sorted(metrics)})")
    if len(variants) != len(weights) or len(variants) < 2:
        raise ValueError("need >= 2 variants and one weight per variant")
    hib = dict(higher_is_better or {})
    control = variants[0]
    treatments = list(variants[1:])
    dec = metrics[decision_metric]
    missing = [v for v in variants if v not in dec]
    if missing:
        raise ValueError(f"decision metric {decision_metric!r} has no statistics for variant(s) {missing}")

    counts = [_plain(dec[v]).n for v in variants]
    srm_p = srm_p_value(counts, weights)
    srm = {
        "p_value": srm_p,
        "flag": srm_p < SRM_THRESHOLD,
        "counts": dict(zip(variants, counts, strict=True)),
        "expected_share": dict(zip(variants, [w / sum(weights) for w in weights], strict=True)),
    }

    metric_out = []
    verdicts: dict[str, dict[str, int]] = {}
    for name, per_var in metrics.items():
        role = "decision" if name == decision_metric else ("guardrail" if name in guardrails else "secondary")
        c = per_var.get(control)
        rows = [
            {
                "variant": control,
                "n": _plain(c).n if c else 0,
                "mean": _plain(c).mean if c else None,
                "control": True,
            }
        ]
        for v in treatments:
            if c is None or v not in per_var:
                rows.append({"variant": v, "error": "no statistics"})
                continue
            r = _row(c, per_var[v], engine, alpha, relative, n_star)
            r["variant"] = v
            rows.append(r)
        # Holm across treatment arms when there are several (family-wise error of "any arm wins")
        tr = [r for r in rows[1:] if "p_value" in r]
        if len(tr) > 1:
            for r, p in zip(tr, adjust_p_values([r["p_value"] for r in tr], "holm"), strict=True):
                r["p_value_adjusted"] = p
        up = hib.get(name, True)
        use_cuped = any(r.get("cuped") for r in tr)
        verdicts[name] = {r["variant"]: _better(r, engine, alpha, up, use_cuped) for r in tr}
        metric_out.append(
            {
                "name": name,
                "role": role,
                "higher_is_better": up,
                "description": (descriptions or {}).get(name, ""),
                "rows": rows,
            }
        )

    guard_out = []
    failing: set[str] = set()
    for g in guardrails:
        for v, s in verdicts[g].items():
            status = "failing" if s < 0 else "ok"
            if s < 0:
                failing.add(v)
            guard_out.append({"metric": g, "variant": v, "status": status})

    rec = _recommend(
        control,
        treatments,
        dec,
        verdicts[decision_metric],
        failing,
        srm,
        metric_out[[m["name"] for m in metric_out].index(decision_metric)],
        alpha,
        power,
        mde,
        daily_units,
        max_days,
        weights,
    )
    report = {
        "experiment": key,
        "engine": engine,
        "alpha": alpha,
        "relative": relative,
        "control": control,
        "variants": [
            {"key": v, "weight": w, "n": n} for v, w, n in zip(variants, weights, counts, strict=True)
        ],
        "srm": srm,
        "decision_metric": decision_metric,
        "metrics": metric_out,
        "guardrails": guard_out,
        "recommendation": rec,
    }
    report["verdict"] = _verdict(report)
    report["figure"] = forest_plot(report)
    return report


def _recommend(
    control: str,
    treatments: list[str],
    dec: Mapping[str, _Stats],
    verdict: Mapping[str, int],
    failing: set[str],
    srm: dict[str, Any],
    dec_metric: dict[str, Any],
    alpha: float,
    power: float,
    mde: float,
    daily_units: float | None,
    max_days: float,
    weights: Sequence[float],
) -> dict[str, Any]:
    if srm["flag"]:
        return {
            "action": "stop",
            "variant": None,
            "days_left": None,
            "reason": f"sample-ratio mismatch (p = {srm['p_value']:.2g}): fix assignment/logging first",
        }
    rows = {r["variant"]: r for r in dec_metric["rows"][1:]}
    winners = [v for v in treatments if verdict.get(v, 0) > 0 and v not in failing]
    if winners:
        best = max(winners, key=lambda v: rows[v]["effect"] * (1 if dec_metric["higher_is_better"] else -1))
        return {
            "action": "ship",
            "variant": best,
            "days_left": 0.0,
            "reason": f"{best} beats {control} on {dec_metric['name']} with no guardrail failing",
        }
    if treatments and all(verdict.get(v, 0) < 0 for v in treatments):
        return {
            "action": "stop",
            "variant": control,
            "days_left": 0.0,
            "reason": f"every treatment is worse than {control} on {dec_metric['name']}: keep {control}",
        }
    blocked = [v for v in treatments if verdict.get(v, 0) > 0 and v in failing]
    c = _plain(dec[control])
    days_left: float | None = None
    required = None
    try:
        std = None if getattr(c, "kind", "mean") == "proportion" else math.sqrt(c.variance)
        if c.mean > 0 and (std is None or std > 0):
            required = sample_size(c.mean, mde, alpha, power, relative=True, std=std).per_variant
    except ValueError:
        required = None
    current = [_plain(dec[v]).n for v in [control, *treatments]]
    if required is not None and daily_units:
        days_left = expected_duration_days(required, current, daily_units, weights)
    if required is not None and min(current) >= required:
        return {
            "action": "stop",
            "variant": control,
            "days_left": 0.0,
            "required_per_variant": required,
            "reason": f"reached the sample size for a {mde:.0%} effect without a significant difference: "
            f"no effect that large; keep {control}",
        }
    if days_left is not None and days_left > max_days:
        return {
            "action": "stop",
            "variant": control,
            "days_left": days_left,
            "required_per_variant": required,
            "reason": f"inconclusive and {days_left:.0f} more days needed to detect {mde:.0%}: stop",
        }
    reason = "not yet conclusive"
    if blocked:
        reason = f"{', '.join(blocked)} wins on {dec_metric['name']} but fails a guardrail"
    return {
        "action": "keep_running",
        "variant": None,
        "days_left": days_left,
        "required_per_variant": required,
        "reason": reason,
    }


def _verdict(report: dict[str, Any]) -> str:
    rec = report["recommendation"]
    dec = next(m for m in report["metrics"] if m["role"] == "decision")
    parts = []
    for r in dec["rows"][1:]:
        if "effect" not in r:
            continue
        eff = f"{r['effect']:+.2%}" if report["relative"] else f"{r['effect']:+.4g}"
        lo, hi = r["ci"]
        ci = f"[{lo:+.2%}, {hi:+.2%}]" if report["relative"] else f"[{lo:+.4g}, {hi:+.4g}]"
        parts.append(
            f"{r['variant']} vs {report['control']} on {dec['name']}: {eff} {ci}, "
            f"p = {r['p_value']:.3g}, chance to win {r['chance_to_win']:.1%}"
        )
    srm = "SRM check failed" if report["srm"]["flag"] else "no sample-ratio mismatch"
    action = {"ship": f"Ship {rec['variant']}.", "stop": "Stop.", "keep_running": "Keep running."}[
        rec["action"]
    ]
    if rec["action"] == "keep_running" and rec.get("days_left") is not None:
        action = f"Keep running (about {rec['days_left']:.0f} more days)."
    return f"{'; '.join(parts)}; {srm}. {action} {rec['reason'][0].upper()}{rec['reason'][1:]}."


def forest_plot(report: dict[str, Any]) -> dict[str, Any]:
    """A Plotly figure (plain dict) of every metric's effect with its interval, zero line for reference."""
    ys, xs, lo, hi, colors, text = [], [], [], [], [], []
    for m in report["metrics"]:
        for r in m["rows"][1:]:
            if "effect" not in r:
                continue
            ys.append(f"{m['name']} · {r['variant']}")
            xs.append(r["effect"])
            lo.append(r["effect"] - r["ci"][0])
            hi.append(r["ci"][1] - r["effect"])
            good = (r["ci"][0] > 0) == m["higher_is_better"] if (r["ci"][0] > 0 or r["ci"][1] < 0) else None
            colors.append("#2ca02c" if good else ("#d62728" if good is False else "#7f7f7f"))
            text.append(f"p={r['p_value']:.3g}, P(win)={r['chance_to_win']:.0%}")
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "x": xs,
                "y": ys,
                "text": text,
                "marker": {"color": colors, "size": 10},
                "error_x": {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
            }
        ],
        "layout": {
            "title": {"text": f"{report['experiment']}: effect vs {report['control']}"},
            "xaxis": {
                "title": {"text": "relative effect" if report["relative"] else "absolute effect"},
                "tickformat": ".1%" if report["relative"] else None,
                "zeroline": True,
            },
            "yaxis": {"automargin": True},
            "shapes": [
                {"type": "line", "x0": 0, "x1": 0, "yref": "paper", "y0": 0, "y1": 1, "line": {"dash": "dot"}}
            ],
        },
    }


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of the report for terminals and docs."""
    lines = [
        f"experiment {report['experiment']} ({report['engine']}), control = {report['control']}",
        f"SRM p = {report['srm']['p_value']:.4g}{'  <-- MISMATCH' if report['srm']['flag'] else ''}",
        f"{'metric':<22}{'variant':<14}{'n':>9}{'mean':>11}{'effect':>10}{'95% CI':>22}{'p':>9}{'P(win)':>8}",
    ]
    for m in report["metrics"]:
        for r in m["rows"]:
            if r.get("control"):
                mean = "" if r["mean"] is None else f"{r['mean']:.4g}"
                lines.append(f"{m['name']:<22}{r['variant']:<14}{r['n']:>9}{mean:>11}")
            elif "effect" in r:
                ci = f"[{r['ci'][0]:+.2%}, {r['ci'][1]:+.2%}]"
                lines.append(
                    f"{'':<22}{r['variant']:<14}{r['n']:>9}{r['mean']:>11.4g}{r['effect']:>+10.2%}"
                    f"{ci:>22}{r['p_value']:>9.3g}{r['chance_to_win']:>8.1%}"
                )
    lines.append(f"=> {report['verdict']}")
    return "\n".join(lines)

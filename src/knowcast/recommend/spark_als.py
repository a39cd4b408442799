"""ALS on Apache Spark for interaction logs too big for one machine, served like in-process ALS.

Why a separate engine: :class:`~knowcast.recommend.algorithms.ImplicitALS` needs the whole users x items
matrix in one process. ``pyspark.ml.recommendation.ALS`` solves the same implicit-feedback objective (Hu,
Koren, Volinsky 2008) with the data partitioned over a cluster; what comes back to the driver is only the
two factor matrices. :class:`SparkALS` collects them into NumPy arrays, so a fitted model scores users with
the same ``user_factors @ item_factors.T`` product as the other factor models, and
:meth:`SparkALS.to_implicit` turns it into an :class:`ImplicitALS` with the same factors: the artifact the
service stores is then an ordinary ALS artifact, served by the existing code path.

Two objectives, one mapping. Spark and ``implicit`` differ in two details:

* confidence: Spark uses ``c = 1 + alpha * w``, ``implicit`` uses ``c = alpha * w``;
* regularisation: Spark scales ``regParam`` by the user's (item's) number of interactions ``n_u``
  (ALS-WR, Zhou et al. 2008), ``implicit`` uses one constant.

:meth:`SparkALS.to_implicit` matches them at the typical user (``alpha' = alpha + 1 / mean(w)``, exact for
unit weights; ``lambda' = regParam * median(n_u)``); that only affects the fold-in of a user's current row
at serving time, not the trained factors. :meth:`SparkALS._user_factors` folds new users in with Spark's
exact equations.

pyspark is imported lazily (``import knowcast`` never needs it); :class:`SparkUnavailable` says what is
missing (pyspark or Java) when a Spark session cannot start.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from knowcast.recommend.algorithms import ImplicitALS, _ImplicitMF

log = logging.getLogger("knowcast.recommend.spark")

__all__ = [
    "DEFAULT_MASTER",
    "SparkALS",
    "SparkUnavailable",
    "event_pairs",
    "spark_available",
    "spark_session",
    "user_index",
]

DEFAULT_MASTER = "local[2]"
#: Most shuffle partitions in local mode (Spark's 200 default is for clusters; locally each partition is a
#: task per stage and ALS runs dozens of stages per iteration, so fewer partitions are faster).
LOCAL_SHUFFLE_PARTITIONS = 4
#: Driver JVM options for short local runs (tests, small stores): the C1 compiler only and a serial GC
#: start several times faster on a busy machine; long runs on big data are better off without them.
QUICK_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
#: Log4j 2 configuration that keeps the JVM quiet (errors only, on stderr).
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


class SparkUnavailable(RuntimeError):
    """pyspark is not installed, Java is missing, or the Spark session could not start."""


def spark_available() -> str | None:
    """None when a local Spark session can start, else the reason (for skips and error messages)."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install 'knowcast[spark]')"
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and Path(java_home, "bin", "java").exists()) and shutil.which("java") is None:
        return "Java is not installed (Spark needs a JDK 17; set JAVA_HOME or put java on PATH)"
    return None


def _local_partitions(master: str) -> int:
    """``local[N]`` -> N (``local`` 1, ``local[*]`` the cores), capped at ``LOCAL_SHUFFLE_PARTITIONS``."""
    inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
    n = (os.cpu_count() or 1) if inside.split(",")[0].strip() == "*" else int(inside.split(",")[0] or 1)
    return max(1, min(n, LOCAL_SHUFFLE_PARTITIONS))


@contextlib.contextmanager
def _quiet_pandas() -> Iterator[None]:
    """pyspark warns on every pandas conversion when pandas is newer than it was tested with."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"pyspark\.")
        warnings.filterwarnings("ignore", message=".*pandas.*", category=FutureWarning)
        yield


def _log4j_file() -> str:
    path = Path(tempfile.gettempdir()) / "knowcast-spark-log4j2.properties"
    if not path.exists() or path.read_text() != _LOG4J2:
        path.write_text(_LOG4J2)
    return str(path)


def _new_session(master: str, driver_memory: str, conf: dict[str, str] | None) -> Any:
    reason = spark_available()
    if reason:
        raise SparkUnavailable(reason)
    from pyspark.sql import SparkSession

    conf = dict(conf or {})
    # ALS's lineage grows with every iteration: a bigger thread stack keeps deep plans from overflowing
    java_opts = f"-Xss16m -Dlog4j2.configurationFile=file:{_log4j_file()}"
    driver_opts = f"{java_opts} {conf.pop('spark.driver.extraJavaOptions', '')}".strip()
    builder = (
        SparkSession.builder.master(master)
        .appName("knowcast-als")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", driver_memory)
        .config("spark.driver.extraJavaOptions", driver_opts)
        .config("spark.executor.extraJavaOptions", java_opts)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
    )
    if master.startswith("local"):
        parts = str(_local_partitions(master))
        builder = (
            builder.config("spark.sql.shuffle.partitions", parts)
            .config("spark.default.parallelism", parts)
            .config(
                "spark.sql.adaptive.enabled", "false"
            )  # re-planning tiny shuffles costs more than it saves
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
        )
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: Java missing or broken, bad master URL ...
        raise SparkUnavailable(f"could not start Spark (master {master!r}): {exc}") from exc
    spark.sparkContext.setLogLevel("ERROR")
    if spark.sparkContext.getCheckpointDir() is None:
        # ALS checkpoints every 10 iterations when a directory is set (else its lineage keeps growing);
        # on a cluster set spark.checkpoint.dir to shared storage, locally a temporary folder does
        spark.sparkContext.setCheckpointDir(
            conf.get("spark.checkpoint.dir") or tempfile.mkdtemp(prefix="knowcast-spark-ckpt-")
        )
    return spark


@contextlib.contextmanager
def spark_session(
    master: str = DEFAULT_MASTER, driver_memory: str = "1g", conf: dict[str, str] | None = None
) -> Iterator[Any]:
    """A Spark session for the block: the active one if there is one (tests start one per module, a
    training run one for all its fits), else a new one that is stopped on exit."""
    if importlib.util.find_spec("pyspark") is not None:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            current = active.sparkContext.master
            if current != master:
                log.info("reusing the active Spark session on %s (asked for %s)", current, master)
            yield active
            return
    spark = _new_session(master, driver_memory, conf)
    ckpt = spark.sparkContext.getCheckpointDir()
    try:
        yield spark
    finally:
        spark.stop()
        if ckpt and ckpt.startswith("file:") and "knowcast-spark-ckpt-" in ckpt:
            shutil.rmtree(ckpt.removeprefix("file:"), ignore_errors=True)


# ------------------------------------------------------------------------------------------- reading
def _weight_expr(event_weights: dict[str, float], min_watch_ratio: float) -> Any:
    """Spark column: the per-event weight of :func:`knowcast.recommend.service._event_weights`."""
    from pyspark.sql import functions as F

    ratio = F.least(
        F.greatest(F.coalesce(F.col("watch_ratio").cast("double"), F.lit(1.0)), F.lit(0.0)), F.lit(1.5)
    )
    # NaN ratios count as 1.0 too (coalesce only replaces nulls)
    ratio = F.when(F.isnan(ratio), F.lit(1.0)).otherwise(ratio)
    expr = F.lit(0.0)
    for typ, w in event_weights.items():
        if typ == "view":
            continue
        expr = F.when(F.col("type") == typ, F.lit(float(w))).otherwise(expr)
    view = F.when(ratio >= min_watch_ratio, ratio).otherwise(F.lit(0.0))
    return F.when(F.col("type") == "view", view).otherwise(expr)


def event_pairs(
    spark: Any,
    events: Any,
    item_ids: Sequence[str],
    event_weights: dict[str, float],
    min_watch_ratio: float = 0.1,
) -> tuple[Any, Any]:
    """Aggregate raw events into weighted (user, item) pairs inside Spark.

    ``events`` is a Parquet path (a ``knowcast export events out.parquet`` file or folder, local or on
    shared storage: ``hdfs://``, ``s3a://``...) or a Spark DataFrame with the event columns (``user_id``,
    ``item_id``, ``type``, ``ts``, ``watch_ratio``). Item ids become the positions in ``item_ids`` (the
    catalogue's order, through a broadcast join); user ids become ``0..n_users-1`` in sorted order, numbered
    by ``zipWithIndex`` so no single partition holds every user.

    Returns ``(pairs, users)``: ``pairs`` has ``user, item`` (int), ``weight`` (summed) and ``ts`` (the
    pair's latest event time, ms); ``users`` maps ``user_id`` to ``user``. Both are cached.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    df = spark.read.parquet(str(events)) if isinstance(events, str | Path) else events
    missing = {"user_id", "item_id", "type", "ts"} - set(df.columns)
    if missing:
        raise ValueError(f"events have no column(s) {sorted(missing)}; columns: {df.columns}")
    if "watch_ratio" not in df.columns:
        df = df.withColumn("watch_ratio", F.lit(None).cast("double"))
    with _quiet_pandas():
        catalog = spark.createDataFrame(
            pd.DataFrame(
                {"item_id": np.asarray(item_ids, dtype=str), "item": np.arange(len(item_ids), dtype=np.int32)}
            )
        )
    weighted = (
        df.where(F.col("type").isin(sorted(event_weights)) & F.col("item_id").isNotNull())
        .withColumn("weight", _weight_expr(event_weights, min_watch_ratio))
        .where(F.col("weight") > 0)
        .join(F.broadcast(catalog), "item_id")
    )
    per_pair = weighted.groupBy("user_id", "item").agg(
        F.sum("weight").alias("weight"), F.max(F.col("ts").cast("long")).alias("ts")
    )
    schema = T.StructType([T.StructField("user_id", T.StringType()), T.StructField("user", T.IntegerType())])
    users = spark.createDataFrame(
        per_pair.select(F.col("user_id").cast("string"))
        .distinct()
        .orderBy("user_id")
        .rdd.zipWithIndex()
        .map(lambda r: (r[0][0], int(r[1]))),
        schema,
    ).cache()
    pairs = (
        per_pair.withColumn("user_id", F.col("user_id").cast("string"))
        .join(users, "user_id")
        .select("user", F.col("item").cast("int"), F.col("weight").cast("float"), "ts")
        .cache()
    )
    return pairs, users


def user_index(users: Any) -> np.ndarray:
    """The ``users`` mapping of :func:`event_pairs` as an array: position ``k`` holds user ``k``'s id."""
    with _quiet_pandas():
        pdf = users.orderBy("user").toPandas()
    return pdf["user_id"].to_numpy().astype(str)


def pairs_to_csr(pairs: Any, n_users: int, n_items: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Collect aggregated pairs (one row per user-item, not per event) as CSR weights and CSR times (s)."""
    with _quiet_pandas():
        pdf = pairs.select("user", "item", "weight", "ts").toPandas()
    u = pdf["user"].to_numpy(np.int64)
    i = pdf["item"].to_numpy(np.int64)
    m = sp.csr_matrix(
        (pdf["weight"].to_numpy(np.float32), (u, i)), shape=(n_users, n_items), dtype=np.float32
    )
    m.sort_indices()
    ts = sp.csr_matrix((pdf["ts"].to_numpy(np.float64) / 1000.0, (u, i)), shape=(n_users, n_items))
    ts.sort_indices()
    return m, ts


# --------------------------------------------------------------------------------------------- model
class SparkALS(_ImplicitMF):
    """Implicit-feedback ALS trained by ``pyspark.ml.recommendation.ALS``; factors collected to NumPy.

    Parameters follow Spark's ALS: ``rank``, ``reg_param`` (``regParam``, scaled by each user's and item's
    number of interactions), ``alpha`` (confidence ``1 + alpha * w``), ``max_iter``, ``seed``. ``master`` is
    a Spark master URL (``local[2]``, ``spark://host:7077``, ``yarn``...); ``num_blocks`` sets Spark's user
    and item blocks (None: one per shuffle partition); ``conf`` adds Spark settings.

    ``fit(user_items)`` takes a CSR matrix like every recommender; :meth:`fit_pairs` takes a Spark
    DataFrame or a Parquet path of ``(user, item, weight)`` integer pairs, so data that never fits in one
    process trains without passing through it.
    """

    def __init__(
        self,
        rank: int = 64,
        reg_param: float = 0.001,
        alpha: float = 4.0,
        max_iter: int = 15,
        seed: int = 0,
        master: str = DEFAULT_MASTER,
        num_blocks: int | None = None,
        driver_memory: str = "1g",
        conf: dict[str, str] | None = None,
    ) -> None:
        self.rank = rank
        self.reg_param = reg_param
        self.alpha = alpha
        self.max_iter = max_iter
        self.seed = seed
        self.master = master
        self.num_blocks = num_blocks
        self.driver_memory = driver_memory
        self.conf = conf

    # -- fitting ---------------------------------------------------------------------------------
    def _fit(self, user_items: sp.csr_matrix) -> None:
        coo = user_items.tocoo()
        frame = pd.DataFrame(
            {
                "user": coo.row.astype(np.int32),
                "item": coo.col.astype(np.int32),
                "weight": coo.data.astype(np.float32),
            }
        )
        with spark_session(self.master, self.driver_memory, self.conf) as spark:
            n_part = max(1, int(spark.conf.get("spark.sql.shuffle.partitions")))
            with _quiet_pandas():
                pairs = spark.createDataFrame(frame).repartition(n_part)
            self._train(spark, pairs, user_items.shape[0], user_items.shape[1])
        counts = np.diff(user_items.indptr)
        self._set_stats(counts, user_items.data)

    def fit_pairs(self, pairs: Any, n_users: int | None = None, n_items: int | None = None) -> SparkALS:
        """Fit from a Spark DataFrame or a Parquet path with integer ``user``, ``item`` and a ``weight``
        column (pairs are summed if repeated). Shapes default to the largest index + 1."""
        from pyspark.sql import functions as F

        if not (isinstance(self.rank, int) and self.rank >= 1):
            raise ValueError(f"rank must be a positive integer, got {self.rank!r}")
        with spark_session(self.master, self.driver_memory, self.conf) as spark:
            df = spark.read.parquet(str(pairs)) if isinstance(pairs, str | Path) else pairs
            missing = {"user", "item", "weight"} - set(df.columns)
            if missing:
                raise ValueError(f"pairs have no column(s) {sorted(missing)}; columns: {df.columns}")
            df = df.groupBy("user", "item").agg(F.sum("weight").alias("weight")).cache()
            tot = df.agg(
                F.count("*").alias("nnz"),
                F.sum("weight").alias("w"),
                F.max("user").alias("max_user"),
                F.max("item").alias("max_item"),
                F.min(F.least("user", "item")).alias("min_index"),
                F.min("weight").alias("min_w"),
                F.sum(F.isnan("weight").cast("int")).alias("nan_w"),
            ).first()
            if not tot["nnz"]:
                raise ValueError("no interactions to learn from")
            if tot["min_index"] < 0 or tot["min_w"] < 0 or tot["nan_w"]:
                raise ValueError("pairs have a negative or NaN weight or a negative index")
            n_users = int(tot["max_user"]) + 1 if n_users is None else int(n_users)
            n_items = int(tot["max_item"]) + 1 if n_items is None else int(n_items)
            median_n = df.groupBy("user").count().approxQuantile("count", [0.5], 0.01)[0]
            self.n_users_, self.n_items_ = n_users, n_items
            self._train(spark, df, n_users, n_items)
            df.unpersist()
        self._set_stats(np.array([median_n]), np.array([float(tot["w"]) / int(tot["nnz"])]))
        self.fitted_ = True
        return self

    def _train(self, spark: Any, pairs: Any, n_users: int, n_items: int) -> None:
        from pyspark.ml.recommendation import ALS

        blocks = self.num_blocks or int(spark.conf.get("spark.sql.shuffle.partitions"))
        als = ALS(
            rank=int(self.rank),
            maxIter=int(self.max_iter),
            regParam=float(self.reg_param),
            alpha=float(self.alpha),
            implicitPrefs=True,
            nonnegative=False,
            userCol="user",
            itemCol="item",
            ratingCol="weight",
            seed=int(self.seed),
            numUserBlocks=blocks,
            numItemBlocks=blocks,
            coldStartStrategy="drop",
        )
        model = als.fit(pairs)
        self.user_factors_ = _collect_factors(model.userFactors, n_users, self.rank)
        self.item_factors_ = _collect_factors(model.itemFactors, n_items, self.rank)

    def _set_stats(self, user_counts: np.ndarray, weights: np.ndarray) -> None:
        nonzero = user_counts[user_counts > 0]
        self.median_user_interactions_ = float(np.median(nonzero)) if len(nonzero) else 1.0
        self.mean_weight_ = float(np.mean(weights)) if len(weights) else 1.0

    # -- scoring ---------------------------------------------------------------------------------
    def _user_factors(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        """Trained factors for known users; Spark's normal equations for rows of users beyond them:
        ``(Y^T Y + Y^T diag(alpha w) Y + reg_param n_u I) x = Y^T (1 + alpha w)`` over the row's items."""
        y = self.item_factors_.astype(np.float64)
        out = np.empty((len(user_ids), y.shape[1]), dtype=np.float32)
        known = user_ids < self.n_users_
        out[known] = self.user_factors_[user_ids[known]]
        new = np.flatnonzero(~known)
        if len(new):
            yty = y.T @ y
            eye = np.eye(y.shape[1])
            for r in new:
                row = rows[r]
                items, w = row.indices, row.data.astype(np.float64)
                if len(items) == 0:
                    out[r] = 0.0
                    continue
                yi = y[items]
                c1 = self.alpha * np.abs(w)
                a = yty + (yi.T * c1) @ yi + self.reg_param * len(items) * eye
                b = yi.T @ (1.0 + c1)
                out[r] = np.linalg.solve(a, b)
        return out

    # -- serving ---------------------------------------------------------------------------------
    def implicit_params(self) -> dict[str, Any]:
        """:class:`ImplicitALS` parameters whose fold-in matches this model's objective at the typical user
        (see the module docstring); the served artifact records them."""
        self._check_fitted()
        return {
            "factors": int(self.item_factors_.shape[1]),
            "regularization": float(self.reg_param) * self.median_user_interactions_,
            "alpha": float(self.alpha) + 1.0 / max(self.mean_weight_, 1e-12),
            "iterations": int(self.max_iter),
            "random_state": int(self.seed),
            "num_threads": 0,
        }

    def to_implicit(self) -> ImplicitALS:
        """The same factors as a fitted :class:`ImplicitALS`: what the service stores and serves (its
        artifact is the in-process ALS one; the fold-in engine is rebuilt at load time as for any ALS)."""
        model = ImplicitALS(**self.implicit_params())
        model.n_users_, model.n_items_ = self.n_users_, self.n_items_
        model.user_factors_ = np.ascontiguousarray(self.user_factors_, dtype=np.float32)
        model.item_factors_ = np.ascontiguousarray(self.item_factors_, dtype=np.float32)
        model.fitted_ = True
        return model


def _collect_factors(frame: Any, n: int, rank: int) -> np.ndarray:
    """A Spark factor DataFrame ``(id, features)`` as an ``(n, rank)`` float32 array; ids Spark never saw
    (no interactions) keep zero factors, which is what a solve with no data gives too."""
    with _quiet_pandas():
        pdf = frame.toPandas()
    out = np.zeros((n, rank), dtype=np.float32)
    if len(pdf):
        ids = pdf["id"].to_numpy(np.int64)
        out[ids] = np.stack([np.asarray(f, dtype=np.float32) for f in pdf["features"]])
    return out

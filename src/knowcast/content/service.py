"""Content understanding as a service: tag the catalog, store features, answer "similar items".

The one module of ``knowcast.content`` that touches the store. It reads items (and imported transcripts),
runs the pure models (keywords, category, topics, embedding), and writes one ``item_features`` row per
item. Fitted models are saved under the artifacts folder (``<artifacts>/content/models-v<N>.joblib``,
written to a temporary file and renamed, so a reader never sees half a file) and described in the ``kv``
row ``content.models``; a transcript imported later is analysed with those same models, like a caption.

Where things go in ``item_features``:

* ``keywords``: the item's top keywords (TF-IDF over the catalog, or TextRank);
* ``category``: from the user's taxonomy or learnt from labelled items (an item's own label wins);
* ``topics``: ``{topic id: share}`` of the item's topic mixture (shares >= 0.01); the topic words are in
  ``kv['content.models']['topics']``;
* ``embedding``: the dense text vector (L2-normalised);
* ``video``: media features: ``summary`` (PyAV scalars), ``keyframe`` (a PNG path), ``shot_cuts``,
  ``silences`` and, when imported, ``transcript`` (``text``, ``n_cues``, ``file``).

Similar items (:func:`similar_items`) are the weighted cosine over feature blocks (text embedding,
IDF-weighted tags + category, topics, creator, video) of :class:`~knowcast.content.similar.SimilarItems`. The
fitted index is cached in process per database and rebuilt when ``kv["content.version"]`` (bumped by every
write here) or the number of items changes.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from knowcast.content.embeddings import PretrainedEmbedder, TfidfSvdEmbedder
from knowcast.content.similar import SimilarItems, standardize_numeric
from knowcast.content.tagging import CategoryClassifier, KeywordExtractor, KeywordTaxonomyTagger
from knowcast.content.text import item_document, parse_tag_list, tokenize_many
from knowcast.content.topics import TopicModel
from knowcast.content.transcripts import parse_transcript, transcript_text
from knowcast.content.video import VideoAnalyzer, VideoError
from knowcast.store.models import Item, KeyValue
from knowcast.store.models import ItemFeatures as ItemFeaturesRow

__all__ = [
    "NotFound",
    "ContentError",
    "TagReport",
    "load_taxonomy",
    "load_labels",
    "tag_items",
    "analyze_items",
    "item_features",
    "similar_items",
    "analyze_video_file",
    "import_transcript",
    "invalidate",
]

MODELS_KEY = "content.models"
VERSION_KEY = "content.version"
LABEL_PREFIXES = ("category:", "cat:", "类目:")
#: Weights of the similar-items blocks (normalised over the blocks present).
SIMILAR_WEIGHTS = {"text": 0.45, "tags": 0.3, "topics": 0.1, "creator": 0.1, "video": 0.05}

Progress = Callable[[str, int, int], None]


class NotFound(LookupError):
    """An unknown item (HTTP 404, CLI exit 1)."""


class ContentError(ValueError):
    """Bad input: a taxonomy or labels file, a transcript, a video, an option (HTTP 422, CLI exit 1/2)."""


# ---------------------------------------------------------------------------------------------- inputs
def load_taxonomy(path: str | Path) -> dict[str, list[str]]:
    """A taxonomy file: YAML (or JSON) mapping each category to its seed words (a list, maybe empty)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ContentError(f"taxonomy file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ContentError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ContentError(f"{p}: expected a mapping of category -> list of seed words")
    out: dict[str, list[str]] = {}
    for cat, words in data.items():
        if words is None:
            words = []
        if isinstance(words, str) or not isinstance(words, list):
            raise ContentError(f"{p}: category {cat!r} must map to a list of seed words, got {words!r}")
        out[str(cat)] = [str(w) for w in words if str(w).strip()]
    return out


def load_labels(path: str | Path) -> dict[str, str]:
    """Item labels from a CSV with columns ``item_id`` and ``category``."""
    p = Path(path)
    if not p.is_file():
        raise ContentError(f"labels file {p} does not exist")
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    for col in ("item_id", "category"):
        if col not in df.columns:
            raise ContentError(f"{p}: missing column {col!r} (have {list(df.columns)})")
    df = df[(df["item_id"].str.strip() != "") & (df["category"].str.strip() != "")]
    return dict(zip(df["item_id"].str.strip(), df["category"].str.strip(), strict=True))


# ---------------------------------------------------------------------------------------------- kv & io
def _kv_get(engine: Engine, key: str) -> dict[str, Any] | None:
    with engine.connect() as c:
        return c.execute(select(KeyValue.value).where(KeyValue.key == key)).scalar()


def _kv_put(conn: Any, key: str, value: dict[str, Any]) -> None:
    ins = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(KeyValue)
    conn.execute(ins.values(key=key, value=value).on_conflict_do_update(
        index_elements=["key"], set_={"value": value}
    ))


def _bump_version(conn: Any) -> None:
    cur = conn.execute(select(KeyValue.value).where(KeyValue.key == VERSION_KEY)).scalar() or {}
    _kv_put(conn, VERSION_KEY, {"version": int(cur.get("version", 0)) + 1, "at": _now_iso()})


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _artifacts(artifacts_dir: str | Path | None) -> Path:
    if artifacts_dir is None:
        from knowcast.config import get_settings

        artifacts_dir = get_settings().artifacts_dir
    return Path(artifacts_dir)


def _safe_name(item_id: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", item_id)[:60]
    return f"{base}-{hashlib.sha1(item_id.encode()).hexdigest()[:8]}"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _items_frame(engine: Engine, item_ids: Sequence[str] | None = None) -> pd.DataFrame:
    cols = [Item.id, Item.kind, Item.title, Item.description, Item.tags, Item.creator_id]
    stmt = select(*cols).order_by(Item.id)
    if item_ids is not None:
        stmt = stmt.where(Item.id.in_(list(item_ids)))
    with engine.connect() as c:
        rows = c.execute(stmt).all()
    df = pd.DataFrame(rows, columns=["item_id", "kind", "title", "description", "tags", "creator_id"])
    df["tags"] = [parse_tag_list(t) for t in df["tags"]]
    return df


def _features_frame(engine: Engine, item_ids: Sequence[str] | None = None) -> pd.DataFrame:
    f = ItemFeaturesRow
    stmt = select(f.item_id, f.keywords, f.category, f.topics, f.embedding, f.video)
    if item_ids is not None:
        stmt = stmt.where(f.item_id.in_(list(item_ids)))
    with engine.connect() as c:
        rows = c.execute(stmt).all()
    return pd.DataFrame(rows, columns=["item_id", "keywords", "category", "topics", "embedding", "video"])


def _transcripts(feats: pd.DataFrame) -> dict[str, str]:
    out = {}
    for iid, video in zip(feats["item_id"], feats["video"], strict=True):
        tr = (video or {}).get("transcript") if isinstance(video, dict) else None
        if tr and tr.get("text"):
            out[iid] = tr["text"]
    return out


def _documents(items: pd.DataFrame, transcripts: Mapping[str, str]) -> list[str]:
    return [
        item_document(t, d, tags, transcripts.get(i, ""))
        for i, t, d, tags in zip(items["item_id"], items["title"], items["description"], items["tags"],
                                 strict=True)
    ]


# ---------------------------------------------------------------------------------------------- tagging
@dataclass
class TagReport:
    """What ``knowcast content tag`` did."""

    n_items: int
    n_with_text: int = 0
    keyword_method: str = "tfidf"
    category_source: str = "none"
    n_labelled: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    n_topics: int = 0
    topic_coherence: dict[int, float] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)
    embedder: str = "tfidf"
    dim: int = 0
    model_version: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["topic_coherence"] = {str(k): v for k, v in self.topic_coherence.items()}
        return d


def _labels_from_tags(
    items: pd.DataFrame, names: Sequence[str] | None, explicit: Mapping[str, str] | None
) -> dict[str, str]:
    """Labelled items: explicit labels, then ``category:X`` tags, then tags equal to a known category."""
    out: dict[str, str] = {}
    known = {n.lower(): n for n in names or ()}
    for iid, tags in zip(items["item_id"], items["tags"], strict=True):
        if explicit and iid in explicit:
            out[iid] = explicit[iid]
            continue
        for t in tags:
            low = t.lower()
            pref = next((p for p in LABEL_PREFIXES if low.startswith(p)), None)
            if pref:
                out[iid] = t[len(pref):].strip()
                break
            if low in known:
                out[iid] = known[low]
                break
    return {k: v for k, v in out.items() if v}


def _embedder(name: str, dim: int):  # type: ignore[no-untyped-def]
    if name == "tfidf":
        return TfidfSvdEmbedder(dim=dim)
    if name in ("use", "e5"):
        try:
            return PretrainedEmbedder(backend=name)
        except ImportError as exc:
            raise ContentError(f"{exc} (or: pip install 'knowcast[embeddings]')") from None
    raise ContentError(f"embedder must be 'tfidf', 'use' or 'e5', got {name!r}")


def tag_items(
    engine: Engine,
    *,
    taxonomy: Mapping[str, Sequence[str]] | None = None,
    labels: Mapping[str, str] | None = None,
    category_names: Sequence[str] | None = None,
    keyword_method: str = "tfidf",
    top_k: int = 8,
    embedder: str = "tfidf",
    dim: int = 64,
    n_topics: int | str = "auto",
    artifacts_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> TagReport:
    """Fit the content models on the whole catalog and store every item's features.

    Categories: an item's own label wins (``labels``, a ``category:X`` tag, or a tag equal to a name in
    ``category_names`` or the taxonomy). Unlabelled items get the taxonomy's best seed-word match when a
    ``taxonomy`` is given; otherwise, with at least two labelled categories, a :class:`CategoryClassifier`
    learnt from the labelled items predicts them (only where its one-vs-rest margin is positive).
    """
    t0 = time.perf_counter()
    if keyword_method not in ("tfidf", "textrank"):
        raise ContentError(f"keyword method must be 'tfidf' or 'textrank', got {keyword_method!r}")
    if top_k < 1:
        raise ContentError(f"top_k must be >= 1, got {top_k}")
    emb = _embedder(embedder, dim)
    step = progress or (lambda stage, done, total: None)
    items = _items_frame(engine)
    n = len(items)
    report = TagReport(n_items=n, keyword_method=keyword_method, embedder=embedder)
    if n == 0:
        report.notes.append("the catalog is empty: import items first")
        return report
    feats = _features_frame(engine)
    docs = _documents(items, _transcripts(feats))
    step("tokenize", 0, n)
    tokens = tokenize_many(docs)
    report.n_with_text = int(sum(1 for t in tokens if t))
    step("tokenize", n, n)

    step("keywords", 0, n)
    kx = KeywordExtractor(method=keyword_method, top_k=top_k).fit(tokens=tokens)
    keywords = kx.transform(tokens=tokens)
    step("keywords", n, n)

    step("category", 0, n)
    names = list(category_names or ()) + list(taxonomy or {})
    labelled = _labels_from_tags(items, names, labels)
    report.n_labelled = len(labelled)
    tagger = KeywordTaxonomyTagger(taxonomy).fit() if taxonomy else None
    clf = None
    if tagger is not None:
        pass  # with a taxonomy, its seed words decide for unlabelled items (a classifier trained on the
        # few labelled ones would push every unrelated item into one of their categories)
    elif len(set(labelled.values())) >= 2:
        idx = [i for i, iid in enumerate(items["item_id"]) if iid in labelled]
        clf = CategoryClassifier().fit(
            [docs[i] for i in idx], [labelled[items["item_id"].iat[i]] for i in idx],
            tokens=[tokens[i] for i in idx],
        )
    elif labelled:
        report.notes.append("labelled items carry a single category: not enough to learn a classifier")
    categories = _predict_categories(items, docs, tokens, labelled, tagger, clf)
    report.category_source = "+".join(
        s for s, on in (("labels", bool(labelled)), ("taxonomy", tagger is not None),
                        ("classifier", clf is not None)) if on
    ) or "none"
    if report.category_source == "none":
        report.notes.append("no category: pass --taxonomy FILE.yaml or label items (category:X tags)")
    report.categories = dict(Counter(c for c in categories if c).most_common())
    step("category", n, n)

    step("topics", 0, n)
    tm = None
    mixture = np.zeros((n, 0))
    try:
        tm = TopicModel(n_topics=n_topics, min_df=max(2, min(5, n // 40))).fit(tokens)
        mixture = tm.transform(tokens)
        report.n_topics = int(tm.n_topics_)
        report.topic_coherence = dict(tm.coherence_by_k_)
        report.topics = tm.topic_labels()
    except ValueError as exc:
        report.notes.append(f"no topics: {exc}")
    step("topics", n, n)

    step("embed", 0, n)
    try:
        vectors = emb.fit(docs, tokens=tokens).transform(docs, tokens=tokens)
    except ValueError as exc:
        report.notes.append(f"no embedding: {exc}")
        vectors = np.zeros((n, 0))
    report.dim = int(vectors.shape[1])
    step("embed", n, n)

    step("store", 0, n)
    models = {"keywords": kx, "tagger": tagger, "classifier": clf, "topics": tm,
              "embedder": emb if embedder == "tfidf" else None}
    meta = {
        "fitted_at": _now_iso(),
        "n_items": n,
        "keyword_method": keyword_method,
        "top_k": top_k,
        "category_source": report.category_source,
        "labels": dict(labelled),
        "embedder": embedder,
        "dim": report.dim,
        "topics": [
            {"id": j, "label": lab, "words": words, "coherence": round(float(c), 4)}
            for j, (lab, words, c) in enumerate(zip(tm.topic_labels(), tm.topic_words_,
                                                     tm.topic_coherence_, strict=True))
        ] if tm is not None else [],
        "topic_coherence_by_k": {str(k): v for k, v in report.topic_coherence.items()},
    }
    version = _save_models(engine, models, meta, artifacts_dir)
    report.model_version = version
    rows = [
        {
            "item_id": iid,
            "keywords": [w for w, _ in kw],
            "category": cat,
            "topics": _topic_dict(mixture[i]),
            "embedding": _vec(vectors[i]) if vectors.shape[1] else None,
        }
        for i, (iid, kw, cat) in enumerate(zip(items["item_id"], keywords, categories, strict=True))
    ]
    _write_features(engine, rows, lambda done: step("store", done, n))
    report.seconds = round(time.perf_counter() - t0, 3)
    invalidate(engine)
    return report


def _predict_categories(
    items: pd.DataFrame,
    docs: list[str],
    tokens: list[list[str]],
    labelled: Mapping[str, str],
    tagger: KeywordTaxonomyTagger | None,
    clf: CategoryClassifier | None,
) -> list[str | None]:
    n = len(docs)
    out: list[str | None] = [None] * n
    if tagger is not None:
        out = list(tagger.predict(docs, tokens=tokens))
    if clf is not None:
        todo = [i for i in range(n) if out[i] is None and items["item_id"].iat[i] not in labelled]
        if todo:
            # one-vs-rest margins: only a positive margin says "this category"; below zero everywhere,
            # the item resembles none of the labelled categories and stays without one
            z = clf.decision_function([docs[i] for i in todo], tokens=[tokens[i] for i in todo])
            if z.ndim == 1:
                z = np.column_stack([-z, z])
            best = z.argmax(axis=1)
            for i, j, m in zip(todo, best, z.max(axis=1), strict=True):
                if m > 0:
                    out[i] = str(clf.classes_[j])
    for i, iid in enumerate(items["item_id"]):
        if iid in labelled:
            out[i] = labelled[iid]
    return out


def _topic_dict(row: np.ndarray) -> dict[str, float]:
    return {str(j): round(float(w), 4) for j, w in enumerate(row) if w >= 0.01}


def _vec(v: np.ndarray) -> list[float]:
    return [round(float(x), 6) for x in v]


def _save_models(
    engine: Engine, models: dict[str, Any], meta: dict[str, Any], artifacts_dir: str | Path | None
) -> int:
    import io

    import joblib

    prev = _kv_get(engine, MODELS_KEY) or {}
    version = int(prev.get("version", 0)) + 1
    path = _artifacts(artifacts_dir) / "content" / f"models-v{version}.joblib"
    buf = io.BytesIO()
    joblib.dump(models, buf)
    _atomic_write_bytes(path, buf.getvalue())
    meta = {**meta, "version": version, "path": str(path.resolve())}
    with engine.begin() as conn:
        _kv_put(conn, MODELS_KEY, meta)
    return version


_MODEL_CACHE: dict[str, tuple[int, dict[str, Any]]] = {}


def _load_models(engine: Engine) -> tuple[dict[str, Any], dict[str, Any]] | None:
    import joblib

    meta = _kv_get(engine, MODELS_KEY)
    if not meta:
        return None
    path = Path(meta["path"])
    hit = _MODEL_CACHE.get(str(path))
    if hit is None:
        if not path.is_file():
            return None
        hit = (meta["version"], joblib.load(path))
        _MODEL_CACHE[str(path)] = hit
    return hit[1], meta


def _write_features(
    engine: Engine, rows: list[dict[str, Any]], progress: Callable[[int], None] | None = None,
    chunk: int = 1000,
) -> None:
    """Upsert keywords/category/topics/embedding (the ``video`` column is left as it is)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        ins_mod = postgresql if conn.dialect.name == "postgresql" else sqlite
        for lo in range(0, len(rows), chunk):
            part = [{**r, "updated_at": now} for r in rows[lo:lo + chunk]]
            ins = ins_mod.insert(ItemFeaturesRow)
            stmt = ins.on_conflict_do_update(
                index_elements=["item_id"],
                set_={c: getattr(ins.excluded, c)
                      for c in ("keywords", "category", "topics", "embedding", "updated_at")},
            )
            conn.execute(stmt, part)
            if progress:
                progress(min(lo + chunk, len(rows)))
        _bump_version(conn)


def analyze_items(engine: Engine, item_ids: Sequence[str]) -> int:
    """Re-analyse a few items with the fitted models (after a transcript import); 0 if none are fitted."""
    loaded = _load_models(engine)
    if loaded is None:
        return 0
    models, meta = loaded
    items = _items_frame(engine, item_ids)
    if items.empty:
        return 0
    feats = _features_frame(engine, list(items["item_id"]))
    docs = _documents(items, _transcripts(feats))
    tokens = tokenize_many(docs)
    keywords = models["keywords"].transform(tokens=tokens)
    labelled = {k: v for k, v in (meta.get("labels") or {}).items() if k in set(items["item_id"])}
    cats = _predict_categories(items, docs, tokens, labelled, models["tagger"], models["classifier"])
    tm = models["topics"]
    mixture = tm.transform(tokens) if tm is not None else np.zeros((len(docs), 0))
    emb = models["embedder"]
    if emb is None and meta.get("embedder") in ("use", "e5"):
        emb = _embedder(meta["embedder"], int(meta.get("dim") or 64)).fit()
    vectors = emb.transform(docs, tokens=tokens) if emb is not None else np.zeros((len(docs), 0))
    rows = [
        {"item_id": iid, "keywords": [w for w, _ in kw], "category": cat,
         "topics": _topic_dict(mixture[i]), "embedding": _vec(vectors[i]) if vectors.shape[1] else None}
        for i, (iid, kw, cat) in enumerate(zip(items["item_id"], keywords, cats, strict=True))
    ]
    _write_features(engine, rows)
    invalidate(engine)
    return len(rows)


# ---------------------------------------------------------------------------------------------- reading
def _item_or_404(engine: Engine, item_id: str) -> pd.Series:
    items = _items_frame(engine, [item_id])
    if items.empty:
        raise NotFound(f"unknown item_id {item_id!r}")
    return items.iloc[0]


def item_features(engine: Engine, item_id: str, include_embedding: bool = False) -> dict[str, Any]:
    """An item's stored features, with topic words; ``tagged`` is False before ``content tag`` ran."""
    item = _item_or_404(engine, item_id)
    with Session(engine) as session:
        f = session.get(ItemFeaturesRow, item_id)
    meta = _kv_get(engine, MODELS_KEY) or {}
    topic_info = {str(t["id"]): t for t in meta.get("topics", [])}
    out: dict[str, Any] = {
        "item_id": item_id,
        "kind": item["kind"],
        "title": item["title"],
        "tags": item["tags"],
        "creator_id": item["creator_id"],
        "tagged": False,
        "keywords": [],
        "category": None,
        "topics": [],
        "embedding_dim": 0,
        "video": None,
        "transcript": None,
        "updated_at": None,
        "model_version": meta.get("version"),
    }
    if f is None:
        return out
    emb = f.embedding or []
    video = dict(f.video or {})
    tr = video.pop("transcript", None)
    out.update(
        tagged=bool(f.keywords or f.category or f.topics or emb),
        keywords=list(f.keywords or []),
        category=f.category,
        topics=sorted(
            (
                {"topic": int(k), "share": float(w), "label": topic_info.get(str(k), {}).get("label"),
                 "words": topic_info.get(str(k), {}).get("words", [])[:5]}
                for k, w in (f.topics or {}).items()
            ),
            key=lambda t: -t["share"],
        ),
        embedding_dim=len(emb),
        video=video or None,
        transcript={k: v for k, v in tr.items() if k != "text"} | {"excerpt": tr.get("text", "")[:200]}
        if tr else None,
        updated_at=f.updated_at.isoformat() if f.updated_at else None,
    )
    if include_embedding:
        out["embedding"] = emb
    return out


# ---------------------------------------------------------------------------------------------- similar
@dataclass
class _SimIndex:
    model: SimilarItems
    source: str
    items: pd.DataFrame  # indexed by item_id: kind, title, tags, creator_id, category


_SIM_CACHE: dict[str, tuple[tuple[int, int], _SimIndex]] = {}
_SIM_LOCK = threading.Lock()


def invalidate(engine: Engine | None = None) -> None:
    """Forget cached indexes (of one database, or all)."""
    with _SIM_LOCK:
        if engine is None:
            _SIM_CACHE.clear()
        else:
            _SIM_CACHE.pop(str(engine.url), None)


def _stamp(engine: Engine) -> tuple[int, int]:
    with engine.connect() as c:
        v = c.execute(select(KeyValue.value).where(KeyValue.key == VERSION_KEY)).scalar() or {}
        n = c.execute(select(func.count()).select_from(Item)).scalar() or 0
    return int(v.get("version", 0)), int(n)


def _sim_index(engine: Engine) -> _SimIndex:
    stamp = _stamp(engine)
    key = str(engine.url)
    with _SIM_LOCK:
        hit = _SIM_CACHE.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    idx = _build_index(engine)
    with _SIM_LOCK:
        _SIM_CACHE[key] = (stamp, idx)
    return idx


def _idf_tags(tag_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, list[str]]:
    """Multi-hot tags weighted by IDF, so sharing a rare tag counts more than sharing 'course'."""
    n = len(tag_lists)
    df = Counter(t for tags in tag_lists for t in set(tags))
    names = sorted(df)
    col = {t: j for j, t in enumerate(names)}
    m = np.zeros((n, len(names)))
    for i, tags in enumerate(tag_lists):
        for t in set(tags):
            m[i, col[t]] = math.log((1 + n) / (1 + df[t])) + 1.0
    return m, names


def _build_index(engine: Engine) -> _SimIndex:
    items = _items_frame(engine)
    if items.empty:
        raise NotFound("the catalog is empty")
    feats = _features_frame(engine).set_index("item_id").reindex(items["item_id"])
    has = feats["keywords"].notna() | feats["embedding"].notna()
    source = "content" if bool(has.any()) else "tags"
    cats = [c if isinstance(c, str) and c else None for c in feats["category"]]
    tag_lists = [
        [t.lower() for t in tags] + ([f"category:{c.lower()}"] if c else [])
        for tags, c in zip(items["tags"], cats, strict=True)
    ]
    blocks: dict[str, np.ndarray] = {}
    tag_m, _ = _idf_tags(tag_lists)
    if tag_m.shape[1]:
        blocks["tags"] = tag_m
    creators = pd.get_dummies(items["creator_id"].fillna("")).astype(float)
    if "" in creators.columns:
        creators = creators.drop(columns=[""])
    if creators.shape[1]:
        blocks["creator"] = creators.to_numpy()
    if source == "content":
        embs = [e for e in feats["embedding"] if isinstance(e, list) and e]
        if embs:
            d = len(embs[0])
            blocks["text"] = np.array(
                [e if isinstance(e, list) and len(e) == d else [0.0] * d for e in feats["embedding"]]
            )
        k = 1 + max((int(t) for tp in feats["topics"] if isinstance(tp, dict) for t in tp), default=-1)
        if k > 0:
            m = np.zeros((len(items), k))
            for i, tp in enumerate(feats["topics"]):
                for t, w in (tp or {}).items() if isinstance(tp, dict) else ():
                    m[i, int(t)] = float(w)
            blocks["topics"] = m
        summaries = [
            (v or {}).get("summary") if isinstance(v, dict) else None for v in feats["video"]
        ]
        with_video = [i for i, s in enumerate(summaries) if s]
        if len(with_video) >= 2:
            cols = ["duration_s", "cuts_per_minute", "mean_brightness", "mean_colourfulness"]
            frame = pd.DataFrame([{c: (summaries[i] or {}).get(c) for c in cols} for i in with_video])
            z = standardize_numeric(frame)
            m = np.zeros((len(items), z.shape[1]))
            m[with_video] = z
            blocks["video"] = m
    if not blocks:
        raise NotFound("items have no tags, creators or content features to compare")
    model = SimilarItems(weights={b: SIMILAR_WEIGHTS[b] for b in blocks}).fit(list(items["item_id"]), blocks)
    meta = items.set_index("item_id")[["kind", "title", "tags", "creator_id"]].copy()
    meta["category"] = cats
    return _SimIndex(model, source, meta)


def similar_items(
    engine: Engine, item_id: str, n: int = 10, kind: str | None = None
) -> dict[str, Any]:
    """The ``n`` items most similar to ``item_id`` (optionally of one ``kind``), with shared tags.

    ``source`` says what was compared: ``content`` (features from ``content tag``) or ``tags`` (catalog
    tags and creators only, before the catalog was tagged).
    """
    if n < 1:
        raise ContentError(f"n must be >= 1, got {n}")
    _item_or_404(engine, item_id)
    idx = _sim_index(engine)
    cands = None
    if kind is not None:
        cands = list(idx.items.index[idx.items["kind"] == kind])
    pairs = idx.model.similar_items(item_id, n=n, candidates=cands)
    mine = set(t.lower() for t in idx.items.at[item_id, "tags"])
    out = []
    for j, score in pairs:
        row = idx.items.loc[j]
        out.append({
            "item_id": j,
            "score": score,
            "kind": row["kind"],
            "title": row["title"],
            "category": row["category"],
            "creator_id": row["creator_id"],
            "shared_tags": sorted(t for t in row["tags"] if t.lower() in mine),
        })
    return {"item_id": item_id, "source": idx.source, "weights": idx.model.block_weights_, "n": n,
            "similar": out}


# ---------------------------------------------------------------------------------------------- media
def _merge_video(engine: Engine, item_id: str, patch: dict[str, Any]) -> None:
    """Merge ``patch`` into the item's ``video`` JSON, creating the features row if needed."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        cur = conn.execute(
            select(ItemFeaturesRow.video).where(ItemFeaturesRow.item_id == item_id)
        ).first()
        if cur is None:
            conn.execute(
                (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(ItemFeaturesRow)
                .values(item_id=item_id, keywords=[], topics={}, video=patch, updated_at=now)
            )
        else:
            video = {**(cur[0] or {}), **patch}
            conn.execute(
                update(ItemFeaturesRow).where(ItemFeaturesRow.item_id == item_id)
                .values(video=video, updated_at=now)
            )
        _bump_version(conn)
    invalidate(engine)


def _json_safe(x: Any) -> Any:
    """NaN/inf become None (PostgreSQL's JSON refuses them); tuples become lists."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def analyze_video_file(
    engine: Engine | None,
    path: str | Path,
    *,
    item_id: str | None = None,
    keyframe: str | Path | None = None,
    artifacts_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Video features of ``path`` (PyAV); stored on ``item_id`` when given, keyframe written atomically.

    Without ``keyframe`` a stored item's keyframe goes to ``<artifacts>/keyframes/<item>.png``.
    Raises :class:`ContentError` for a file that cannot be analysed and :class:`NotFound` for an unknown
    item (checked before decoding).
    """
    if item_id is not None:
        if engine is None:
            raise ValueError("storing features on an item needs the engine")
        _item_or_404(engine, item_id)
        if keyframe is None:
            keyframe = _artifacts(artifacts_dir) / "keyframes" / f"{_safe_name(item_id)}.png"
    kf = Path(keyframe) if keyframe is not None else None
    tmp = None
    if kf is not None:
        if kf.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise ContentError(f"keyframe path must end in .png, .jpg or .jpeg, got {kf.name!r}")
        kf.parent.mkdir(parents=True, exist_ok=True)
        tmp = kf.with_name(f".{kf.stem}.{os.getpid()}.tmp{kf.suffix}")
    try:
        feats = VideoAnalyzer().analyze(path, keyframe_path=tmp)
    except VideoError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise ContentError(str(exc)) from None
    if tmp is not None and tmp.exists():
        os.replace(tmp, kf)  # type: ignore[arg-type]
    result = _json_safe({
        "file": str(Path(path).resolve()),
        "analysed_at": _now_iso(),
        "summary": feats.summary(),
        "keyframe": str(kf.resolve()) if kf is not None and feats.keyframe_t is not None else None,
        "shot_cuts": [round(t, 3) for t in feats.shot_cuts],
        "silences": [[round(a, 3), round(b, 3)] for a, b in feats.silences],
    })
    if item_id is not None and engine is not None:
        _merge_video(engine, item_id, result)
        result["item_id"] = item_id
    return result


def import_transcript(engine: Engine, item_id: str, path: str | Path) -> dict[str, Any]:
    """Import an SRT/VTT transcript for ``item_id`` and re-analyse the item like its caption."""
    _item_or_404(engine, item_id)
    p = Path(path)
    if not p.is_file():
        raise ContentError(f"transcript file {p} does not exist")
    raw = p.read_bytes()
    for enc in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        raise ContentError(f"{p}: cannot decode as UTF-8 or GB18030")
    fmt = "vtt" if p.suffix.lower() == ".vtt" else ("srt" if p.suffix.lower() == ".srt" else None)
    try:
        cues = parse_transcript(text, fmt=fmt)
    except ValueError as exc:
        raise ContentError(f"{p}: {exc}") from None
    if not cues:
        raise ContentError(f"{p}: no cue with text")
    body = transcript_text(cues)
    _merge_video(engine, item_id, {"transcript": {
        "file": str(p.resolve()), "n_cues": len(cues), "duration_s": round(max(c.end_s for c in cues), 3),
        "imported_at": _now_iso(), "text": body,
    }})
    n = analyze_items(engine, [item_id])
    out = item_features(engine, item_id)
    out["reanalysed"] = bool(n)
    return out

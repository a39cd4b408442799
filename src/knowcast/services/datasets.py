"""``knowcast import-dataset``: load public datasets from shared/data into the knowcast schema.

Each converter is a pure function from the dataset's own files to knowcast frames (creators, items, users,
events); loading goes through the normal validated ingestion, so a dataset imports idempotently.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from knowcast.ingest.service import ImportReport
from knowcast.paths import shared_data
from knowcast.services.loading import load_frames

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip


def movielens_100k(path: Path) -> dict[str, pd.DataFrame]:
    """Movies → items (genres as tags), ratings → view events (watch_ratio = rating / 5, rating in props)."""
    items = pd.read_csv(path / "u.item", sep="|", header=None, encoding="latin-1")
    genre_cols = items.columns[5:24]
    tags = [[ML100K_GENRES[j] for j, v in enumerate(row) if v == 1] for row in items[genre_cols].to_numpy()]
    item_frame = pd.DataFrame(
        {
            "item_id": "ml100k-m" + items[0].astype(str),
            "kind": "short_video",
            "title": items[1].fillna(""),
            "tags": tags,
            "created_at": pd.to_datetime(items[2], format="%d-%b-%Y", errors="coerce", utc=True),
        }
    )
    item_frame["created_at"] = item_frame["created_at"].fillna(pd.Timestamp("1995-01-01", tz="UTC"))
    users = pd.read_csv(
        path / "u.user", sep="|", header=None, names=["id", "age", "gender", "occupation", "zip"]
    )
    user_frame = pd.DataFrame(
        {
            "user_id": "ml100k-u" + users["id"].astype(str),
            "attributes": [
                {"age": int(a), "gender": g, "occupation": o}
                for a, g, o in zip(users["age"], users["gender"], users["occupation"], strict=True)
            ],
        }
    )
    ratings = pd.read_csv(path / "u.data", sep="\t", header=None, names=["u", "i", "r", "t"])
    return {"items": item_frame, "users": user_frame, "events": _rating_events("ml100k", ratings)}


def movielens_latest_small(path: Path) -> dict[str, pd.DataFrame]:
    movies = pd.read_csv(path / "movies.csv")
    item_frame = pd.DataFrame(
        {
            "item_id": "mlls-m" + movies["movieId"].astype(str),
            "kind": "short_video",
            "title": movies["title"],
            "tags": [[] if g == "(no genres listed)" else g.split("|") for g in movies["genres"]],
        }
    )
    ratings = pd.read_csv(path / "ratings.csv").rename(
        columns={"userId": "u", "movieId": "i", "rating": "r", "timestamp": "t"}
    )
    user_frame = pd.DataFrame({"user_id": "mlls-u" + pd.Series(np.sort(ratings["u"].unique())).astype(str)})
    return {"items": item_frame, "users": user_frame, "events": _rating_events("mlls", ratings)}


def _rating_events(prefix: str, ratings: pd.DataFrame) -> pd.DataFrame:
    r = ratings["r"].astype(float)
    return pd.DataFrame(
        {
            "event_id": f"{prefix}-r" + ratings["u"].astype(str) + "-" + ratings["i"].astype(str),
            "type": "view",
            "ts": ratings["t"].astype(np.int64) * 1000,
            "user_id": f"{prefix}-u" + ratings["u"].astype(str),
            "item_id": f"{prefix}-m" + ratings["i"].astype(str),
            "watch_ratio": r / 5.0,
            "channel": "feed",
            "props": [{"rating": float(x)} for x in r],
        }
    )


def kuairec(path: Path) -> dict[str, pd.DataFrame]:
    """Kuaishou videos → short_video items (caption as title, hashtags and categories as tags).

    The interaction matrices are not in shared/data (see its SOURCE.md), so no events are imported.
    """
    cap = pd.read_csv(path / "kuairec_caption_category.csv", dtype=str, keep_default_na=False)

    def tags(row: pd.Series) -> list[str]:
        out: list[str] = []
        try:
            out += [t for t in ast.literal_eval(row["topic_tag"] or "[]") if t]
        except (ValueError, SyntaxError):
            pass
        for level in ("first", "second", "third"):
            name = row[f"{level}_level_category_name"]
            if name and name != "UNKNOWN":
                out.append(name)
        return out

    cover = cap["manual_cover_text"].where(cap["manual_cover_text"] != "UNKNOWN", "")
    item_frame = pd.DataFrame(
        {
            "item_id": "kuairec-v" + cap["video_id"],
            "kind": "short_video",
            "title": cap["caption"].where(cap["caption"] != "", cover),
            "description": cover,
            "tags": [tags(r) for _, r in cap.iterrows()],
        }
    )
    frames = {"items": item_frame}
    users_path = path / "user_features.csv"
    if users_path.exists():
        uf = pd.read_csv(users_path)
        attr_cols = [c for c in uf.columns if c != "user_id"]
        frames["users"] = pd.DataFrame(
            {
                "user_id": "kuairec-u" + uf["user_id"].astype(str),
                "attributes": [
                    {
                        c: (v.item() if hasattr(v, "item") else v)
                        for c, v in zip(attr_cols, row, strict=True)
                        if not (isinstance(v, float) and np.isnan(v))
                    }
                    for row in uf[attr_cols].itertuples(index=False, name=None)
                ],
            }
        )
    return frames


def experiment_log(name: str) -> Callable[[Path], dict[str, pd.DataFrame]]:
    def convert(path: Path) -> dict[str, pd.DataFrame]:
        from knowcast.experiments.real_logs import load

        log = load(name, path)
        return {"users": log.users, "events": log.events}

    return convert


#: name → (converter, default folder inside shared/data, description)
DATASETS: dict[str, tuple[Callable[[Path], dict[str, pd.DataFrame]], tuple[str, ...], str]] = {
    "movielens-100k": (
        movielens_100k,
        ("movielens", "ml-100k"),
        "MovieLens 100K: 1,682 movies, 943 users, 100k ratings",
    ),
    "ml-latest-small": (
        movielens_latest_small,
        ("movielens", "ml-latest-small"),
        "MovieLens latest-small: 9,742 movies, 610 users, 100k ratings",
    ),
    "kuairec": (
        kuairec,
        ("kuairec",),
        "KuaiRec: 10,728 Kuaishou videos with Chinese captions and categories",
    ),
    "udacity": (
        experiment_log("udacity"),
        ("experiments",),
        "Udacity landing-page A/B test (exposures, conversions)",
    ),
    "cookie_cats": (
        experiment_log("cookie_cats"),
        ("experiments",),
        "Cookie Cats gate_30 vs gate_40 retention test",
    ),
}
ALIASES = {
    "ml-100k": "movielens-100k",
    "ml100k": "movielens-100k",
    "movielens": "movielens-100k",
    "cookie-cats": "cookie_cats",
}


def import_dataset(
    engine: Engine,
    name: str,
    path: str | Path | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, ImportReport]:
    name = ALIASES.get(name, name)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    convert, default, _ = DATASETS[name]
    folder = Path(path) if path else shared_data(*default)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder holding the {name} files")
    frames = convert(folder)
    return load_frames(engine, frames, create_missing=name in ("udacity", "cookie_cats"), progress=progress)

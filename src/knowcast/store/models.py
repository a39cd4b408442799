"""The knowcast schema: SQLAlchemy 2.0 typed models, one place.

Design choices that matter for the rest of the code:
- Users, creators and items are keyed by their external id (a string the customer already has), so events
  can be written without a lookup and exported back unchanged.
- Event time is ``ts``: epoch milliseconds UTC as a BIGINT. It compares, buckets (``ts / 86400000``) and
  indexes the same way on SQLite and PostgreSQL, which keeps the analytics SQL portable.
- Events carry no foreign keys: ingestion validates references itself (it must report the row and the field
  anyway), and an append-only log is faster to load without them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, list[float]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Creator(Base):
    __tablename__ = "creators"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    topics: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Item(Base):
    __tablename__ = "items"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    creator_id: Mapped[str | None] = mapped_column(ForeignKey("creators.id"), index=True)
    price: Mapped[float | None] = mapped_column(Float)
    currency: Mapped[str | None] = mapped_column(String(3))
    duration_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Promotes(Base):
    """A short video or live (promoter) promotes a paid item."""

    __tablename__ = "promotes"

    promoter_id: Mapped[str] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)


class LiveSession(Base):
    __tablename__ = "live_sessions"

    item_id: Mapped[str] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    scheduled_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), default="scheduled")


class Event(Base):
    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    ts: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[str] = mapped_column(String(128))
    item_id: Mapped[str | None] = mapped_column(String(128))
    watch_seconds: Mapped[float | None] = mapped_column(Float)
    watch_ratio: Mapped[float | None] = mapped_column(Float)
    amount: Mapped[float | None] = mapped_column(Float)
    currency: Mapped[str | None] = mapped_column(String(3))
    channel: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(128))
    experiment: Mapped[str | None] = mapped_column(String(128))
    variant: Mapped[str | None] = mapped_column(String(64))
    device: Mapped[str | None] = mapped_column(String(32))
    room_id: Mapped[str | None] = mapped_column(String(128))
    props: Mapped[str | None] = mapped_column(Text)  # JSON text; kept as text for bulk-load speed

    __table_args__ = (
        Index("ix_events_type_ts", "type", "ts"),
        Index("ix_events_user_ts", "user_id", "ts"),
        Index("ix_events_item_ts", "item_id", "ts"),
    )


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    item_id: Mapped[str | None] = mapped_column(String(128), index=True)
    room_id: Mapped[str | None] = mapped_column(String(128), index=True)
    text: Mapped[str] = mapped_column(Text)
    offset_s: Mapped[float | None] = mapped_column(Float)
    # Verdicts knowcast adds (null until analysed).
    moderation: Mapped[str | None] = mapped_column(String(8))
    category: Mapped[str | None] = mapped_column(String(32))
    matched: Mapped[str | None] = mapped_column(Text)
    sentiment: Mapped[str | None] = mapped_column(String(8))
    sentiment_score: Mapped[float | None] = mapped_column(Float)
    is_question: Mapped[bool | None] = mapped_column(Boolean)
    keywords: Mapped[list[str] | None] = mapped_column(JSON)


class Experiment(Base):
    __tablename__ = "experiments"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    state: Mapped[str] = mapped_column(String(16), default="draft")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ExperimentAudit(Base):
    __tablename__ = "experiment_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_key: Mapped[str] = mapped_column(ForeignKey("experiments.key", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128), default="")
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Exposure(Base):
    """A user's first exposure to an experiment (derived from exposure events at ingest)."""

    __tablename__ = "exposures"

    experiment_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64))
    first_ts: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ImportRun(Base):
    """One import (file, dataset, API batch): the history the dashboard shows and what a rerun resumes."""

    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="running")
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_written: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128), default="")
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class KeyValue(Base):
    """Small named settings and pointers (e.g. the current model version), shared by all workers."""

    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Account(Base):
    """A dashboard sign-in (admin, analyst or creator); a creator account sees only its creator's data."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # admin | analyst | creator
    creator_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    """A trained model artifact on disk; exactly one active version per name is served."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=False)


class ItemFeatures(Base):
    """What content understanding learned about an item (keywords, category, topics, embedding, video)."""

    __tablename__ = "item_features"

    item_id: Mapped[str] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    category: Mapped[str | None] = mapped_column(String(64))
    topics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    embedding: Mapped[list[float] | None] = mapped_column(JSON)
    video: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserProfile(Base):
    __tablename__ = "user_profiles"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    interests: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    segment: Mapped[str | None] = mapped_column(String(64), index=True)
    last_ts: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16), default="cluster")  # cluster | rule
    definition: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    size: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SegmentMember(Base):
    __tablename__ = "segment_members"

    segment_id: Mapped[str] = mapped_column(ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)


class RoomMinute(Base):
    """Live-room metrics per minute, so a room can be analysed after it ends."""

    __tablename__ = "room_minutes"

    room_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    minute_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    comments: Mapped[int] = mapped_column(Integer, default=0)
    blocked: Mapped[int] = mapped_column(Integer, default=0)
    questions: Mapped[int] = mapped_column(Integer, default=0)
    gifts: Mapped[int] = mapped_column(Integer, default=0)
    gift_amount: Mapped[float] = mapped_column(Float, default=0.0)
    purchases: Mapped[int] = mapped_column(Integer, default=0)
    gmv: Mapped[float] = mapped_column(Float, default=0.0)
    joins: Mapped[int] = mapped_column(Integer, default=0)
    leaves: Mapped[int] = mapped_column(Integer, default=0)
    viewers: Mapped[int] = mapped_column(Integer, default=0)
    sentiment: Mapped[float | None] = mapped_column(Float)


# Funnels and per-user step lookups read (type, user_id, ts) ranges without touching the table; the analytics
# funnel query takes its fast path when an index led by (type, user_id) exists, and reads the first step's
# channel (the usual breakdown) from it too (migration 0004).
Index("ix_events_type_user_ts_channel", Event.type, Event.user_id, Event.ts, Event.channel)


class RollupItemDay(Base):
    """Per (time-zone offset, local day, item) event counts and amounts, kept by ``services.rollups``.

    The dashboard's day charts and top lists sum these instead of scanning the event log; a day is recomputed
    only when its events change. ``item_id`` is '' for events without an item.
    """

    __tablename__ = "rollup_item_day"

    off_min: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    impressions: Mapped[int] = mapped_column(Integer, default=0)
    views: Mapped[int] = mapped_column(Integer, default=0)
    watch_s: Mapped[float] = mapped_column(Float, default=0.0)
    ratio_sum: Mapped[float] = mapped_column(Float, default=0.0)
    engagements: Mapped[int] = mapped_column(Integer, default=0)
    follows: Mapped[int] = mapped_column(Integer, default=0)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    carts: Mapped[int] = mapped_column(Integer, default=0)
    purchases: Mapped[int] = mapped_column(Integer, default=0)
    gmv: Mapped[float] = mapped_column(Float, default=0.0)
    subscribes: Mapped[int] = mapped_column(Integer, default=0)
    sub_amount: Mapped[float] = mapped_column(Float, default=0.0)
    tips: Mapped[int] = mapped_column(Integer, default=0)
    tip_amount: Mapped[float] = mapped_column(Float, default=0.0)
    refunds: Mapped[int] = mapped_column(Integer, default=0)
    refund_amount: Mapped[float] = mapped_column(Float, default=0.0)
    refund_abs: Mapped[float] = mapped_column(Float, default=0.0)
    live_joins: Mapped[int] = mapped_column(Integer, default=0)


class RollupUserDay(Base):
    """Per (time-zone offset, local day, user) activity: one row per user active that day (any event type
    except impression and exposure). Distinct-user numbers (daily actives, 7-day actives, payers, retention
    cohorts, activity tiers) count these rows instead of running COUNT(DISTINCT) over the event log."""

    __tablename__ = "rollup_user_day"

    off_min: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    paying: Mapped[int] = mapped_column(Integer, default=0)
    views: Mapped[int] = mapped_column(Integer, default=0)
    pays: Mapped[int] = mapped_column(Integer, default=0)
    last_ts: Mapped[int | None] = mapped_column(BigInteger)

    # Per-user questions (first active day, retention returns) read this index alone.
    __table_args__ = (Index("ix_rollup_user_day_user", "off_min", "user_id", "views", "day"),)


class RollupDay(Base):
    """The signature (event count, sum of ts) of each rolled-up local day: a day is recomputed when the event
    log's signature for it differs (new, late or deleted events)."""

    __tablename__ = "rollup_days"

    off_min: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    n_events: Mapped[int] = mapped_column(BigInteger, default=0)
    ts_sum: Mapped[int] = mapped_column(BigInteger, default=0)

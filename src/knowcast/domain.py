"""The knowcast vocabulary (see DESIGN.md) as plain Python types.

Every layer imports these names, so the store, the ingest validation, the simulator and the API agree on
what an item kind or an event type is spelled like.
"""

from __future__ import annotations

from enum import StrEnum


class ItemKind(StrEnum):
    SHORT_VIDEO = "short_video"
    LIVE = "live"
    COURSE = "course"
    COLUMN = "column"
    EBOOK = "ebook"
    AUDIO = "audio"
    MEMBERSHIP = "membership"


#: Kinds a user pays for; they carry a price and can be promoted by videos and lives.
PAID_KINDS: frozenset[str] = frozenset(
    {ItemKind.COURSE, ItemKind.COLUMN, ItemKind.EBOOK, ItemKind.AUDIO, ItemKind.MEMBERSHIP}
)
#: Kinds that promote paid items.
PROMOTER_KINDS: frozenset[str] = frozenset({ItemKind.SHORT_VIDEO, ItemKind.LIVE})
#: Kinds with a media duration.
MEDIA_KINDS: frozenset[str] = frozenset(
    {ItemKind.SHORT_VIDEO, ItemKind.LIVE, ItemKind.AUDIO, ItemKind.COURSE}
)


class EventType(StrEnum):
    IMPRESSION = "impression"
    VIEW = "view"
    LIKE = "like"
    COMMENT = "comment"
    SHARE = "share"
    FOLLOW = "follow"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    REFUND = "refund"
    SUBSCRIBE = "subscribe"
    TIP = "tip"
    LIVE_JOIN = "live_join"
    LIVE_LEAVE = "live_leave"
    EXPOSURE = "exposure"


EVENT_TYPES: frozenset[str] = frozenset(e.value for e in EventType)
#: Event types that move money; they need an amount.
MONEY_EVENTS: frozenset[str] = frozenset(
    {EventType.PURCHASE, EventType.REFUND, EventType.SUBSCRIBE, EventType.TIP}
)
#: Event types that must name an item.
ITEM_EVENTS: frozenset[str] = frozenset(
    {
        EventType.IMPRESSION,
        EventType.VIEW,
        EventType.LIKE,
        EventType.COMMENT,
        EventType.SHARE,
        EventType.CLICK,
        EventType.ADD_TO_CART,
        EventType.PURCHASE,
        EventType.REFUND,
        EventType.LIVE_JOIN,
        EventType.LIVE_LEAVE,
    }
)


class Channel(StrEnum):
    FEED = "feed"
    SEARCH = "search"
    PUSH = "push"
    KOL = "kol"
    OTHER_PLATFORM = "other_platform"
    LIVE = "live"
    DIRECT = "direct"


class LiveState(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class ExperimentState(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"


class Scope(StrEnum):
    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"


#: Columns of an event record, in the order exports and CSV templates use.
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "type",
    "ts",
    "user_id",
    "item_id",
    "watch_seconds",
    "watch_ratio",
    "amount",
    "currency",
    "channel",
    "source",
    "experiment",
    "variant",
    "device",
    "room_id",
    "props",
)

USER_COLUMNS: tuple[str, ...] = ("user_id", "created_at", "attributes")
CREATOR_COLUMNS: tuple[str, ...] = ("creator_id", "name", "topics", "created_at")
ITEM_COLUMNS: tuple[str, ...] = (
    "item_id",
    "kind",
    "title",
    "description",
    "tags",
    "creator_id",
    "price",
    "currency",
    "duration_s",
    "created_at",
    "promotes",
)
COMMENT_COLUMNS: tuple[str, ...] = ("comment_id", "ts", "user_id", "item_id", "room_id", "text", "offset_s")

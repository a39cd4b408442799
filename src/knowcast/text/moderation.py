"""Comment moderation: lexicon matching with evasion handling, contact-spam patterns and flood control.

How a comment is judged (:meth:`Moderator.moderate`):

1. **Skeleton.** The text is folded (width, traditional → simplified, case, zero-width removed; see
   :func:`knowcast.text.normalize.fold`) and every character that is not a letter, digit or Han character is
   dropped. "微 信", "v❤x", "薇*信" and "机\u2063巴" become "微信", "vx", "薇信", "机巴": separators
   people insert to dodge a filter disappear. Lexicon words are turned into skeletons the same way.
2. **Lexicon.** One Aho–Corasick automaton (pyahocorasick, C) holds every lexicon word → one pass over the
   skeleton finds all of them, whatever the lexicon size. Words come from ``words_zh.txt`` (categories from
   ``word_categories.csv``, whose numeric codes are mapped to names by reading ``SOURCE.md``), the category
   lists in ``konsheng/`` that add politics/porn/terrorism/weapons, the tiny English list, and the room's
   own block list.
3. **False positives.** A hit is dropped when an allow-listed word covers it (``allow_zh.txt``, the room's
   allow list, and common words from jieba's dictionary that *contain* a lexicon word, e.g. 共和国 ⊃ 共和,
   情人节 ⊃ 情人), when a two-character hit straddles a word boundary (配不上你 ⊅ 上你: a common word
   overlaps it partially), when a pure-ASCII word has letters glued on either side (usb ⊅ sb), and when the
   word itself is an everyday word (jieba frequency ≥ ``common_freq``: 火车, 征服, 骑士 ...).
4. **Homophones and pinyin.** Every Han character is replaced by its toneless pinyin (one ``str.translate``
   pass) and matched against the pinyin of lexicon words of three or more characters, accepted only on
   syllable boundaries: "法仑功", "fa lun gong" and "fa轮gong" all read "falungong".
5. **Contact spam** (the lexicons have no advertising category): Chinese digits are read as digits
   (一三八… → 138…, 幺 → 1), then phone numbers, QQ/WeChat ids after a cue (加V, 薇信, 扣扣, vx, wx, qq,
   企鹅 …), digit runs and URLs are detected.

The verdict is ``block`` (a categorised lexicon hit, a phone number, a cue plus an id), ``review`` (a
homophone/pinyin hit, a bare contact cue, a long digit run, a URL) or ``pass``, with the category, the span in
the original text and the matched word, so a moderator sees why.

Flood control (:class:`FloodGuard`) is stateful and kept apart: same or near-duplicate text repeated by one
user or by many users in a time window, and the comment rate per user.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from bisect import bisect_left
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate, compress
from pathlib import Path
from typing import Literal, NamedTuple

import ahocorasick
import numpy as np

from knowcast.text.moderation_batch import BatchGate, BatchScan
from knowcast.text.normalize import fold, to_text

Action = Literal["pass", "review", "block"]

#: Category names used when SOURCE.md cannot be read (the houbb codes as documented there).
DEFAULT_CATEGORY_CODES: dict[str, str] = {
    "0": "politics",
    "1": "drugs",
    "2": "porn",
    "3": "gambling",
    "4": "illegal",
}
#: konsheng/ lists that add a clear category (the broad mixed lists are left out on purpose).
KONSHENG_CATEGORIES: dict[str, str] = {
    "politics.txt": "politics",
    "reactionary.txt": "politics",
    "corruption.txt": "politics",
    "terrorism.txt": "terrorism",
    "guns_explosives.txt": "weapons",
    "porn.txt": "porn",
    "porn_type.txt": "porn",
}
#: English lexicon entries that are ordinary words in English chat (Chinese slang senses only).
EN_SKIP: frozenset[str] = frozenset({"duck", "chicken", "fowl", "gender"})

_ACTION_RANK = {"pass": 0, "review": 1, "block": 2}
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_NON_SKELETON = re.compile(rf"[^0-9a-z{_HAN}]+")
_IS_SKELETON_CHAR = re.compile(rf"[0-9a-z{_HAN}]")

# --- contact spam -------------------------------------------------------------------------------------
_CN_DIGITS = str.maketrans(
    {
        "零": "0", "〇": "0", "洞": "0", "一": "1", "幺": "1", "壹": "1", "二": "2", "贰": "2", "两": "2",
        "三": "3", "叁": "3", "四": "4", "肆": "4", "五": "5", "伍": "5", "六": "6", "陆": "6",
        "七": "7", "柒": "7", "拐": "7", "八": "8", "捌": "8", "九": "9", "玖": "9", "勾": "9",
    }
)  # fmt: skip
#: Cue words (skeleton form) that announce a contact id; homophones of 微信 included.
CONTACT_CUES: tuple[str, ...] = (
    "微信", "薇信", "威信", "维信", "徽信", "微芯", "薇芯", "威芯", "徽芯", "微心", "薇心", "v信",
    "微x", "wei信", "vx", "wx", "weixin", "wechat", "vchat", "加v", "加微", "加薇", "家v", "佳v", "扣扣",
    "抠抠", "qq", "企鹅号", "球球", "q号", "手机号", "电话", "联系方式", "私聊", "私信我", "加我", "tg",
    "telegram", "whatsapp",
)  # fmt: skip
_PHONE_RE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
_DIGITS_RE = re.compile(r"\d{7,}")
_ID_AFTER_CUE_RE = re.compile(r"[:：]?\s*([a-z0-9][a-z0-9_\-]{4,19})")
_URL_RE = re.compile(
    r"(?:https?://|www\.)\S+|(?<![a-z0-9@])[a-z0-9][a-z0-9\-]{1,62}(?:\.[a-z0-9\-]{1,62})*"
    r"\.(?:com|cn|net|org|top|xyz|cc|io|me|vip|info|tv|co|app|site|club|live|shop)(?![a-z])"
)
_SEP_DIGITS_RE = re.compile(r"\d(?:[\s\-_.·*/|]{0,2}\d){6,}")
_DOT_WORDS = re.compile(r"[。．·]|点(?=(?:com|cn|net|org|top|xyz|cc|vip)\b)")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What moderation decided about one comment, and why.

    ``span`` is ``(start, end)`` in the original text (Python slice indices), ``matched`` the lexicon word
    or pattern that fired (in its normalised form), ``reason`` a short human sentence for moderators.
    """

    action: Action = "pass"
    category: str | None = None
    span: tuple[int, int] | None = None
    matched: str | None = None
    reason: str = ""

    @property
    def flagged(self) -> bool:
        return self.action != "pass"

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "category": self.category,
            "span": list(self.span) if self.span else None,
            "matched": self.matched,
            "reason": self.reason,
        }


PASS = Verdict()


_MAX_CP = 0x30000  # tables cover the BMP, emoji planes and CJK extensions B-G


@lru_cache(maxsize=1)
def _enc_table() -> list[int | str | None]:
    """Code point → skeleton char written as two units (0x100 + high byte, low byte), or None (dropped).

    Why two units: pyahocorasick scans a node's children linearly, and a 60,000-word Chinese lexicon gives
    the root thousands of children; a two-unit alphabet keeps every node under ~300 children, about 8× faster.
    High units (≥ 0x100) and low units (< 0x100) never mix, so matches always start on a character.
    """
    table: list[int | str | None] = [None] * _MAX_CP
    for cp in range(_MAX_CP):
        ch = chr(cp)
        f = fold(ch)
        if len(f) == 1 and f == ch and not _IS_SKELETON_CHAR.match(ch):
            continue
        out = "".join(
            chr(0x100 + (ord(c) >> 8)) + chr(ord(c) & 0xFF) for c in f if _IS_SKELETON_CHAR.match(c)
        )
        table[cp] = out or None
    return table


def _encode_key(key: str) -> str:
    return "".join(chr(0x100 + (ord(c) >> 8)) + chr(ord(c) & 0xFF) for c in key)


@lru_cache(maxsize=1)
def _skel_table() -> list[int | str | None]:
    """Code point → its skeleton characters (or None), as a list so ``str.translate`` never misses."""
    table: list[int | str | None] = [None] * _MAX_CP
    enc = _enc_table()
    for cp, e in enumerate(enc):
        if e is not None:
            table[cp] = "".join(chr(((ord(e[i]) - 0x100) << 8) | ord(e[i + 1])) for i in range(0, len(e), 2))
    return table


@lru_cache(maxsize=1)
def _pyraw_table() -> list[int | str | None]:
    """Code point → the pinyin of its skeleton characters (Han) or the characters themselves."""
    py = pinyin_table()
    table: list[int | str | None] = [None] * _MAX_CP
    for cp, sk in enumerate(_skel_table()):
        if sk is not None:
            table[cp] = "".join(py.get(ord(c), c) for c in sk)  # type: ignore[union-attr]
    return table


@lru_cache(maxsize=1)
def _pinyin_len_table() -> list[str]:
    """Code point → chr(length of its toneless pinyin), chr(1) for characters without one (letters,
    digits): the lengths that map pinyin offsets back to skeleton characters."""
    py = pinyin_table()
    return [chr(len(py.get(cp, "x"))) for cp in range(_MAX_CP)]


@lru_cache(maxsize=1)
def _syllable_units() -> dict[int, str]:
    """Han character → two units naming its toneless pinyin syllable number n: chr(0x100 + n // 24) and
    chr(0x200 + n % 24).

    Why two units and not one: pyahocorasick walks a node's children one by one, and ~400 syllables as
    single units give the root ~400 children; split in two, no node has more than ~60, which halves the
    cost of the homophone gate. The two ranges never mix with each other or with letters and digits, so a
    key can only match at a syllable start."""
    py = pinyin_table()
    ids = {syl: i for i, syl in enumerate(sorted(set(py.values())))}
    return {cp: chr(0x100 + ids[syl] // 24) + chr(0x200 + ids[syl] % 24) for cp, syl in py.items()}


@lru_cache(maxsize=1)
def _syllable_table() -> list[int | str | None]:
    """Code point → its skeleton characters with Han characters as syllable units (letters, digits kept)."""
    units = _syllable_units()
    table: list[int | str | None] = [None] * _MAX_CP
    for cp, sk in enumerate(_skel_table()):
        if sk is not None:
            table[cp] = "".join(units.get(ord(c), c) for c in sk)  # type: ignore[union-attr]
    return table


_URL_TLDS = ("com", "cn", "net", "org", "top", "xyz", "cc", "io", "me", "vip", "info", "tv", "co", "app",
             "site", "club", "live", "shop")  # fmt: skip


@lru_cache(maxsize=1)
def _contact_gate_keys() -> tuple[str, ...]:
    """Skeleton strings whose presence sends a comment to the contact checks: every pair of digit-like
    characters (a phone number, id or digit run has 7+ in a row in the skeleton) and the link cues of
    ``_URL_PRE`` (``http``, ``www``, top-level domains; the dot itself is not in the skeleton)."""
    chars = "0123456789零〇一二三四五六七八九幺壹贰两叁肆伍陆柒捌玖洞拐勾"
    digits = sorted({skeleton(c) for c in chars} - {""})
    return tuple(a + b for a in digits for b in digits) + ("http", "www", *_URL_TLDS)


_GATE = ("", "", "pass", "gate")  # automaton payload of a gate key
_CACHE_MAX_CHARS = 512
_GATE_LOCK = threading.Lock()
_COVER_CACHE_MAX = 100_000  # allow-word decisions remembered per moderator (see Moderator._filter)
_BATCH_MIN = 32  # smaller batches are judged one by one (the vectorised pass has a fixed cost)
_ENC_LATIN_RE = re.compile("\u0100[a-z]")  # a Latin letter in the two-unit encoding


_DIGIT_CHARS = "0-9０-９零〇一二三四五六七八九幺壹贰两叁肆伍陆柒捌玖洞拐勾"
_DIGIT_PRE = re.compile(rf"(?:[{_DIGIT_CHARS}][^0-9a-zA-Z{_HAN}]{{0,3}}){{5}}")
_URL_PRE = re.compile(
    r"https?|www|[a-z0-9][.。．·点](?:com|cn|net|org|top|xyz|cc|io|me|vip|info|tv|co|app|site|club|live|shop)",
    re.I,
)
_SENTENCE_PUNCT = re.compile(r"[，。！？、；：,!?;:\n]")
_HIGH_PLANE_RE = re.compile("[\U00030000-\U0010ffff]")


def skeleton(text: str) -> str:
    """Folded text with every non letter/digit/Han character removed (the form all matching runs on)."""
    # One C pass over a per-code-point table (same result as dropping non-skeleton characters from
    # fold(text)); code points beyond the table pass through translate unchanged, so drop them after.
    sk = text.translate(_skel_table())
    if len(sk.encode("utf-16-le", "surrogatepass")) != 2 * len(sk):
        sk = _HIGH_PLANE_RE.sub("", sk)
    return sk


def _digit_run(raw: str) -> str | None:
    """The longest digit run in the text allowing light separators ("138 1234-5678") but not commas or
    brackets, so coordinates and lists of numbers are not read as one phone number."""
    m = _SEP_DIGITS_RE.search(fold(raw).translate(_CN_DIGITS))
    return re.sub(r"\D", "", m.group(0)) if m else None


@lru_cache(maxsize=1)
def _skel_len_table() -> list[str]:
    """Code point → one character naming how many skeleton characters it becomes: "\x00" (dropped),
    "\x01" (one) or "\x02" (several: ½ → 12)."""
    return ["\x00" if t is None else ("\x01" if len(t) == 1 else "\x02") for t in _skel_table()]  # type: ignore[arg-type]


def _skeleton_index_map(text: str, upto: int | None = None) -> list[int]:
    """For each skeleton character, the index of the original character it came from (built only on a hit).

    The common case (every character dropped or kept as one) is one ``str.translate`` to 0/1 markers and
    ``itertools.compress`` over them, both in C; a text with a character that expands or lies beyond the
    tables takes the per-character loop."""
    marks = text.translate(_skel_len_table())
    if not marks or max(marks) <= "\x01":
        return list(compress(range(len(marks)), marks.encode("latin-1")))
    table = _skel_table()
    out: list[int] = []
    for i, ch in enumerate(text):
        cp = ord(ch)
        t = table[cp] if cp < _MAX_CP else None
        if t is None:
            continue
        out.extend([i] * len(t))  # type: ignore[arg-type]
        if upto is not None and len(out) >= upto:
            break
    return out


def lexicon_dir() -> Path:
    """``$KNOWCAST_LEXICON_DIR`` or ``shared/data/lexicons``."""
    env = os.environ.get("KNOWCAST_LEXICON_DIR")
    if env:
        p = Path(env)
        if not p.is_dir():
            raise FileNotFoundError(f"KNOWCAST_LEXICON_DIR={env} is not a directory")
        return p
    from knowcast.paths import shared_data

    return shared_data("lexicons")


def category_codes(source_md: str | None) -> dict[str, str]:
    """Read the ``0 politics, 1 drugs, ...`` legend out of lexicons/SOURCE.md (fallback: documented codes)."""
    codes = dict(DEFAULT_CATEGORY_CODES)
    if not source_md:
        return codes
    for line in source_md.splitlines():
        if "categor" not in line.lower():
            continue
        found = re.findall(r"(?<![\d,])(\d) ([a-z]+)", line)
        if len(found) >= 3:
            return {k: v for k, v in found}
    return codes


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [w.strip() for w in path.read_text(encoding="utf-8", errors="replace").splitlines() if w.strip()]


@lru_cache(maxsize=1)
def _stop_chars() -> frozenset[str]:
    """Single-character stop words (的, 他, 了 ...): two of them together are never a sensitive word."""
    from knowcast.text.tokenize import load_stopwords

    return frozenset(w for w in load_stopwords() if len(w) == 1)


@lru_cache(maxsize=1)
def _jieba_freq() -> dict[str, int]:
    """jieba's bundled dictionary (word → frequency), used to tell everyday words from sensitive ones."""
    import jieba

    path = Path(jieba.__file__).resolve().parent / "dict.txt"
    out: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.split(" ")
            if len(parts) >= 2:
                try:
                    out[parts[0]] = int(parts[1])
                except ValueError:
                    continue
    return out


def _strip_tone(syl: str) -> str:
    base = "".join(c for c in unicodedata.normalize("NFD", syl) if not unicodedata.combining(c))
    return base.replace("ü", "v")


@lru_cache(maxsize=1)
def pinyin_table() -> dict[int, str]:
    """Han character → toneless pinyin of its first reading (for one-pass ``str.translate``)."""
    from pypinyin.pinyin_dict import pinyin_dict

    table: dict[int, str] = {}
    for cp, readings in pinyin_dict.items():
        first = readings.split(",")[0]
        syl = _strip_tone(first).lower()
        if syl.isascii() and syl.isalpha():
            table[cp] = syl
    return table


def _lexicon_entries(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(word → category) for block-worthy words and (word → category) for uncategorised words."""
    src = folder / "SOURCE.md"
    codes = category_codes(src.read_text(encoding="utf-8") if src.exists() else None)
    # word_categories.csv only tags words; the dictionary is words_zh.txt (76 tagged words are not in it and
    # are everyday words such as 国务院, 出售, 美女 that the library itself never matches).
    tags: dict[str, str] = {}
    cat_file = folder / "word_categories.csv"
    if cat_file.exists():
        for line in _read_lines(cat_file)[1:]:
            word, _, cats = line.rpartition(",")
            if not word:
                continue
            names = [codes.get(c.strip(), "other") for c in cats.split(";") if c.strip()]
            specific = [n for n in names if n != "illegal"]
            tags[word] = (specific or names or ["other"])[0]
    categorised: dict[str, str] = {}
    plain: dict[str, str] = {}
    for w in _read_lines(folder / "words_zh.txt"):
        if w in tags:
            categorised[w] = tags[w]
        else:
            plain[w] = "other"
    for w in _read_lines(folder / "words_en.txt"):
        if w.lower() not in EN_SKIP and w not in categorised:
            plain[w] = "other"
    for fname, cat in KONSHENG_CATEGORIES.items():
        for w in _read_lines(folder / "konsheng" / fname):
            if "," in w:  # "考试,答案" means both together: not a substring rule
                continue
            if w not in categorised:
                categorised[w] = cat
                plain.pop(w, None)
    return categorised, plain


class _Hit(NamedTuple):
    """One match. A named tuple, so the scan loops build hits with one C call (``_new_hit``); raid spam
    pastes a slogan many times and yields hundreds of hits per batch."""

    start: int  # skeleton indices, end exclusive
    end: int
    word: str
    category: str
    action: Action
    how: str


_new_hit = tuple.__new__  # _new_hit(_Hit, (start, end, word, category, action, how))


@dataclass
class Moderator:
    """A moderator for one room (or the whole site), built once and reused for every comment.

    Parameters mirror what a room owner can set: ``block_words`` / ``allow_words`` (the room's own lists),
    ``lexicon_dir`` (default ``$KNOWCAST_LEXICON_DIR`` or ``shared/data/lexicons``; ``None`` and
    ``use_lexicon=False`` give a moderator with only the room lists and the contact patterns), ``pinyin``
    (homophone/pinyin matching), ``contacts`` (phone/WeChat/QQ/URL detection), ``common_freq`` (lexicon
    words at least this frequent in jieba's dictionary are everyday words and do not fire on their own;
    ``0`` disables that), ``url_action`` (what a link earns).
    """

    block_words: Iterable[str] = ()
    allow_words: Iterable[str] = ()
    lexicon_dir: str | Path | None = None
    use_lexicon: bool = True
    pinyin: bool = True
    contacts: bool = True
    common_freq: int = 1000
    common_freq_other: int = 100
    auto_allow_freq: int = 30
    min_pinyin_chars: int = 3
    min_pinyin_letters: int = 8
    url_action: Action = "review"
    cache_size: int = 65536
    n_words: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.url_action not in _ACTION_RANK:
            raise ValueError(f"url_action must be pass/review/block, got {self.url_action!r}")
        if self.cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {self.cache_size}")
        self._build()
        # A verdict depends on the text alone (the moderator's lists are fixed once built), and live chat
        # repeats itself (raids, "666", copy-pasted questions): an LRU cache keyed by the raw text makes a
        # repeat cost one dict lookup. Texts longer than _CACHE_MAX_CHARS are judged afresh (memory bound).
        self._cached = lru_cache(maxsize=self.cache_size)(self._moderate) if self.cache_size else None
        self._cover_cache: dict[tuple[str, int, int], bool] = {}

    # ---------------------------------------------------------------- building
    def _build(self) -> None:
        categorised: dict[str, str] = {}
        plain: dict[str, str] = {}
        if self.use_lexicon:
            folder = Path(self.lexicon_dir) if self.lexicon_dir is not None else lexicon_dir()
            if not folder.is_dir():
                raise FileNotFoundError(f"lexicon_dir {folder} is not a directory")
            categorised, plain = _lexicon_entries(folder)
            allow_base = _read_lines(folder / "allow_zh.txt")
        else:
            allow_base = []
        freq = _jieba_freq() if (self.use_lexicon and (self.common_freq or self.auto_allow_freq)) else {}

        room_allow = [skeleton(to_text(w, field="allow_words")) for w in self.allow_words]
        self._room_allow = {w for w in room_allow if w}
        automaton = ahocorasick.Automaton()
        entries: dict[str, tuple[str, Action, str]] = {}
        self._common: set[str] = set()
        stop = _stop_chars()
        for word, cat in [*plain.items(), *categorised.items()]:
            key = skeleton(word)
            if len(key) <= 1:
                continue  # one character alone would block half of all chat
            threshold = self.common_freq_other if cat == "other" else self.common_freq
            if (self.common_freq and freq.get(key, 0) >= threshold) or (
                cat == "other" and len(key) == 2 and key[0] in stop and key[1] in stop
            ):
                self._common.add(key)  # everyday word (火车, 午夜) or two function characters (他的)
                continue
            # Uncategorised words are a mixed bag (slang, names, scalping terms): a person should look.
            entries[key] = (cat, "block" if cat != "other" else "review", "lexicon")
        for w in self.block_words:
            key = skeleton(to_text(w, field="block_words"))
            if key:
                entries[key] = ("room", "block", "room block list")
                self._common.discard(key)
        for key in self._room_allow:
            entries.pop(key, None)
        if self.contacts:
            for cue in CONTACT_CUES:
                key = skeleton(cue)
                if len(key) >= 2:
                    entries[key] = ("ads", "review", "contact cue")  # a cue alone is review; cue + id blocks
        for key, (cat, action, how) in entries.items():
            automaton.add_word(_encode_key(key), (key, cat, action, how))
        self._scan_keys: list[str] = list(entries)  # every key of the main automaton (for moderate_many)
        n_gates = 0
        if self.contacts:
            # Gate keys ride along in the same pass: two digit-like characters in a row (every phone number,
            # id or digit run has them) and link cues (http, www, top-level domains). They are not verdicts,
            # only "look closer" signals, so a clean comment without them skips the contact regexes.
            for key in _contact_gate_keys():
                if key not in entries:
                    automaton.add_word(_encode_key(key), _GATE)
                    self._scan_keys.append(key)
                    n_gates += 1
        self._enc = _enc_table()
        self.n_words = len(entries)
        if entries or n_gates:
            automaton.make_automaton()
            self._auto: ahocorasick.Automaton | None = automaton
        else:
            self._auto = None
        self._cue_keys = {skeleton(c) for c in CONTACT_CUES} if self.contacts else set()

        # Allow automaton: the library's and the room's allow words, plus common words (jieba) of 2-6
        # characters that are not lexicon words; consulted only after a hit, so it costs nothing otherwise.
        allow = ahocorasick.Automaton()
        n_allow = 0
        self._allow_maxlen = 0  # longest allow key: only allow words this close to a hit can cover it
        for w in [*allow_base, *self._room_allow]:
            key = skeleton(w)
            if key:
                allow.add_word(_encode_key(key), (key, True))
                n_allow += 1
                self._allow_maxlen = max(self._allow_maxlen, len(key))
        if self.auto_allow_freq:
            for w, f in freq.items():
                if f >= self.auto_allow_freq and 2 <= len(w) <= 6 and w not in entries:
                    key = skeleton(w)
                    if key and key not in entries and key not in self._room_allow:
                        allow.add_word(_encode_key(key), (key, False))
                        n_allow += 1
                        self._allow_maxlen = max(self._allow_maxlen, len(key))
        if n_allow:
            allow.make_automaton()
            self._allow: ahocorasick.Automaton | None = allow
        else:
            self._allow = None

        # Pinyin automaton over lexicon words of >= min_pinyin_chars Han characters.
        self._py_auto: ahocorasick.Automaton | None = None
        self._syl_auto = None
        self._py_keys: list[str] = []
        self._syl_keys: list[str] = []
        self._batch_gate: BatchGate | None = None
        _skel_len_table()  # built now, not on the first hit
        if self.pinyin and entries:
            _pinyin_len_table()
            table = pinyin_table()
            self._py_table = table
            self._pyraw = _pyraw_table()
            py = ahocorasick.Automaton()
            n = 0
            for key, (cat, _action, how) in entries.items():
                if how == "contact cue":
                    continue
                # homophones of short uncategorised words (names, slang: 李适时, 年的事) hit everyday
                # phrases, so those need one more character than categorised words
                n_han = sum(1 for c in key if ord(c) in table)
                if n_han < self.min_pinyin_chars + (1 if cat == "other" else 0):
                    continue
                pk = key.translate(table)
                if len(pk) >= self.min_pinyin_letters and pk.isascii():
                    py.add_word(pk, (pk, key, cat))
                    self._py_keys.append(pk)
                    n += 1
            if n:
                py.make_automaton()
                self._py_auto = py
            # The same keys as syllable units (one unit per Han character): texts without Latin letters
            # can only hold a homophone, and for them this shorter string is the gate (see moderate()).
            syl_map = _syllable_units()
            self._syl = _syllable_table()
            sy = ahocorasick.Automaton()
            m = 0
            for key, (cat, _action, how) in entries.items():
                if how == "contact cue":
                    continue
                n_han = sum(1 for c in key if ord(c) in table)
                if n_han < self.min_pinyin_chars + (1 if cat == "other" else 0):
                    continue
                pk = key.translate(table)
                if len(pk) >= self.min_pinyin_letters and pk.isascii():
                    sy.add_word(key.translate(syl_map), key)
                    self._syl_keys.append(key)
                    m += 1
            self._syl_auto: ahocorasick.Automaton | None = None
            if m:
                sy.make_automaton()
                self._syl_auto = sy

    # ---------------------------------------------------------------- judging
    def moderate(self, text: str | bytes) -> Verdict:
        """Judge one comment; never raises on odd text (empty, huge, emoji-only, invalid UTF-8)."""
        raw = text if type(text) is str else to_text(text)
        if not raw:
            return PASS
        if self._cached is not None and len(raw) <= _CACHE_MAX_CHARS:
            return self._cached(raw)
        return self._moderate(raw)

    def cache_clear(self) -> None:
        """Forget cached verdicts (benchmarks measure a cold cache; nothing else needs it)."""
        if self._cached is not None:
            self._cached.cache_clear()
        self._cover_cache.clear()

    def _moderate(self, raw: str) -> Verdict:
        # Characters beyond the tables (plane 3+: tag characters, CJK extension G) are dropped; the UTF-16
        # length tells cheaply whether any astral character is there at all.
        if len(raw.encode("utf-16-le", "surrogatepass")) != 2 * len(raw) and max(raw) >= "\U00030000":
            raw = _HIGH_PLANE_RE.sub("", raw)
        enc = raw.translate(self._enc)
        if not enc:
            return PASS
        hits, gate = self._scan(enc)
        return self._judge(raw, enc, hits, gate)

    def _scan(self, enc: str) -> tuple[list[_Hit] | None, bool]:
        """(lexicon/cue hits or None, whether a digit/link gate key occurs) of an encoded skeleton."""
        hits: list[_Hit] | None = None
        gate = False
        if self._auto is not None:
            for end, val in self._auto.iter(enc):
                if val is _GATE:
                    gate = True
                    continue
                if hits is None:
                    hits = []
                e = (end + 1) // 2
                hits.append(_new_hit(_Hit, (e - len(val[0]), e, *val)))
        return hits, gate

    def _judge(
        self,
        raw: str,
        enc: str,
        hits: list[_Hit] | None,
        gate: bool,
        sk: str | None = None,
        idx: list[int] | None = None,
    ) -> Verdict:
        """The verdict from the scan of ``enc`` (``raw`` without characters beyond the tables). ``sk`` (the
        skeleton) and ``idx`` (:func:`_skeleton_index_map` of ``raw``) may come precomputed from a batch."""
        if hits is None:
            # Fast exit for the common clean comment: no homophone/pinyin key, no digits, no link.
            if not (gate and (_DIGIT_PRE.search(raw) or _URL_PRE.search(raw))) and not self._pinyin_gate(
                raw, enc
            ):
                return PASS
        if sk is None:
            sk = raw.translate(_skel_table())
        if hits is not None:
            hits = self._filter(sk, hits, enc)
        best = _best(hits)
        if best is not None and best.action == "block" and best.how != "contact cue":
            return self._verdict(raw, sk, best, idx)
        if self._py_auto is not None:
            py_hit = self._pinyin_hit(sk, raw, idx)
            if py_hit is not None:
                best = _best([h for h in (best, py_hit) if h is not None])
        if self.contacts:
            c_hit = self._contact_hit(raw, sk, hits)
            if c_hit is not None:
                best = _best([h for h in (best, c_hit) if h is not None])
        if best is None:
            return PASS
        return self._verdict(raw, sk, best, idx)

    def _pinyin_gate(self, raw: str, enc: str) -> bool:
        """Could the text hold a lexicon word spelled in pinyin or homophones? Texts with Latin letters (seen
        in the encoded skeleton) are read as toneless pinyin, since the letters may be pinyin; texts without
        are read as syllable units, one per Han character (shorter, so cheaper). A False here is final; a
        True runs :meth:`_pinyin_hit`."""
        if self._py_auto is None:
            return False
        if _ENC_LATIN_RE.search(enc) is None:
            return (
                self._syl_auto is not None
                and next(self._syl_auto.iter(raw.translate(self._syl)), None) is not None
            )
        return next(self._py_auto.iter(raw.translate(self._pyraw)), None) is not None

    def moderate_many(self, texts: Iterable[str | bytes]) -> list[Verdict]:
        """Judge a batch of comments: the same verdicts as :meth:`moderate` one by one, faster on batches.

        Repeated texts are judged once. On a batch of at least ``_BATCH_MIN`` distinct texts, one vectorised
        pass over all of them (:mod:`knowcast.text.moderation_batch`) picks the few that could hold a
        lexicon word, a contact pattern or a homophone/pinyin spelling; only those are judged one by one,
        from the skeletons that pass built (the verdict cache is neither read nor filled), and the others
        pass without any per-comment work."""
        raws = [t if type(t) is str else to_text(t) for t in texts]
        uniq = list(dict.fromkeys(raws))
        if len(uniq) < _BATCH_MIN or self._auto is None:
            judged = {t: self.moderate(t) for t in uniq}
        else:
            if self._batch_gate is None:
                with _GATE_LOCK:  # built once even when API worker threads arrive together
                    if self._batch_gate is None:
                        self._batch_gate = self._build_batch_gate()
            judged = dict.fromkeys(uniq, PASS)
            judged.update(self._judge_batch(uniq, self._batch_gate.scan(uniq)))
        return [judged[t] for t in raws]

    def _build_batch_gate(self) -> BatchGate:
        return BatchGate(
            _skel_table(),
            self._scan_keys,
            self._py_table if self._py_auto is not None else None,
            self._syl_keys if self._syl_auto is not None else (),
            self._py_keys,
        )

    def _judge_batch(self, texts: list[str], scan: BatchScan) -> dict[str, Verdict]:
        """Verdicts of the candidates of a batch scan. Their skeletons (from the scan) are encoded and joined
        with a character that is in no key, the main automaton walks the joined string once, and each
        comment's hits (offsets made local) go to :meth:`_judge`, as :meth:`_moderate` would pass them."""
        out: dict[str, Verdict] = {}
        todo: list[int] = []
        for i in scan.candidates.tolist():
            if scan.fallback[i]:
                out[texts[i]] = self.moderate(texts[i])
            else:
                todo.append(i)
        if not todo:
            return out
        sks = [scan.skeletons[i] for i in todo]
        a = np.frombuffer("\u0400".join(sks).encode("utf-32-le"), np.uint32)
        units = np.empty(2 * len(a), np.uint32)
        units[0::2] = 0x100 + (a >> 8)  # the two-unit encoding of _enc_table; U+0400 is no skeleton char
        units[1::2] = a & 0xFF
        joined = units.tobytes().decode("utf-32-le")
        starts = list(accumulate((2 * len(sk) + 2 for sk in sks[:-1]), initial=0))
        ends = [st + 2 * len(sk) for st, sk in zip(starts, sks, strict=True)]
        hits: list[list[_Hit] | None] = [None] * len(todo)
        gates = [False] * len(todo)
        j = 0
        if self._auto is not None:
            for end, val in self._auto.iter(joined):
                while end >= ends[j]:
                    j += 1
                if val is _GATE:
                    gates[j] = True
                    continue
                e = (end - starts[j] + 1) // 2
                h = _new_hit(_Hit, (e - len(val[0]), e, *val))
                lst = hits[j]
                if lst is None:
                    hits[j] = [h]
                else:
                    lst.append(h)
        for j, i in enumerate(todo):
            if ends[j] > starts[j]:
                idx = scan.index_map(i) if hits[j] is not None else None  # a hit usually becomes a verdict
                enc = joined[starts[j] : ends[j]]
                out[texts[i]] = self._judge(texts[i], enc, hits[j], gates[j], sks[j], idx)
        return out

    def _filter(self, sk: str, hits: list[_Hit], enc: str | None = None) -> list[_Hit]:
        """Drop hits covered by allow words, straddling word boundaries, or ASCII words glued to letters.

        Whether an allow word covers a hit depends only on the skeleton within ``_allow_maxlen`` characters
        of it (no allow word is longer, and only allow words overlapping the hit count), so the answer is
        cached by that window: raid spam repeats one slogan, so most hits of a batch ask an answered
        question. On a miss, the allow words of the stretch around all hits are found once per comment."""
        kept: list[_Hit] = []
        spans: list[tuple[int, int, bool]] | None = None
        span_starts: list[int] = []
        m = self._allow_maxlen
        cache = self._cover_cache
        for h in hits:
            if h.how == "contact cue":
                kept.append(h)
                continue
            if h.word.isascii():
                before = sk[h.start - 1] if h.start > 0 else ""
                after = sk[h.end] if h.end < len(sk) else ""
                if (before.isascii() and before.isalnum()) or (after.isascii() and after.isalnum()):
                    continue
            if h.how == "room block list" or self._allow is None:
                kept.append(h)
                continue
            w0 = max(0, h.start - m + 1)
            key = (sk[w0 : h.end + m - 1], h.start - w0, h.end - w0)
            covered = cache.get(key)
            if covered is None:
                if spans is None:
                    spans = self._allow_spans(sk, hits, enc)
                    span_starts = [a[0] for a in spans]
                lo_i = bisect_left(span_starts, h.start - m)
                hi_i = bisect_left(span_starts, h.end)
                covered = _covered(h, spans[lo_i:hi_i])
                if len(cache) >= _COVER_CACHE_MAX:
                    cache.clear()
                cache[key] = covered
            if not covered:
                kept.append(h)
        return kept

    def _allow_spans(self, sk: str, hits: list[_Hit], enc: str | None) -> list[tuple[int, int, bool]]:
        """(start, end, explicit) of every allow word in the stretch around the hits, sorted by start."""
        # Only allow words overlapping a hit can cover it, and none is longer than _allow_maxlen: scan just
        # the stretch around the hits (two units per character).
        lo = max(0, min(x.start for x in hits) - self._allow_maxlen)
        hi = max(x.end for x in hits) + self._allow_maxlen
        e_text = enc if enc is not None else _encode_key(sk)
        spans = []
        for end, (key, explicit) in self._allow.iter(e_text, 2 * lo, min(len(e_text), 2 * hi)):  # type: ignore[union-attr]
            e = (end + 1) // 2
            spans.append((e - len(key), e, explicit))
        spans.sort()
        return spans

    def _pinyin_hit(self, sk: str, raw: str | None = None, idx: list[int] | None = None) -> _Hit | None:
        py = sk.translate(self._pyraw)  # a skeleton character's own pinyin (list table: faster than a dict)
        found = None
        for end, (pk, key, cat) in self._py_auto.iter(py):  # type: ignore[union-attr]
            found = (end - len(pk) + 1, end + 1, pk, key, cat)
            break
        if found is None:
            return None
        if idx is None:
            idx = _skeleton_index_map(raw) if raw is not None else []
        # map pinyin offsets back to skeleton chars; accept only syllable-aligned matches
        # pinyin offset where each skeleton character starts: accumulated lengths, all in C
        lens = sk.translate(_pinyin_len_table())
        if lens.isascii():
            offs = list(accumulate(lens.encode("ascii"), initial=0))
        else:  # a character beyond the tables (never in a skeleton built by _moderate)
            offs = list(accumulate((len(self._py_table.get(ord(c), c)) for c in sk), initial=0))
        starts = dict(zip(offs[:-1], range(len(sk)), strict=True))
        ends = dict(zip(offs[1:], range(1, len(sk) + 1), strict=True))
        for end, (pk, key, cat) in self._py_auto.iter(py):  # type: ignore[union-attr]
            p0, p1 = end - len(pk) + 1, end + 1
            if p0 in starts and p1 in ends:
                s0, s1 = starts[p0], ends[p1]
                if sk[s0:s1] == key:
                    continue  # the literal word: already judged (allowed or common) by the lexicon pass
                if self._room_allow and any(a in sk for a in self._room_allow if sk[s0:s1] in a):
                    continue
                if _everyday_homophone(sk[s0:s1], key):
                    continue
                if raw is not None and _SENTENCE_PUNCT.search(raw[idx[s0] : idx[s1 - 1] + 1] if idx else ""):
                    continue  # 快乐！万… is two phrases, not one word spelled out
                return _Hit(s0, s1, key, cat, "review", "pinyin")
        return None

    def _contact_hit(self, raw: str, sk: str, hits: list[_Hit] | None) -> _Hit | None:
        cue = None
        if hits:
            for h in hits:
                if h.how == "contact cue":
                    cue = h
                    break
        dk = sk.translate(_CN_DIGITS)
        m = _PHONE_RE.search(dk)
        if m:
            return _Hit(m.start(), m.end(), m.group(0), "ads", "block", "phone number")
        if cue is not None:
            tail = dk[cue.end : cue.end + 24]
            m2 = _ID_AFTER_CUE_RE.match(tail)
            if m2 and (sum(c.isdigit() for c in m2.group(1)) >= 4 or len(m2.group(1)) >= 6):
                return _Hit(cue.start, cue.end + m2.end(), sk[cue.start : cue.end + m2.end()], "ads", "block",
                            "contact id")  # fmt: skip
        if _URL_PRE.search(raw):
            folded = _DOT_WORDS.sub(".", fold(raw))
            mu = _URL_RE.search(folded)
            if mu and self.url_action != "pass":
                return _Hit(-1, -1, mu.group(0), "ads", self.url_action, "url")
        m3 = _DIGITS_RE.search(dk)
        if m3 and len(m3.group(0)) >= 7:
            run = _digit_run(raw)
            if run and len(run) >= 7 and len(set(run)) >= 4:
                return _Hit(-1, -1, run, "ads", "review", "digit run")
        if cue is not None:
            return cue
        return None

    def _verdict(self, raw: str, sk: str, h: _Hit, idx: list[int] | None = None) -> Verdict:
        if h.start < 0:  # URL / digit run: found on the folded text; locate it in the raw text if we can
            i = fold(raw).find(h.word[:8]) if h.how == "url" else -1
            span = (i, min(len(raw), i + len(h.word))) if i >= 0 else None
        else:
            if idx is None:
                idx = _skeleton_index_map(raw, h.end)
            span = (idx[h.start], idx[h.end - 1] + 1) if h.end - 1 < len(idx) else None
        if h.how == "pinyin":
            reason = f"sounds like a {h.category} word ({h.word}): homophone or pinyin"
        elif h.how == "contact cue":
            reason = f"contact cue '{h.word}' (asks viewers to move off-platform)"
        elif h.how in ("phone number", "contact id", "digit run", "url"):
            reason = f"{h.how}: {h.word}"
        elif h.how == "room block list":
            reason = f"room block list: {h.word}"
        else:
            reason = f"{h.category} word: {h.word}"
        return Verdict(h.action, h.category, span, h.word, reason)

    # ---------------------------------------------------------------- introspection
    def is_common(self, word: str) -> bool:
        """True when ``word`` is a lexicon word treated as an everyday word (does not fire alone)."""
        return skeleton(word) in self._common


def _covered(h: _Hit, spans: list[tuple[int, int, bool]]) -> bool:
    """Is the hit covered by one of these allow-word spans: a longer allowed word containing it (共和国 ⊃
    共和), an explicit allow word containing it, or a common word that a two-character hit straddles
    (配不上|你)?"""
    for a0, a1, explicit in spans:
        if a1 <= h.start or a0 >= h.end:
            continue  # no overlap: none of the rules below can apply
        if a0 <= h.start and h.end <= a1 and ((a1 - a0) > (h.end - h.start) or explicit):
            return True
        if (
            (h.end - h.start) == 2
            and not explicit
            and (a0 < h.start < a1 < h.end or h.start < a0 < h.end < a1)
        ):
            return True
    return False


def _everyday_homophone(span: str, key: str, min_freq: int = 100) -> bool:
    """True when the text that sounds like ``key`` holds a common word that ``key`` does not (幸福 in
    幸福源 vs 性福源): a homophone by accident, not an evasion."""
    if len(span) != len(span.encode("utf-8")) // 3 or len(span) != len(key):
        return False  # letters/digits mixed in: an evasion, not ordinary Chinese
    freq = _jieba_freq()
    for n in (2, 3, 4):
        for i in range(len(span) - n + 1):
            w = span[i : i + n]
            if w != key[i : i + n] and freq.get(w, 0) >= min_freq:
                return True
    return False


def _best(hits: list[_Hit] | None) -> _Hit | None:
    if not hits:
        return None
    return max(hits, key=lambda h: (_ACTION_RANK[h.action], h.how != "contact cue", h.end - h.start))


# ======================================================================================================
# Flood control (stateful, per room)
# ======================================================================================================
def flood_key(text: str) -> str:
    """A near-duplicate key: the Han characters of the skeleton (raid bots append random letters or
    punctuation to dodge exact-duplicate filters: "打倒恶俗！...nddmdm"), or the skeleton when it has few Han
    characters."""
    return _flood_features(to_text(text))[0]


def self_repetition(text: str, min_unit: int = 4) -> int:
    """How many times the most repeated phrase (>= ``min_unit`` chars) occurs back to back in one comment."""
    if min_unit == 4:
        return _flood_features(to_text(text))[1]
    return _self_repetition(skeleton(text), min_unit)


@lru_cache(maxsize=8)
def _repeat_unit_re(min_unit: int) -> re.Pattern[str]:
    return re.compile(r"(.{%d,40}?)\1+" % min_unit, re.S)  # noqa: UP031


def _self_repetition(sk: str, min_unit: int) -> int:
    if len(sk) < 2 * min_unit:
        return 1
    m = _repeat_unit_re(min_unit).search(sk)
    if not m:
        return 1
    return len(m.group(0)) // len(m.group(1))


_NON_HAN_RE = re.compile(rf"[^{_HAN}]+")


@lru_cache(maxsize=65536)
def _flood_features(raw: str) -> tuple[str, int]:
    """(near-duplicate key, self-repetition) of one raw comment, cached by the text: both depend on the text
    alone, and a raid repeats the same text hundreds of times."""
    sk = skeleton(raw)
    han = _NON_HAN_RE.sub("", sk)
    key = han[:40] if len(han) >= 4 else sk[:40]
    return key, _self_repetition(sk, 4)


@dataclass
class FloodGuard:
    """Flood control for one room: duplicate text by one user, the same text from many users (a raid), a
    comment that is one phrase pasted many times, and comments per user per window.

    Timestamps are seconds (any origin, non-decreasing per room). State is bounded by the window.
    """

    window_s: float = 30.0
    max_same_user: int = 3
    max_same_text_users: int = 5
    max_rate: int = 10
    max_self_repeat: int = 4

    def __post_init__(self) -> None:
        if self.window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")
        self._events: deque[tuple[float, str, str]] = deque()
        self._by_key: dict[str, Counter[str]] = defaultdict(Counter)
        self._by_user: Counter[str] = Counter()

    def check(self, text: str, user_id: str | None, ts: float) -> Verdict:
        """Record one comment and say whether it floods; ``user_id`` may be None (anonymous)."""
        raw = to_text(text)
        self._expire(ts)
        key, rep = _flood_features(raw) if len(raw) <= _CACHE_MAX_CHARS else _flood_features.__wrapped__(raw)
        user = user_id if user_id is not None else "?"
        verdict = PASS
        if key:
            same_user = self._by_key[key][user] + 1
            users = len(self._by_key[key]) + (0 if user in self._by_key[key] else 1)
            if user_id is not None and same_user > self.max_same_user:
                verdict = Verdict("block", "flood", None, key, f"same text {same_user}× by this user")
            elif users > self.max_same_text_users:
                verdict = Verdict(
                    "review", "flood", None, key, f"same text from {users} users in {self.window_s:g}s"
                )
        if not verdict.flagged and user_id is not None and self._by_user[user] + 1 > self.max_rate:
            n = self._by_user[user] + 1
            verdict = Verdict(
                "review", "flood", None, None, f"{n} comments in {self.window_s:g}s by this user"
            )
        if not verdict.flagged:
            if rep >= self.max_self_repeat:
                verdict = Verdict("review", "flood", None, None, f"one phrase pasted {rep}× in a comment")
        self._events.append((ts, key, user))
        if key:
            self._by_key[key][user] += 1
        self._by_user[user] += 1
        return verdict

    def _expire(self, now: float) -> None:
        cutoff = now - self.window_s
        ev = self._events
        while ev and ev[0][0] < cutoff:
            _, key, user = ev.popleft()
            if key:
                c = self._by_key[key]
                c[user] -= 1
                if c[user] <= 0:
                    del c[user]
                if not c:
                    del self._by_key[key]
            self._by_user[user] -= 1
            if self._by_user[user] <= 0:
                del self._by_user[user]


@lru_cache(maxsize=1)
def default_moderator() -> Moderator:
    """The site-wide moderator over the shared lexicons (built once per process, ~2 s)."""
    return Moderator()


__all__ = [
    "CONTACT_CUES",
    "FloodGuard",
    "Moderator",
    "Verdict",
    "category_codes",
    "default_moderator",
    "flood_key",
    "lexicon_dir",
    "pinyin_table",
    "self_repetition",
    "skeleton",
]

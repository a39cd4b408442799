"""Batch moderation: one vectorised pass tells which comments of a batch could be anything but ``pass``.

Why: judging one comment costs a handful of ``str.translate`` passes and automaton walks (each ~30 ns per
character in C, plus the Python around them), about 10 µs for a 65-character danmaku, although most live
comments are clean. :meth:`knowcast.text.moderation.Moderator.moderate_many` instead turns a whole batch into
one NumPy array of code points (one UTF-32 encode), maps it to skeleton symbols with a per-code-point table
(the same table :func:`~knowcast.text.moderation.skeleton` uses) and runs three n-gram tests over it:

1. **Lexicon.** A comment can hold a key of the main automaton (lexicon word, contact cue, digit/link gate
   key) only if it holds the key's first ``min(len(key), 4)`` skeleton characters. Keys of 1-3 characters
   are tested whole, longer keys by their 4-character prefix.
2. **Homophones** (comments without Latin letters): the moderator's homophone gate matches keys of three or
   more Han characters as syllables; the test looks for the first ``min(len(key), 5)`` syllables.
3. **Pinyin** (comments with Latin letters): the gate reads every Han character as its toneless pinyin and
   matches pinyin keys of eight or more letters anywhere; the test looks for the first 8, 12 or 16 letters.

Membership is tested in two stages of hashed bitmaps: the first window of every position in a 1 MiB byte
map that stays in the CPU cache, then the longer windows, only at the few positions that pass, in an 8 MiB
bitmap (2**26 bits) with few collisions. A collision can only let a clean comment through to the exact
per-comment judgement, never stop a flagged one, so the verdicts are exactly those of
:meth:`~knowcast.text.moderation.Moderator.moderate`. Comments a test flags are judged one by one (from the
skeletons this pass built); comments with a character whose skeleton is longer than one character (½ → 12)
or beyond the tables go through ``moderate`` itself; the rest pass.

Windows of n symbols are combined into one 64-bit value without a Python loop: the two-symbol window is a
strided ``uint64`` view of the ``uint32`` symbol array (the eight-letter window of the ``uint8`` letter
array), and longer windows combine two shorter ones. Values of windows that cross two comments (or a dropped
character that is not in any key) never equal a key's value, except by hash collision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MAX_CP = 0x30000  # the moderator's tables cover code points below this (higher: judged one by one)
SEP_CODE = MAX_CP + 1  # code point slot written between comments
SEP = 0x3FFFF  # skeleton symbol between comments: in no key
MULTI = 0x3FFFE  # skeleton symbol of a character whose skeleton is several characters
SYL_BASE = 0x40000  # syllable symbols follow the code points
BITS = 26
_P = np.uint64(0x100000001B3)  # combines two window values
_M = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
MAIN_SIZES = (1, 2, 3, 4)
SYL_SIZES = (1, 2, 3, 4, 5)
PY_SIZES = (8, 12, 16)
PAD = 32  # padding symbols after the last comment (more than any window)


def _base_view(sym: np.ndarray) -> tuple[np.ndarray, int]:
    """(value of the window of ``b`` symbols at every position, b): a strided uint64 view, no copy (two
    uint32 symbols or eight uint8 letters). ``sym`` ends with padding, so every real position has a window."""
    b = 8 // sym.itemsize
    view = np.ndarray((len(sym) - b + 1,), dtype="<u8", buffer=sym, offset=0, strides=(sym.itemsize,))
    return view, b


def window_values(sym: np.ndarray, n: int, pos: np.ndarray | None = None) -> np.ndarray:
    """Value of the window of ``n`` symbols starting at each position ``pos`` of the padded array ``sym``
    (every position of the base view when ``pos`` is None). Equal windows give equal values."""
    base, b = _base_view(sym)
    at = base if pos is None else base[pos]
    if n == b:
        return at
    if n < b:
        return at & np.uint64((1 << (8 * sym.itemsize * n)) - 1)
    prev = window_values(sym, n - b, pos)
    if pos is None:
        m = len(base) - (n - b)
        return prev[:m] * _P + base[n - b : n - b + m]
    return prev * _P + base[pos + (n - b)]


def _hash(v: np.ndarray, bits: int) -> np.ndarray:
    return (v * _M) >> np.uint64(64 - bits)


class _Bitmap:
    """A set of hashed window values as a bit array (a collision is a false "maybe", never a miss)."""

    def __init__(self, bits: int) -> None:
        self.nbits = bits
        self.bits = np.zeros(1 << (bits - 3), np.uint8)

    def add(self, v: np.ndarray) -> None:
        h = _hash(v, self.nbits)
        bit = np.left_shift(np.uint8(1), (h & np.uint64(7)).astype(np.uint8))
        np.bitwise_or.at(self.bits, (h >> np.uint64(3)).astype(np.intp), bit)

    def contains(self, v: np.ndarray) -> np.ndarray:
        h = _hash(v, self.nbits)
        return (self.bits[h >> np.uint64(3)] >> (h & np.uint64(7)).astype(np.uint8)) & 1


class _ByteMap:
    """The same as :class:`_Bitmap` with one byte per slot: one gather per look-up (stage 1, which looks up
    every position, in a table small enough to stay in the CPU cache)."""

    def __init__(self, bits: int) -> None:
        self.nbits = bits
        self.bytes = np.zeros(1 << bits, bool)

    def add(self, v: np.ndarray) -> None:
        self.bytes[_hash(v, self.nbits)] = True

    def contains(self, v: np.ndarray) -> np.ndarray:
        return self.bytes[_hash(v, self.nbits)]


class NgramSet:
    """Which positions of a symbol array may start a key: a two-stage test.

    Stage 1 looks up the first ``s1`` symbols of every window (``s1``: the shortest key, at most the base
    window) in a small bitmap that stays in the CPU cache; stage 2 looks up, at the few positions that pass,
    the first ``min(len(key), s)`` symbols for each allowed size ``s`` in a large bitmap (few collisions)."""

    def __init__(self, keys: Sequence[np.ndarray], sizes: Sequence[int], dtype: type, first: int) -> None:
        keys = [k.astype(dtype) for k in keys if len(k)]
        b = 8 // np.dtype(dtype).itemsize
        self.pad = max(*sizes, first, b) + b  # callers pad with PAD >= this
        self.s1 = min([first, *(len(k) for k in keys)])
        self.first = _ByteMap(20)
        self.full = _Bitmap(BITS)
        by_size: dict[int, list[np.ndarray]] = {}
        for k in keys:
            n = max((s for s in sizes if s <= len(k)), default=len(k))  # shorter keys are tested whole
            by_size.setdefault(n, []).append(k[:n])
        self.sizes = tuple(sorted(by_size))
        for n, ks in by_size.items():
            # the prefixes end to end (padded): the window at each prefix's start is its value
            starts = np.cumsum([0] + [len(k) for k in ks[:-1]])
            sym = np.concatenate([*ks, np.zeros(self.pad, dtype)])
            self.first.add(window_values(sym, self.s1, starts))
            self.full.add(window_values(sym, n, starts))

    def hit_positions(self, sym: np.ndarray) -> np.ndarray:
        """Positions of ``sym`` (ending with at least ``pad`` padding symbols) where a key may start."""
        if not self.sizes:
            return np.zeros(0, np.intp)
        pos = np.flatnonzero(self.first.contains(window_values(sym, self.s1)))
        pos = pos[pos < len(sym) - self.pad]
        hit = np.zeros(len(pos), bool)
        for n in self.sizes:
            hit |= self.full.contains(window_values(sym, n, pos)).astype(bool)
        return pos[hit]


class BatchGate:
    """The vectorised tests of one moderator (see the module docstring); built on the first batch."""

    def __init__(
        self,
        skel_table: Sequence[str | None],
        scan_keys: Sequence[str],
        pinyin: dict[int, str] | None,
        syl_keys: Sequence[str],
        py_keys: Sequence[str],
    ) -> None:
        sk1 = np.zeros(MAX_CP + 2, np.uint32)
        for cp, t in enumerate(skel_table):
            if t is not None:
                sk1[cp] = ord(t) if len(t) == 1 else MULTI
        sk1[MAX_CP] = MULTI
        sk1[SEP_CODE] = SEP
        self.sk1 = sk1
        self.main = NgramSet([_codes(k) for k in scan_keys], MAIN_SIZES, np.uint32, 2) if scan_keys else None
        self.syl = self.py = None
        if pinyin and syl_keys:
            ids = {s: i for i, s in enumerate(sorted(set(pinyin.values())))}
            sylsym = np.arange(SYL_BASE, dtype=np.uint32)
            for cp, s in pinyin.items():
                if cp < SYL_BASE:
                    sylsym[cp] = SYL_BASE + ids[s]
            self.sylsym = sylsym
            self.syl = NgramSet([sylsym[_codes(k)] for k in syl_keys], SYL_SIZES, np.uint32, 3)
        if pinyin and py_keys:
            code = {c: i + 1 for i, c in enumerate(_LETTERS)}
            flat: list[int] = list(range(64))  # identity symbols first, then every syllable's letters
            start = np.zeros(SYL_BASE, np.int64)
            length = np.ones(SYL_BASE, np.int64)
            for c, i in code.items():
                start[ord(c)] = i
            syl_at: dict[str, int] = {}
            for cp, s in pinyin.items():
                if cp >= SYL_BASE:
                    continue
                if s not in syl_at:
                    syl_at[s] = len(flat)
                    flat.extend(code.get(c, 0) for c in s)
                start[cp], length[cp] = syl_at[s], len(s)
            self.py_start, self.py_len = start, length
            self.py_flat = np.array(flat, np.uint8)
            keys = [np.array([code.get(c, 0) for c in k], np.uint8) for k in py_keys]
            self.py = NgramSet(keys, PY_SIZES, np.uint8, 8) if keys else None

    def scan(self, texts: Sequence[str]) -> BatchScan:
        """Which texts need the exact judgement, and the skeleton of every text (see :class:`BatchScan`)."""
        n = len(texts)
        lens = np.fromiter(map(len, texts), np.int64, n)
        codes = np.frombuffer("\x00".join(texts).encode("utf-32-le", "surrogatepass"), np.uint32)
        codes = np.minimum(codes, MAX_CP)  # beyond the tables: judged one by one (sk1[MAX_CP] = MULTI)
        code_starts = np.concatenate([[0], np.cumsum(lens[:-1] + 1)])
        codes[code_starts[1:] - 1] = SEP_CODE
        sk = self.sk1[codes]
        kept = np.flatnonzero(sk)  # where each skeleton symbol comes from in the joined texts
        skc = np.concatenate([sk[kept], np.full(PAD, SEP, np.uint32)])
        cid = np.cumsum(skc == SEP)  # comment index of every symbol (separators count as the next one)
        fallback = np.zeros(n + PAD + 1, bool)
        fallback[cid[skc == MULTI]] = True
        flagged = fallback.copy()
        if self.main is not None:
            flagged[cid[self.main.hit_positions(skc)]] = True
        if self.syl is not None or self.py is not None:
            latin = np.zeros(n + PAD + 1, bool)
            latin[cid[(skc >= 97) & (skc <= 122)]] = True
            if self.syl is not None:
                c = cid[self.syl.hit_positions(self.sylsym[skc])]
                flagged[c[~latin[c]]] = True
            if self.py is not None:
                keep = latin[cid] & ~flagged[cid]
                sub = skc[keep]
                if len(sub):
                    ln = self.py_len[sub]
                    ends = np.cumsum(ln)
                    idx = np.arange(int(ends[-1])) + np.repeat(self.py_start[sub] - (ends - ln), ln)
                    letters = np.concatenate([self.py_flat[idx], np.zeros(PAD, np.uint8)])
                    lcid = np.repeat(cid[keep], ln)
                    flagged[lcid[self.py.hit_positions(letters)]] = True
        skeletons = skc[:-PAD].tobytes().decode("utf-32-le").split(chr(SEP))
        begin = np.concatenate([[0], np.flatnonzero(skc[:-PAD] == SEP) + 1])
        return BatchScan(np.flatnonzero(flagged[:n]), fallback[:n], skeletons, kept, begin, code_starts)


@dataclass(frozen=True)
class BatchScan:
    """What :meth:`BatchGate.scan` found: ``candidates`` (indices of the texts that may be flagged: every
    other text passes), ``fallback`` (texts with a character whose skeleton is not one character, or
    beyond the tables: judge them from scratch) and ``skeletons`` (each text's skeleton, exact where not
    fallback)."""

    candidates: np.ndarray
    fallback: np.ndarray
    skeletons: list[str]
    kept: np.ndarray
    begin: np.ndarray
    code_starts: np.ndarray
    _lists: list[list[int]] = field(default_factory=list)

    def index_map(self, i: int) -> list[int]:
        """For each skeleton character of text ``i``, the index of the character of the text it came from
        (what ``moderation._skeleton_index_map`` computes; exact where not ``fallback``)."""
        if not self._lists:  # Python lists once per batch: slicing them beats small NumPy calls
            self._lists.extend((self.kept.tolist(), self.begin.tolist(), self.code_starts.tolist()))
        kept, begin, starts = self._lists
        b, s = begin[i], starts[i]
        return [k - s for k in kept[b : b + len(self.skeletons[i])]]


def _codes(s: str) -> np.ndarray:
    return np.frombuffer(s.encode("utf-32-le"), np.uint32)


__all__ = ["BatchGate", "BatchScan", "NgramSet", "window_values"]

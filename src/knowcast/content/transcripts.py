"""Import video transcripts (SubRip .srt and WebVTT .vtt) so they are analysed like captions.

A transcript becomes a list of :class:`Cue` (start, end, text); :func:`transcript_text` joins the cue texts
into one document for keywords, categories, topics and embeddings. Malformed timing lines raise ValueError
naming the line number, so a bad file is rejected rather than half-imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Cue", "parse_srt", "parse_vtt", "parse_transcript", "transcript_text"]

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})"
_TIMING_RE = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_TAG_RE = re.compile(r"<[^>]+>|\{\\[^}]*\}")


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


def _seconds(h: str | None, m: str, s: str, frac: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(frac.ljust(3, "0")) / 1000.0


def _parse(text: str, fmt: str) -> list[Cue]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff").split("\n")
    cues: list[Cue] = []
    i = 0
    if fmt == "vtt":
        if not lines or not lines[0].startswith("WEBVTT"):
            raise ValueError("line 1: a WebVTT file must start with 'WEBVTT'")
        i = 1
    while i < len(lines):
        line = lines[i]
        if "-->" in line:
            m = _TIMING_RE.match(line)
            if not m:
                raise ValueError(f"line {i + 1}: bad cue timing {line.strip()!r}")
            g = m.groups()
            start, end = _seconds(*g[:4]), _seconds(*g[4:])
            if end < start:
                raise ValueError(f"line {i + 1}: cue ends ({end:.3f}s) before it starts ({start:.3f}s)")
            body = []
            i += 1
            while i < len(lines) and lines[i].strip():
                body.append(_TAG_RE.sub("", lines[i]).strip())
                i += 1
            cues.append(Cue(start, end, " ".join(b for b in body if b)))
        else:
            i += 1  # cue numbers, NOTE/STYLE blocks, blank lines
    return cues


def parse_srt(text: str) -> list[Cue]:
    """Cues of a SubRip file (``00:00:01,000 --> 00:00:02,500``)."""
    return _parse(text, "srt")


def parse_vtt(text: str) -> list[Cue]:
    """Cues of a WebVTT file (``WEBVTT`` header, ``00:01.000 --> 00:02.500``)."""
    return _parse(text, "vtt")


def parse_transcript(text: str, fmt: str | None = None) -> list[Cue]:
    """Parse SRT or VTT; ``fmt=None`` detects WebVTT by its header."""
    if fmt is None:
        fmt = "vtt" if text.lstrip("\ufeff").startswith("WEBVTT") else "srt"
    if fmt not in {"srt", "vtt"}:
        raise ValueError(f"fmt must be 'srt' or 'vtt', got {fmt!r}")
    cues = _parse(text, fmt)
    if not cues and text.strip():
        raise ValueError(f"no cue found: is this really a {fmt.upper()} file?")
    return cues


def transcript_text(cues: list[Cue]) -> str:
    """All cue texts in time order, as one document."""
    return " ".join(c.text for c in sorted(cues, key=lambda c: (c.start_s, c.end_s)) if c.text)

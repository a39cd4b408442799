"""Video features from a real media file, decoded with PyAV (FFmpeg bindings).

Why these features: a short-video platform ranks and packages clips by how they look and sound. Duration,
frame rate, resolution and bitrate describe the file; brightness and colourfulness over time, shot cuts and
loudness/silence describe the pace and the quality of the edit (a clip with long silent stretches or a
dark first second loses viewers); a representative keyframe is what a cover picker or a reviewer looks at.

Everything is computed in one decoding pass over the video stream and one over the audio stream. Frames
are downscaled by FFmpeg's scaler before NumPy sees them, so a 720p clip costs about as much as a 160x90 one
after decoding. The keyframe is re-decoded at full resolution by seeking, and written only when the caller
passes a path (this module never chooses where files go).

A file that is not a video, is truncated or cannot be decoded raises :class:`VideoError` naming the file
and what failed; it never crashes the caller with a raw FFmpeg exception.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

__all__ = ["VideoError", "VideoFeatures", "VideoAnalyzer", "analyze_video", "colourfulness"]


class VideoError(ValueError):
    """A media file that cannot be analysed: missing, not a video, truncated or undecodable."""


@dataclass
class VideoFeatures:
    """What :class:`VideoAnalyzer` measured. Series are lists of ``(t_seconds, value)`` pairs."""

    path: str
    duration_s: float
    fps: float
    width: int
    height: int
    bitrate: int | None
    video_codec: str
    n_frames: int
    has_audio: bool
    audio_rate: int | None = None
    audio_channels: int | None = None
    brightness: list[tuple[float, float]] = field(default_factory=list)
    colourfulness: list[tuple[float, float]] = field(default_factory=list)
    shot_cuts: list[float] = field(default_factory=list)
    loudness_db: list[tuple[float, float]] = field(default_factory=list)
    silences: list[tuple[float, float]] = field(default_factory=list)
    keyframe_t: float | None = None
    keyframe_path: str | None = None

    @property
    def n_shots(self) -> int:
        return len(self.shot_cuts) + 1

    @property
    def mean_brightness(self) -> float:
        return float(np.mean([v for _, v in self.brightness])) if self.brightness else float("nan")

    @property
    def mean_colourfulness(self) -> float:
        return float(np.mean([v for _, v in self.colourfulness])) if self.colourfulness else float("nan")

    @property
    def silent_fraction(self) -> float:
        if not self.has_audio or self.duration_s <= 0:
            return float("nan")
        return float(sum(e - s for s, e in self.silences) / self.duration_s)

    def summary(self) -> dict[str, Any]:
        """Scalar features only: what a catalog row, an API answer or a similarity index wants."""
        return {
            "duration_s": round(self.duration_s, 3),
            "fps": round(self.fps, 3),
            "width": self.width,
            "height": self.height,
            "bitrate": self.bitrate,
            "video_codec": self.video_codec,
            "has_audio": self.has_audio,
            "n_shots": self.n_shots,
            "cuts_per_minute": round(60.0 * len(self.shot_cuts) / self.duration_s, 3)
            if self.duration_s
            else 0.0,
            "mean_brightness": round(self.mean_brightness, 3),
            "mean_colourfulness": round(self.mean_colourfulness, 3),
            "mean_loudness_db": round(float(np.mean([v for _, v in self.loudness_db])), 3)
            if self.loudness_db
            else None,
            "silent_fraction": round(self.silent_fraction, 4) if self.has_audio else None,
            "keyframe_t": self.keyframe_t,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        return d


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness of an ``HxWx3`` RGB image (0 = grey; >100 very colourful).

    ``rg = R - G``, ``yb = (R + G)/2 - B``;
    ``C = sqrt(sd(rg)^2 + sd(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2)``.
    """
    x = rgb.astype(np.float32)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))


def _luma(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def _hist(rgb: np.ndarray, bins: int = 8) -> np.ndarray:
    """Joint RGB histogram with ``bins`` levels per channel, normalised to sum 1."""
    q = (rgb.astype(np.uint16) * bins) // 256
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    h = np.bincount(idx.ravel(), minlength=bins**3).astype(np.float64)
    return h / max(h.sum(), 1.0)


class VideoAnalyzer:
    """Extract :class:`VideoFeatures` from a media file.

    Parameters
    ----------
    sample_fps:
        Rate of the brightness/colourfulness series (values are averaged over each 1/sample_fps window).
    analysis_width:
        Width frames are scaled to before analysis (height keeps the aspect ratio).
    cut_threshold:
        A shot cut is declared between two consecutive frames when half the L1 distance of their colour
        histograms (0 = same, 1 = disjoint) exceeds this value.
    min_shot_s:
        Cuts closer than this to the previous cut are ignored (flashes, fast pans).
    loudness_window_s:
        Window of the RMS loudness series.
    silence_db:
        Windows quieter than this (dBFS) count as silent.
    min_silence_s:
        Only silent stretches at least this long are reported.
    allow_partial:
        When True, a file whose stream breaks midway returns what was decoded before the break
        (``n_frames`` tells how much); when False (default) it raises :class:`VideoError`.
    """

    def __init__(
        self,
        sample_fps: float = 2.0,
        analysis_width: int = 160,
        cut_threshold: float = 0.4,
        min_shot_s: float = 0.3,
        loudness_window_s: float = 0.5,
        silence_db: float = -40.0,
        min_silence_s: float = 0.5,
        allow_partial: bool = False,
    ) -> None:
        self.sample_fps = sample_fps
        self.analysis_width = analysis_width
        self.cut_threshold = cut_threshold
        self.min_shot_s = min_shot_s
        self.loudness_window_s = loudness_window_s
        self.silence_db = silence_db
        self.min_silence_s = min_silence_s
        self.allow_partial = allow_partial

    # ------------------------------------------------------------------ public
    def analyze(self, path: str | Path, keyframe_path: str | Path | None = None) -> VideoFeatures:
        """Analyse ``path``; with ``keyframe_path`` (``.png``/``.jpg``), write the keyframe there."""
        if self.sample_fps <= 0:
            raise ValueError(f"sample_fps must be > 0, got {self.sample_fps}")
        path = Path(path)
        if not path.is_file():
            raise VideoError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise VideoError(f"{path}: empty file")
        container = self._open(path)
        try:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream (streams: {[s.type for s in container.streams]})")
            vs = container.streams.video[0]
            fps = float(vs.average_rate or vs.guessed_rate or 0.0)
            width, height = int(vs.codec_context.width), int(vs.codec_context.height)
            if width <= 0 or height <= 0:
                raise VideoError(f"{path}: video stream has no frame size (broken header)")
            codec = vs.codec_context.name
            bitrate = int(container.bit_rate) if container.bit_rate else None
            vid = self._video_pass(container, path)
        finally:
            container.close()
        audio = self._audio_pass(path)
        times = vid["times"]
        duration = self._duration(path, times, fps)
        feats = VideoFeatures(
            path=str(path),
            duration_s=duration,
            fps=fps,
            width=width,
            height=height,
            bitrate=bitrate,
            video_codec=codec,
            n_frames=len(times),
            has_audio=audio is not None,
            audio_rate=audio["rate"] if audio else None,
            audio_channels=audio["channels"] if audio else None,
            brightness=self._bin_series(times, vid["luma"]),
            colourfulness=self._bin_series(times, vid["colour"]),
            shot_cuts=self._cuts(times, vid["hist_dist"]),
            loudness_db=audio["loudness"] if audio else [],
            silences=audio["silences"] if audio else [],
        )
        feats.keyframe_t = self._pick_keyframe(times, vid["hists"], vid["luma"], feats.shot_cuts)
        if keyframe_path is not None and feats.keyframe_t is not None:
            self.save_frame(path, feats.keyframe_t, keyframe_path)
            feats.keyframe_path = str(keyframe_path)
        return feats

    def save_frame(self, path: str | Path, t: float, out_path: str | Path) -> Path:
        """Decode the frame shown at ``t`` seconds at full resolution and write it as PNG or JPEG."""
        out_path = Path(out_path)
        ext = out_path.suffix.lower()
        if ext not in {".png", ".jpg", ".jpeg"}:
            raise ValueError(f"keyframe_path must end in .png, .jpg or .jpeg, got {out_path.name!r}")
        container = self._open(Path(path))
        try:
            vs = container.streams.video[0]
            if vs.time_base is not None and t > 0:
                container.seek(int(t / vs.time_base), stream=vs, backward=True, any_frame=False)
            chosen = None
            for frame in self._frames(container, Path(path)):
                chosen = frame
                if frame.time is not None and frame.time + 1e-6 >= t:
                    break
            if chosen is None:
                raise VideoError(f"{path}: no frame could be decoded at t={t:.3f}s")
            codec_name = "png" if ext == ".png" else "mjpeg"
            cc = av.CodecContext.create(codec_name, "w")
            cc.width, cc.height = chosen.width, chosen.height
            cc.pix_fmt = "rgb24" if codec_name == "png" else "yuvj420p"
            cc.time_base = vs.time_base or 1
            img = chosen.reformat(format=cc.pix_fmt)
            data = b"".join(bytes(p) for p in [*cc.encode(img), *cc.encode(None)])
        finally:
            container.close()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(data)
        return out_path

    # ------------------------------------------------------------------ passes
    def _open(self, path: Path) -> av.container.InputContainer:
        try:
            return av.open(str(path))
        except av.error.FFmpegError as exc:  # InvalidDataError, EOFError, ...
            raise VideoError(f"{path}: not a readable media file ({type(exc).__name__}: {exc})") from exc

    def _frames(self, container: Any, path: Path, stream: str = "video"):
        """Decoded frames; decoding errors become VideoError (or end the stream with allow_partial)."""
        it = container.decode(**{stream: 0})
        n = 0
        while True:
            try:
                frame = next(it)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                if self.allow_partial and n > 0:
                    return
                raise VideoError(
                    f"{path}: {stream} stream broken after {n} frames ({type(exc).__name__}: {exc})"
                ) from exc
            n += 1
            yield frame

    def _video_pass(self, container: Any, path: Path) -> dict[str, Any]:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        w = self.analysis_width
        h = max(2, int(round(w * vs.codec_context.height / max(vs.codec_context.width, 1) / 2)) * 2)
        times: list[float] = []
        luma: list[float] = []
        colour: list[float] = []
        hists: list[np.ndarray] = []
        prev = None
        dist: list[float] = []
        for i, frame in enumerate(self._frames(container, path)):
            rgb = frame.to_ndarray(width=w, height=h, format="rgb24")
            t = float(frame.time) if frame.time is not None else i / float(vs.average_rate or 25)
            times.append(t)
            luma.append(float(_luma(rgb).mean()))
            colour.append(colourfulness(rgb))
            hist = _hist(rgb)
            hists.append(hist)
            dist.append(0.0 if prev is None else 0.5 * float(np.abs(hist - prev).sum()))
            prev = hist
        if not times:
            raise VideoError(f"{path}: the video stream holds no decodable frame (truncated?)")
        order = np.argsort(times, kind="stable")  # B-frames decode in presentation order already; be safe
        return {
            "times": np.asarray(times)[order],
            "luma": np.asarray(luma)[order],
            "colour": np.asarray(colour)[order],
            "hists": np.asarray(hists)[order],
            "hist_dist": np.asarray(dist)[order],
        }

    def _audio_pass(self, path: Path) -> dict[str, Any] | None:
        container = self._open(path)
        try:
            if not container.streams.audio:
                return None
            ast = container.streams.audio[0]
            rate = int(ast.codec_context.sample_rate or ast.rate or 0)
            channels = int(ast.codec_context.channels or 0)
            chunks: list[np.ndarray] = []
            start_t: float | None = None
            for frame in self._frames(container, path, stream="audio"):
                if start_t is None:
                    start_t = float(frame.time or 0.0)
                x = frame.to_ndarray()
                if x.dtype.kind in "iu":  # integer PCM: scale to [-1, 1]
                    x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
                if frame.format.is_planar:
                    mono = x.astype(np.float32).mean(axis=0)
                else:  # packed: shape (1, samples*channels)
                    nch = max(len(frame.layout.channels), 1)
                    mono = x.astype(np.float32).reshape(-1, nch).mean(axis=1)
                chunks.append(mono)
        finally:
            container.close()
        if not chunks or rate <= 0:
            return None
        pcm = np.concatenate(chunks)
        win = max(1, int(round(self.loudness_window_s * rate)))
        n_win = int(math.ceil(len(pcm) / win))
        pad = np.zeros(n_win * win, dtype=np.float32)
        pad[: len(pcm)] = pcm
        blocks = pad.reshape(n_win, win)
        # the last block is partly padding: average over its real samples only
        counts = np.full(n_win, win, dtype=np.float64)
        counts[-1] = len(pcm) - (n_win - 1) * win
        rms = np.sqrt((blocks.astype(np.float64) ** 2).sum(axis=1) / counts)
        db = 20.0 * np.log10(np.maximum(rms, 1e-10))
        t0 = start_t or 0.0
        starts = t0 + np.arange(n_win) * self.loudness_window_s
        loud = [(round(float(t), 3), round(float(v), 2)) for t, v in zip(starts, db, strict=True)]
        silences: list[tuple[float, float]] = []
        quiet = db < self.silence_db
        i = 0
        while i < n_win:
            if quiet[i]:
                j = i
                while j + 1 < n_win and quiet[j + 1]:
                    j += 1
                s = float(starts[i])
                e = float(min(starts[j] + self.loudness_window_s, t0 + len(pcm) / rate))
                if e - s >= self.min_silence_s:
                    silences.append((round(s, 3), round(e, 3)))
                i = j + 1
            else:
                i += 1
        return {"rate": rate, "channels": channels, "loudness": loud, "silences": silences}

    # ------------------------------------------------------------------ helpers
    def _duration(self, path: Path, times: np.ndarray, fps: float) -> float:
        container = self._open(path)
        try:
            if container.duration:
                return float(container.duration) / 1_000_000.0
        finally:
            container.close()
        return float(times[-1] + (1.0 / fps if fps else 0.0))

    def _bin_series(self, times: np.ndarray, values: np.ndarray) -> list[tuple[float, float]]:
        step = 1.0 / self.sample_fps
        bins = np.floor((times - times[0]) / step).astype(np.int64)
        sums = np.bincount(bins, weights=values)
        counts = np.bincount(bins)
        keep = counts > 0
        ts = times[0] + np.arange(len(sums)) * step
        return [
            (round(float(t), 3), round(float(v), 3))
            for t, v in zip(ts[keep], sums[keep] / counts[keep], strict=True)
        ]

    def _cuts(self, times: np.ndarray, dist: np.ndarray) -> list[float]:
        cuts: list[float] = []
        last = float(times[0])
        for t, d in zip(times[1:], dist[1:], strict=True):
            if d > self.cut_threshold and t - last >= self.min_shot_s:
                cuts.append(round(float(t), 3))
                last = float(t)
        return cuts

    def _pick_keyframe(
        self, times: np.ndarray, hists: np.ndarray, luma: np.ndarray, cuts: list[float]
    ) -> float | None:
        """The frame of the longest shot whose colour histogram is closest to that shot's mean.

        Why: the longest shot is what the clip is mostly about, and the medoid-like frame of it avoids
        transition blur and flashes. Near-black or blown-out frames are skipped when others exist.
        """
        if len(times) == 0:
            return None
        bounds = [float(times[0]), *cuts, float(times[-1]) + 1e-9]
        lengths = [bounds[i + 1] - bounds[i] for i in range(len(bounds) - 1)]
        k = int(np.argmax(lengths))
        mask = (times >= bounds[k]) & (times < bounds[k + 1])
        ok = mask & (luma > 16) & (luma < 240)
        if ok.any():
            mask = ok
        idx = np.flatnonzero(mask)
        centre = hists[idx].mean(axis=0)
        best = idx[int(np.argmin(np.abs(hists[idx] - centre).sum(axis=1)))]
        return round(float(times[best]), 3)


def analyze_video(path: str | Path, keyframe_path: str | Path | None = None, **params: Any) -> VideoFeatures:
    """One-call entry point: ``analyze_video("clip.mp4", "cover.png")`` with :class:`VideoAnalyzer` params."""
    return VideoAnalyzer(**params).analyze(path, keyframe_path)

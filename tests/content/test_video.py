"""Video features on the real shared clips; broken files give VideoError."""

from __future__ import annotations

import pytest

from knowcast.content.video import VideoAnalyzer, VideoError, analyze_video, colourfulness

try:
    from knowcast.paths import shared_data

    VIDEO = shared_data("video", "archery.mp4")
except FileNotFoundError:  # pragma: no cover - depends on the checkout
    VIDEO = None

needs_video = pytest.mark.skipif(VIDEO is None, reason="shared/data/video/archery.mp4 not available")


@needs_video
def test_archery_features_and_keyframe(tmp_path):
    out = tmp_path / "kf.png"
    f = analyze_video(VIDEO, out)
    assert f.width == 320 and f.height == 240
    assert f.duration_s == pytest.approx(10.01, abs=0.05)
    assert f.fps == pytest.approx(29.97, abs=0.01)
    assert f.n_frames == 300
    assert f.has_audio and f.audio_rate == 44100 and f.audio_channels == 2
    assert 19 <= len(f.brightness) <= 21  # 2 samples a second
    assert all(0 < v < 255 for _, v in f.brightness)
    assert f.mean_colourfulness > 0
    assert len(f.loudness_db) >= 19 and all(v < 0 for _, v in f.loudness_db)
    assert 0 <= f.keyframe_t <= f.duration_s
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = f.summary()
    assert s["n_shots"] == len(f.shot_cuts) + 1 and s["bitrate"] > 0


@needs_video
def test_truncated_and_garbage_files_raise_clear_error(tmp_path):
    data = VIDEO.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoError, match="cut.mp4"):
        VideoAnalyzer().analyze(cut)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoError, match="junk.mp4"):
        analyze_video(junk)
    with pytest.raises(VideoError, match="no such file"):
        analyze_video(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        analyze_video(empty)


def test_colourfulness_grey_is_zero_and_colour_is_high():
    import numpy as np

    grey = np.full((10, 10, 3), 128, dtype=np.uint8)
    red = np.zeros((10, 10, 3), dtype=np.uint8)
    red[..., 0] = 255
    assert colourfulness(grey) == pytest.approx(0.0)
    assert colourfulness(red) == pytest.approx(0.3 * (255**2 + 127.5**2) ** 0.5)

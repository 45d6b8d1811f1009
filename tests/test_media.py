"""Media decoding on generated inputs: sampling, rotation, VFR, image modes, zips, and every kind of bad input."""

from __future__ import annotations

import io
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import bar_position, frame_pattern, make_video, png_bytes
from core.media import MAX_IMAGE_PIXELS, MediaError, load_image, open_media, sample_indices


def test_sample_indices_cover_whole_range():
    assert sample_indices(300, 32)[0] == 0 and sample_indices(300, 32)[-1] == 299
    assert len(sample_indices(300, 32)) == 32
    assert sample_indices(5, 32) == [0, 1, 2, 3, 4]
    assert sample_indices(0, 4) == []
    assert sample_indices(10, 1) == [0]


def test_video_metadata_and_uniform_sampling(tmp_path):
    p = make_video(tmp_path / "a.mp4", n=60, fps=10)
    m = open_media(p)
    info = m.info
    assert (info.kind, info.width, info.height, info.codec) == ("video", 160, 96, "h264")
    assert info.frame_count == 60 and info.fps == pytest.approx(10)
    assert info.duration_s == pytest.approx(6.0, abs=0.01)
    assert len(info.sha256) == 64
    frames = list(m.frames(8))
    expected = sample_indices(60, 8)
    assert [f.index for f in frames] == expected
    # The decoded pixels are the right frames (bar position encodes the index), not merely the right labels.
    for f in frames:
        assert bar_position(f.image) == bar_position(frame_pattern(f.index))
        assert f.time_s == pytest.approx(f.index / 10, abs=1e-3)


def test_sampling_more_frames_than_video(tmp_path):
    p = make_video(tmp_path / "short.mp4", n=5)
    frames = list(open_media(p).frames(32))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]


def test_rotation_applied(tmp_path):
    p = make_video(tmp_path / "rot.mp4", n=4, size=(64, 32), rotation=90)
    m = open_media(p)
    f = next(m.frames(1))
    assert m.info.rotation == 90
    assert (m.info.width, m.info.height) == (32, 64)
    assert f.image.shape == (64, 32, 3)
    # Rotated 90 degrees counter-clockwise for display: the red top-left marker ends at the bottom-left.
    assert f.image[-5, 5, 0] > 200 and f.image[-5, 5, 1] < 80
    assert f.image[5, 5, 0] < 100


def test_variable_frame_rate_odd_timestamps(tmp_path):
    tb = Fraction(1, 1000)
    pts = [0, 40, 45, 200, 210, 600, 601, 950, 1500, 1510]
    p = make_video(tmp_path / "vfr.mp4", n=len(pts), pts=pts, time_base=tb, bframes=0)
    m = open_media(p)
    assert m.info.frame_count == 10
    frames = list(m.frames(4))
    assert len(frames) == 4
    times = [f.time_s for f in frames]
    assert times == sorted(times) and times[0] == pytest.approx(0.0) and times[-1] == pytest.approx(1.51, abs=0.01)
    for f in frames:
        assert bar_position(f.image) == bar_position(frame_pattern(f.index))


def test_frame_count_mismatch_and_long_gop(tmp_path):
    # MPEG-4 part 2 in AVI: a different container/codec path with no B-frame reordering.
    p = make_video(tmp_path / "a.avi", n=40, codec="mpeg4")
    m = open_media(p)
    assert m.info.frame_count == 40
    assert len(list(m.frames(10))) == 10


def test_truncated_mp4_with_index_first_gives_readable_part(tmp_path):
    p = make_video(tmp_path / "full.mp4", n=120, size=(320, 240), faststart=True)
    data = p.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    m = open_media(cut)
    frames = list(m.frames(16))
    assert 4 <= len(frames) <= 16
    assert m.info.warnings  # the damage is reported
    for f in frames:
        assert bar_position(f.image) == bar_position(frame_pattern(f.index, (320, 240)))


def test_truncated_mp4_without_index_is_a_clear_error(tmp_path):
    p = make_video(tmp_path / "full.mp4", n=60)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(MediaError, match="not a readable video"):
        open_media(cut)


@pytest.mark.parametrize("content,name,match", [
    (b"", "empty.mp4", "empty"),
    (b"hello, this is just text\n" * 10, "text.mp4", "text"),
    (b"<!doctype html><html><body>not an image</body></html>", "page.jpg", "HTML"),
    (b"\x00\x01\x02garbage" * 100, "junk.mp4", "not a readable"),
])
def test_bad_files(tmp_path, content, name, match):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(MediaError, match=match):
        open_media(p)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        open_media(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="folder"):
        open_media(tmp_path)


def test_audio_only_mp4(tmp_path):
    import av

    p = tmp_path / "audio.mp4"
    with av.open(str(p), "w") as out:
        st = out.add_stream("aac", rate=16000)
        st.layout = "mono"
        t = np.arange(16000 * 2) / 16000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for i in range(0, samples.shape[1], 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + 1024]), format="fltp", layout="mono")
            fr.sample_rate = 16000
            for pkt in st.encode(fr):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    with pytest.raises(MediaError, match="no video stream"):
        open_media(p)


# ------------------------------------------------------------------------------------------------ images


def test_image_modes_become_rgb(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    arr16 = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100)
    cases = {
        "rgba.png": Image.fromarray(rgba, "RGBA"),
        "la.png": Image.fromarray(np.zeros((20, 30, 2), np.uint8), "LA"),
        "p.png": Image.fromarray(np.zeros((20, 30, 3), np.uint8)).convert("P"),
        "gray.png": Image.fromarray(np.zeros((20, 30), np.uint8), "L"),
        "i16.png": Image.fromarray(arr16),
        "cmyk.jpg": Image.new("CMYK", (30, 20), (0, 255, 255, 0)),
    }
    for name, im in cases.items():
        p = tmp_path / name
        im.save(p)
        m = open_media(p)
        f = next(m.frames(1))
        assert f.image.shape == (20, 30, 3), name
        assert f.image.dtype == np.uint8, name
        assert m.info.kind == "image"
    # CMYK (0,255,255,0) is red; 16-bit data keeps its gradient.
    cmyk = next(open_media(tmp_path / "cmyk.jpg").frames(1)).image
    assert cmyk[10, 10, 0] > 200 and cmyk[10, 10, 1] < 60
    g = next(open_media(tmp_path / "i16.png").frames(1)).image[..., 0]
    assert g[-1, -1] > g[0, 0] + 100


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:5, :5] = 255
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    p = tmp_path / "exif.jpg"
    im.save(p, exif=exif, quality=95)
    out = load_image(p)
    assert out.shape == (40, 20, 3)
    assert out[:5, -5:].mean() > 200  # the marker moved to the top-right


def test_animated_gif_frames(tmp_path):
    frames = [Image.fromarray(frame_pattern(i * 5, (80, 48))) for i in range(6)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    m = open_media(p)
    assert m.info.frame_count == 6 and m.info.kind == "image"
    got = list(m.frames(32))
    assert len(got) == 6
    assert got[1].time_s == pytest.approx(0.1)
    assert bar_position(got[3].image) == bar_position(frame_pattern(15, (80, 48)))


def test_pixel_limit(tmp_path):
    p = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(p)  # tiny file, 400 MP
    assert 20000 * 20000 > MAX_IMAGE_PIXELS
    with pytest.raises(MediaError, match="limit"):
        open_media(p)


# --------------------------------------------------------------------------------------------------- zips


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_natural_sort_and_non_images_ignored(tmp_path):
    entries = {f"frames/f{i}.png": png_bytes(frame_pattern(i * 7, (64, 40))) for i in (1, 2, 10, 11, 3)}
    entries["frames/readme.txt"] = b"notes"
    entries["__MACOSX/frames/._f1.png"] = b"junk"
    p = tmp_path / "frames.zip"
    p.write_bytes(_zip(entries))
    m = open_media(p)
    assert m.info.kind == "frames" and m.info.frame_count == 5
    got = list(m.frames(32))
    order = [1, 2, 3, 10, 11]
    assert [bar_position(f.image) for f in got] == [bar_position(frame_pattern(i * 7, (64, 40))) for i in order]


def test_zip_with_some_bad_entries_uses_the_rest(tmp_path):
    entries = {f"{i:03d}.png": png_bytes(frame_pattern(i, (64, 40))) for i in range(4)}
    entries["002.png"] = b"not a png"
    p = tmp_path / "mixed.zip"
    p.write_bytes(_zip(entries))
    m = open_media(p)
    got = list(m.frames(32))
    assert [f.index for f in got] == [0, 1, 3]
    assert any("002.png" in w for w in m.info.warnings)


@pytest.mark.parametrize("bad", ["../evil.png", "/abs/evil.png", "a/../../evil.png", "C:/evil.png"])
def test_zip_traversal_rejected(tmp_path, bad):
    p = tmp_path / "evil.zip"
    p.write_bytes(_zip({"ok.png": png_bytes(frame_pattern(0, (32, 32))), bad: png_bytes(frame_pattern(1, (32, 32)))}))
    before = set(tmp_path.parent.rglob("*"))
    with pytest.raises(MediaError, match="absolute or parent path"):
        open_media(p)
    assert set(tmp_path.parent.rglob("*")) == before  # nothing written anywhere


def test_zip_without_images(tmp_path):
    p = tmp_path / "docs.zip"
    p.write_bytes(_zip({"a.txt": b"x", "b.csv": b"1,2"}))
    with pytest.raises(MediaError, match="no image"):
        open_media(p)


def test_zip_bomb_rejected_before_reading(tmp_path):
    """GBs of zeros: refused from the central directory, without decompressing."""
    p = tmp_path / "bomb.zip"
    chunk = b"\0" * (16 << 20)
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k in range(3):
            with zf.open(f"frame{k}.png", "w", force_zip64=True) as f:
                for _ in range(64):  # 1 GiB each
                    f.write(chunk)
    assert p.stat().st_size < 20 << 20
    with pytest.raises(MediaError, match="zip bomb|limit"):
        open_media(p)


def test_pick_input_priority_frames_then_image_then_video():
    from core.media import pick_input

    assert pick_input(video="v.mp4", frames_zip="f.zip", image="i.jpg") == ("f.zip", "frames", ["image", "video"])
    assert pick_input(video=Path("v.mp4"), image="i.jpg")[:2] == ("i.jpg", "image")
    assert pick_input(video="v.mp4")[1:] == ("video", [])
    with pytest.raises(MediaError, match="no input"):
        pick_input()

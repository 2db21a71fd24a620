"""numpynst.image: decoding every pixel mode, refusing bad files, atomic saves, colour preservation.

Test images are built with Pillow in tmp_path, with values chosen so the expected result is known
from first principles (e.g. a 16-bit value 257*k is exactly 8-bit k; red at 20 % opacity over
white is (255, 204, 204)), not from the code's own output.
"""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from PIL import Image

from numpynst import image as nimg
from numpynst.errors import ImageError, OptionError
from numpynst.files import atomic_path, atomic_write, same_file
from numpynst.image import (DEMO_CONTENT, DEMO_STYLE, SAMPLES,
                            load_image, preserve_color, resize_image, resize_to, rgb_to_yiq,
                            sample_path, save_image, yiq_to_rgb)


def _single_line_naming(exc_info, path) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def _asym_rgb(h=6, w=10, seed=0) -> np.ndarray:
    """An image with all-distinct pixels, so any flip or rotation is detectable."""
    rng = np.random.default_rng(seed)
    flat = rng.choice(256 ** 3, size=h * w, replace=False)
    return np.stack([(flat >> 16) & 255, (flat >> 8) & 255, flat & 255], axis=-1) \
        .reshape(h, w, 3).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# pixel modes
# ---------------------------------------------------------------------------------------------

def test_rgb_png_round_trip_is_exact(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(7, 11, 3), dtype=np.uint8)
    path = save_image(tmp_path / "x.png", rgb)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (7, 11, 3)
    np.testing.assert_array_equal(out, rgb)
    out[0, 0] = 0  # the result is the caller's to modify


@pytest.mark.parametrize("ext", [".bmp", ".tif", ".tiff", ".PNG"])
def test_lossless_formats_round_trip_exactly(tmp_path, ext):
    rgb = _asym_rgb(5, 9)
    np.testing.assert_array_equal(load_image(save_image(tmp_path / f"x{ext}", rgb)), rgb)


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp"])
def test_lossy_formats_round_trip_closely(tmp_path, ext):
    # smooth content: lossy codecs keep it within a few levels
    yy, xx = np.mgrid[0:64, 0:64]
    rgb = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1).astype(np.uint8)
    out = load_image(save_image(tmp_path / f"x{ext}", rgb, quality=95))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 3


def test_grey_l_and_bilevel(tmp_path):
    grey = np.arange(0, 256, 5, dtype=np.uint8).reshape(4, 13)
    Image.fromarray(grey).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (4, 13, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)

    bits = np.array([[0, 1, 1], [1, 0, 0]], dtype=bool)
    Image.fromarray(bits).save(tmp_path / "b.png")  # mode "1"
    assert Image.open(tmp_path / "b.png").mode == "1"
    out = load_image(tmp_path / "b.png")
    np.testing.assert_array_equal(out[..., 1], np.where(bits, 255, 0))


def test_16bit_grey_png_scales_to_8bit(tmp_path):
    # 257*k (k = 0..255) is exactly 8-bit k (65535/255 = 257); odd values in between must land
    # between their neighbours (monotone).
    exact = (257 * np.arange(256)).astype(np.uint16)
    between = np.sort(np.random.default_rng(2).integers(0, 65536, size=256)).astype(np.uint16)
    data = np.stack([exact, between])
    Image.fromarray(data).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    out = load_image(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.shape == (2, 256, 3)
    np.testing.assert_array_equal(out[0, :, 0], np.arange(256))
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    assert np.all(np.diff(out[1, :, 0].astype(int)) >= 0)
    # each in-between value is within half a step of v/257
    assert np.all(np.abs(out[1, :, 0] - between / 257.0) <= 0.5 + 1e-9)


def test_16bit_big_endian_tiff(tmp_path):
    values = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=">u2")
    Image.frombytes("I;16B", (2, 2), values.tobytes()).save(tmp_path / "b.tif")
    assert Image.open(tmp_path / "b.tif").mode == "I;16B"
    out = load_image(tmp_path / "b.tif")
    np.testing.assert_array_equal(out[..., 2], [[0, 100], [200, 255]])


def test_32bit_int_image(tmp_path):
    # within 0..65535: 16-bit data
    Image.fromarray(np.array([[0, 257 * 3], [257 * 250, 65535]], dtype=np.int32)).save(
        tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    np.testing.assert_array_equal(load_image(tmp_path / "i.tif")[..., 0], [[0, 3], [250, 255]])
    # outside that range: stretched min..max onto 0..255
    Image.fromarray(np.array([[-1000, 0], [1000, 3000]], dtype=np.int32)).save(tmp_path / "j.tif")
    out = load_image(tmp_path / "j.tif")[..., 0]
    assert out[0, 0] == 0 and out[1, 1] == 255
    assert out[0, 0] < out[0, 1] < out[1, 0] < out[1, 1]
    assert out[1, 0] == round(2000 / 4000 * 255)


def test_float_image(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.2]], dtype=np.float32)).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    np.testing.assert_array_equal(load_image(tmp_path / "f.tif")[..., 0], [[0, 128], [255, 51]])
    grey = np.array([[0.0, 17.0], [255.0, 3.0]], dtype=np.float32)  # already on the 0..255 scale
    Image.fromarray(grey).save(tmp_path / "g.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "g.tif")[..., 1], [[0, 17], [255, 3]])


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((1, 4, 4), dtype=np.uint8)
    rgba[0, :, 0] = 255                      # pure red ...
    rgba[0, :, 3] = [0, 255, 51, 102]        # ... at 0 %, 100 %, 20 %, 40 % opacity
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    # a*c + (1-a)*255: 0.2*0 + 0.8*255 = 204, 0.4*0 + 0.6*255 = 153
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [255, 0, 0], [255, 204, 204],
                                           [255, 153, 153]])


def test_la_composited_on_white(tmp_path):
    la = np.array([[[0, 0], [0, 255], [100, 255], [0, 51]]], dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out[0, :, 0], [255, 0, 100, 204])
    assert np.all(out[..., 0] == out[..., 2])


def test_palette_with_and_without_transparency(tmp_path):
    palette = [10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (256 * 3 - 9)
    idx = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette(palette)
    im.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    colours = np.array(palette[:9]).reshape(3, 3)
    np.testing.assert_array_equal(out, colours[idx])

    im.save(tmp_path / "pt.png", transparency=1)  # palette entry 1 fully transparent
    assert Image.open(tmp_path / "pt.png").mode == "P"
    out = load_image(tmp_path / "pt.png")
    expected = colours[idx].copy()
    expected[idx == 1] = 255
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("ext,tol", [(".tif", 0), (".jpg", 6)])
def test_cmyk_pure_colours(tmp_path, ext, tol):
    # C, M, Y, K, nothing -> cyan, magenta, yellow, black, white
    inks = [(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255), (0, 0, 0, 0)]
    rgbs = [(0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0), (255, 255, 255)]
    im = Image.new("CMYK", (16 * len(inks), 16))
    for k, ink in enumerate(inks):
        im.paste(ink, (16 * k, 0, 16 * (k + 1), 16))
    im.save(tmp_path / f"c{ext}", **({"quality": 95} if ext == ".jpg" else {}))
    assert Image.open(tmp_path / f"c{ext}").mode == "CMYK"
    out = load_image(tmp_path / f"c{ext}")
    for k, rgb in enumerate(rgbs):
        centre = out[8, 16 * k + 8].astype(int)
        assert np.abs(centre - rgb).max() <= tol, (k, centre, rgb)


@pytest.mark.parametrize("orientation,k", [(6, -1), (8, 1), (3, 2), (1, 0)])
def test_exif_orientation(tmp_path, orientation, k):
    # Orientation 6: the stored picture must be turned 90 degrees clockwise to display upright
    # (np.rot90 with k=-1); 8: counter-clockwise; 3: 180 degrees.
    stored = _asym_rgb(4, 7)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "o.png", exif=exif)
    out = load_image(tmp_path / "o.png")
    np.testing.assert_array_equal(out, np.rot90(stored, k=k))


def test_exif_orientation_with_size(tmp_path):
    stored = np.zeros((40, 100, 3), dtype=np.uint8)
    stored[:, :50] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "o.png", exif=exif)
    out = load_image(tmp_path / "o.png", size=50)
    assert out.shape == (50, 20, 3)  # upright: tall
    # rotated clockwise: the stored left half is now the top half
    assert out[:20].min() > 200 and out[30:].max() < 50


# ---------------------------------------------------------------------------------------------
# size and pixel limits
# ---------------------------------------------------------------------------------------------

def test_size_is_longest_side_and_upscales(tmp_path):
    Image.fromarray(_asym_rgb(10, 20)).save(tmp_path / "s.png")
    assert load_image(tmp_path / "s.png", size=40).shape == (20, 40, 3)
    assert load_image(tmp_path / "s.png", size=5).shape == (2, 5, 3)  # 2.5 -> rounds to 2
    Image.fromarray(_asym_rgb(30, 12)).save(tmp_path / "t.png")
    assert load_image(tmp_path / "t.png", size=15).shape == (15, 6, 3)


def test_constant_image_stays_constant_when_resized(tmp_path):
    Image.new("RGB", (37, 23), (12, 200, 99)).save(tmp_path / "c.png")
    out = load_image(tmp_path / "c.png", size=90)
    assert np.all(out == [12, 200, 99])


@pytest.mark.parametrize("bad", [0, -3, 16385, 1.5, "512px", True])
def test_bad_size_is_an_option_error(tmp_path, bad):
    Image.new("RGB", (4, 4)).save(tmp_path / "x.png")
    with pytest.raises(OptionError, match="size"):
        load_image(tmp_path / "x.png", size=bad)


def test_max_pixels_refusal_whatever_the_size(tmp_path):
    # the limit is on the pixels decoded, read from the header: a small --size does not lift it
    # for a format that can only be decoded whole (a small PNG may declare 9000 x 9000)
    Image.fromarray(_asym_rgb(40, 50)).save(tmp_path / "big.png")
    with pytest.raises(ImageError) as err:
        load_image(tmp_path / "big.png", max_pixels=1999)
    msg = _single_line_naming(err, tmp_path / "big.png")
    assert "--size" in msg and "2,000" in msg
    with pytest.raises(ImageError, match="2,000 pixels") as err:
        load_image(tmp_path / "big.png", size=25, max_pixels=1999)
    assert load_image(tmp_path / "big.png", max_pixels=2000).shape == (40, 50, 3)
    assert load_image(tmp_path / "big.png", size=25, max_pixels=2000).shape == (20, 25, 3)
    assert load_image(tmp_path / "big.png", max_pixels=None).shape == (40, 50, 3)


def test_png_declaring_a_huge_picture_is_refused_before_decoding(tmp_path, monkeypatch):
    # A valid 9000 x 9000 grey PNG of zeros compresses to ~80 kB; decoding it would take 81 MB
    # (243 MB as RGB). It must be refused from the header, with and without size, and the
    # decoder must never run.
    import zlib as _zlib
    w = h = 9000
    raw = _zlib.compress(b"".join(b"\x00" + bytes(w) for _ in range(h)), 9)

    def chunk(kind, data):
        import struct as _struct
        return (_struct.pack(">I", len(data)) + kind + data
                + _struct.pack(">I", _zlib.crc32(kind + data) & 0xFFFFFFFF))

    import struct as _struct
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", _struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png)
    assert bomb.stat().st_size < 200_000
    loads = []
    from PIL import ImageFile
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(1))
    for size in (None, 32):
        with pytest.raises(ImageError, match="9000x9000 = 81,000,000 pixels") as err:
            load_image(bomb, size=size)
        _single_line_naming(err, bomb)
    assert loads == []


def test_large_jpeg_with_size_matches_full_decode(tmp_path, monkeypatch):
    # With size, a big JPEG is decoded at reduced DCT scale (draft) and then resized; the result
    # must have the shape of, and look like, a full decode followed by a Lanczos resize, even
    # for detail at the scale of the target's pixels (random 16x16 blocks -> 2x2 at size=100).
    from PIL import JpegImagePlugin
    blocks = np.random.default_rng(7).integers(0, 256, size=(40, 50, 3)).astype(np.uint8)
    big = np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)  # 640 x 800
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    full = resize_image(load_image(tmp_path / "big.jpg"), 100)

    decoded = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        decoded.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    # 512,000 pixels in full, 32,000 at the 1/4 scale draft picks: the limit applies to the latter
    small = load_image(tmp_path / "big.jpg", size=100, max_pixels=40_000)
    assert decoded and decoded[0][0] < 800  # really decoded at reduced scale
    assert small.shape == full.shape == (80, 100, 3)
    assert np.abs(small.astype(int) - full).mean() < 4


def test_decompression_bomb_is_an_image_error(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 px > 2x limit: Pillow refuses
    with pytest.raises(ImageError) as err:
        load_image(tmp_path / "bomb.png", max_pixels=None)
    _single_line_naming(err, tmp_path / "bomb.png")


# ---------------------------------------------------------------------------------------------
# unreadable files
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files(tmp_path, fmt):
    ext = ".jpg" if fmt == "JPEG" else ".png"
    whole = tmp_path / f"whole{ext}"
    noise = np.random.default_rng(3).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(whole, format=fmt)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as err:
        load_image(cut)
    _single_line_naming(err, cut)


@pytest.mark.parametrize("content", [b"hello, I am text\n", b""])
def test_not_an_image(tmp_path, content):
    p = tmp_path / "notes.png"
    p.write_bytes(content)
    with pytest.raises(ImageError) as err:
        load_image(p)
    _single_line_naming(err, p)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(ImageError, match="directory") as err:
        load_image(tmp_path)
    _single_line_naming(err, tmp_path)
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageError, match="no such file") as err:
        load_image(missing)
    _single_line_naming(err, missing)


def test_errors_are_user_errors():
    from numpynst.errors import NumpynstError
    assert issubclass(ImageError, NumpynstError) and issubclass(OptionError, NumpynstError)


# ---------------------------------------------------------------------------------------------
# saving
# ---------------------------------------------------------------------------------------------

def test_save_float_is_rounded_and_clipped(tmp_path):
    arr = np.array([[[-5.0, 300.0, 1.4], [1.6, 254.5, 127.49]]])
    out = load_image(save_image(tmp_path / "f.png", arr))
    np.testing.assert_array_equal(out, [[[0, 255, 1], [2, 254, 127]]])  # rint: 254.5 -> 254


@pytest.mark.parametrize("bad, fragment", [
    (np.full((2, 2, 3), 0.5), "multiply it by 255"),         # 0..1 floats would save black
    (np.full((2, 2, 3), 256, np.int64), "0..255"),          # no silent clipping of integers
    (np.full((2, 2, 3), -1, np.int16), "0..255"),
    (np.ones((2, 2, 3), np.complex64), "complex64"),
    (np.full((2, 2, 3), np.inf), "NaN or infinite"),
])
def test_save_refuses_values_it_would_misread(tmp_path, bad, fragment):
    with pytest.raises(ImageError, match=fragment) as err:
        save_image(tmp_path / "x.png", bad)
    _single_line_naming(err, tmp_path / "x.png")
    assert os.listdir(tmp_path) == []


def test_save_without_overwrite_leaves_an_existing_file(tmp_path):
    target = tmp_path / "keep.png"
    target.write_bytes(b"precious")
    with pytest.raises(ImageError, match="exists") as err:
        save_image(target, np.zeros((2, 2, 3), np.uint8), overwrite=False)
    _single_line_naming(err, target)
    assert target.read_bytes() == b"precious" and os.listdir(tmp_path) == ["keep.png"]
    save_image(target, np.zeros((2, 2, 3), np.uint8))               # the default replaces
    assert load_image(target).shape == (2, 2, 3)


def test_save_grey_array(tmp_path):
    grey = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    out = load_image(save_image(tmp_path / "g.png", grey))
    np.testing.assert_array_equal(out[..., 0], grey)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 4)), np.zeros((4,)), np.zeros((0, 3, 3)),
                                 np.full((2, 2, 3), np.nan), np.zeros((2, 2, 3), dtype=bool)])
def test_save_rejects_bad_arrays(tmp_path, bad):
    with pytest.raises(ImageError) as err:
        save_image(tmp_path / "x.png", bad)
    _single_line_naming(err, tmp_path / "x.png")
    assert os.listdir(tmp_path) == []


def test_save_unknown_extension(tmp_path):
    with pytest.raises(ImageError, match=r"\.xyz") as err:
        save_image(tmp_path / "out.xyz", np.zeros((2, 2, 3), np.uint8))
    _single_line_naming(err, tmp_path / "out.xyz")
    with pytest.raises(ImageError, match="extension"):
        save_image(tmp_path / "out", np.zeros((2, 2, 3), np.uint8))
    assert os.listdir(tmp_path) == []


def test_save_bad_quality(tmp_path):
    for q in (0, 101, 50.5, True):
        with pytest.raises(OptionError, match="quality"):
            save_image(tmp_path / "x.jpg", np.zeros((2, 2, 3), np.uint8), quality=q)


def test_save_into_missing_directory(tmp_path):
    target = tmp_path / "no" / "such" / "out.png"
    with pytest.raises(ImageError, match="does not exist") as err:
        save_image(target, np.zeros((2, 2, 3), np.uint8))
    _single_line_naming(err, target)


def test_failed_save_leaves_existing_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "result.png"
    old = np.full((3, 3, 3), 7, np.uint8)
    save_image(target, old)
    before = target.read_bytes()

    real_save = Image.Image.save

    def half_then_fail(self, fp, format=None, **kw):
        real_save(self, fp, format=format, **kw)  # a complete file in the temporary ...
        fp.truncate(10)                           # ... cut short, then the "encoder" dies
        raise OSError("encoder exploded")

    monkeypatch.setattr(Image.Image, "save", half_then_fail)
    with pytest.raises(ImageError, match="encoder exploded") as err:
        save_image(target, np.zeros((3, 3, 3), np.uint8))
    _single_line_naming(err, target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["result.png"]  # no temporaries left behind


def test_atomic_path_success_interrupt_and_permissions(tmp_path):
    target = tmp_path / "table.csv"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".csv" and tmp != target
        assert not target.exists()  # nothing visible under the final name while writing
        tmp.write_text("a,b\n")
    assert target.read_text() == "a,b\n"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask

    os.chmod(target, 0o640)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert target.read_text() == "a,b\n"
    assert os.listdir(tmp_path) == ["table.csv"]

    atomic_write(target, lambda p: p.write_text("new\n"))
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # replaced file keeps its permissions
    assert os.listdir(tmp_path) == ["table.csv"]


def test_atomic_path_never_writes_through_or_replaces_a_symlink(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    for overwrite in (True, False):
        with pytest.raises(FileExistsError, match="link.txt"):
            atomic_write(link, lambda p: p.write_text("new"), overwrite=overwrite)
        assert link.is_symlink() and real.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["link.txt", "real.txt"]


def test_atomic_path_without_overwrite_never_replaces(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write(target, lambda p: p.write_text("first"), overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write(target, lambda p: p.write_text("second"), overwrite=False)
    assert target.read_text() == "first"
    # a file that appears while the writer runs is not replaced either (the check is at the end)
    late = tmp_path / "late.txt"
    with pytest.raises(FileExistsError, match="appeared"):
        with atomic_path(late, overwrite=False) as tmp:
            tmp.write_text("ours")
            late.write_text("theirs")
    assert late.read_text() == "theirs"
    assert sorted(os.listdir(tmp_path)) == ["late.txt", "out.txt"]


def test_atomic_path_verify_rejects_and_leaves_nothing(tmp_path):
    target = tmp_path / "data.bin"

    def short(p):
        if p.stat().st_size != 10:
            raise ValueError(f"{p.stat().st_size} bytes, expected 10")

    with pytest.raises(OSError, match="did not read back complete .3 bytes, expected 10"):
        atomic_write(target, lambda p: p.write_bytes(b"abc"), verify=short)
    assert os.listdir(tmp_path) == []
    atomic_write(target, lambda p: p.write_bytes(b"0123456789"), verify=short)
    assert target.read_bytes() == b"0123456789"


def test_temporary_names_fit_whatever_the_destination_name(tmp_path):
    from numpynst.files import name_max
    longest = "x" * (name_max(tmp_path) - 4) + ".png"      # the longest name the folder takes
    seen = []
    with atomic_path(tmp_path / longest) as tmp:
        seen.append(tmp.name)
        tmp.write_bytes(b"ok")
    assert (tmp_path / longest).read_bytes() == b"ok"
    assert len(seen[0]) < 40 and seen[0].endswith(".png")


# ---------------------------------------------------------------------------------------------
# resizing
# ---------------------------------------------------------------------------------------------

def test_resize_image_and_resize_to():
    rgb = _asym_rgb(30, 40)
    assert resize_image(rgb, 20).shape == (15, 20, 3)
    assert resize_image(rgb, 80).dtype == np.uint8
    assert resize_to(rgb, (7, 9)).shape == (7, 9, 3)
    same = resize_to(rgb, (30, 40))
    np.testing.assert_array_equal(same, rgb)
    assert same is not rgb
    f = np.full((10, 20, 3), 42.25, dtype=np.float64)
    out = resize_image(f, 7)
    assert out.dtype == np.float64 and out.shape == (4, 7, 3)
    np.testing.assert_allclose(out, 42.25, rtol=1e-6)
    with pytest.raises(OptionError, match="size"):
        resize_image(rgb, 0)


# ---------------------------------------------------------------------------------------------
# colour preservation
# ---------------------------------------------------------------------------------------------

def test_yiq_matrix():
    # luma weights of ITU-R BT.601; greys have no chroma; the inverse is exact
    np.testing.assert_allclose(rgb_to_yiq(np.array([1.0, 0, 0])), [0.299, 0.595716, 0.211456])
    grey = rgb_to_yiq(np.array([[80.0, 80.0, 80.0]]))
    np.testing.assert_allclose(grey, [[80.0, 0.0, 0.0]], atol=1e-3)
    x = np.random.default_rng(4).uniform(0, 255, size=(5, 6, 3))
    np.testing.assert_allclose(yiq_to_rgb(rgb_to_yiq(x)), x, atol=1e-9)


def _yiq_reference(rgb):
    """YIQ computed independently of the module (the published NTSC coefficients)."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return (0.299 * r + 0.587 * g + 0.114 * b,
            0.596 * r - 0.274 * g - 0.322 * b,
            0.211 * r - 0.523 * g + 0.312 * b)


def test_preserve_color_takes_luminance_from_stylized_and_chroma_from_content():
    rng = np.random.default_rng(5)
    # mid-range values keep every recombined colour inside the RGB gamut (no clipping)
    content = rng.integers(96, 160, size=(12, 16, 3)).astype(np.uint8)
    stylized = rng.integers(80, 176, size=(12, 16, 3)).astype(np.uint8)
    out = preserve_color(content, stylized)
    assert out.dtype == np.uint8 and out.shape == stylized.shape
    y_o, i_o, q_o = _yiq_reference(out)
    y_s, _, _ = _yiq_reference(stylized)
    _, i_c, q_c = _yiq_reference(content)
    # rounding each channel to an integer moves Y, I, Q by at most ~0.6 (the textbook
    # coefficients differ from the exact matrix by < 1e-3 per unit, i.e. < 0.3 at 255)
    assert np.abs(y_o - y_s).max() < 0.9
    assert np.abs(i_o - i_c).max() < 1.0
    assert np.abs(q_o - q_c).max() < 1.0


def test_preserve_color_grey_content_gives_grey_output():
    content = np.full((5, 5, 3), 100, np.uint8)
    stylized = _asym_rgb(5, 5)
    out = preserve_color(content, stylized).astype(int)
    assert np.abs(out[..., 0] - out[..., 1]).max() <= 1
    assert np.abs(out[..., 1] - out[..., 2]).max() <= 1
    y_s, _, _ = _yiq_reference(stylized)
    assert np.abs(out[..., 0] - y_s).max() <= 1.0


def test_preserve_color_match_luminance():
    rng = np.random.default_rng(6)
    content = rng.integers(110, 150, size=(20, 20, 3)).astype(np.float64)
    stylized = rng.integers(0, 256, size=(20, 20, 3)).astype(np.float64)  # much more contrast
    out = preserve_color(content, stylized, match_luminance=True)
    assert out.dtype == np.float64
    y_o, _, _ = _yiq_reference(out)
    y_c, _, _ = _yiq_reference(content)
    y_s, _, _ = _yiq_reference(stylized)
    np.testing.assert_allclose(y_o.mean(), y_c.mean(), atol=0.5)
    np.testing.assert_allclose(y_o.std(), y_c.std(), rtol=0.02)
    # an affine map with positive slope keeps the luminance ordering
    assert np.corrcoef(y_o.ravel(), y_s.ravel())[0, 1] > 0.999


def test_preserve_color_resizes_content_and_clips():
    content = np.zeros((10, 20, 3), np.uint8)
    content[..., 0] = 255  # saturated red: chroma far outside the gamut for bright luminance
    stylized = np.full((5, 10, 3), 250, np.uint8)
    out = preserve_color(content, stylized)
    assert out.shape == (5, 10, 3) and out.dtype == np.uint8
    assert out[..., 0].min() == 255  # clipped, reddish, valid
    with pytest.raises(ImageError, match="stylized"):
        preserve_color(content, np.zeros((5, 10), np.uint8))


# ---------------------------------------------------------------------------------------------
# samples and paths
# ---------------------------------------------------------------------------------------------

def test_samples_exist_load_and_are_credited():
    credits = (nimg.SAMPLES_DIR / "CREDITS.md").read_text()
    kinds = {"content": 0, "style": 0}
    total = 0
    for name, meta in SAMPLES.items():
        path = sample_path(name)
        assert path.is_file() and path.name == meta["file"]
        assert meta["file"] in credits and meta["title"] and meta["credit"]
        kinds[meta["kind"]] += 1
        total += path.stat().st_size
        rgb = load_image(path)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert max(rgb.shape[:2]) == 512
        assert rgb.std() > 10  # a real picture, not a blank
    assert kinds["content"] >= 3 and kinds["style"] >= 2
    assert total < 1.5e6
    assert SAMPLES[DEMO_CONTENT]["kind"] == "content" and SAMPLES[DEMO_STYLE]["kind"] == "style"
    assert sample_path("content") == sample_path(DEMO_CONTENT)
    assert sample_path("style") == sample_path(DEMO_STYLE)
    styles = {n for n, m in SAMPLES.items() if m["kind"] == "style"}
    assert set(nimg.sample_names("style")) == styles


def test_unknown_sample_lists_names():
    with pytest.raises(ImageError) as err:
        sample_path("mona_lisa")
    msg = str(err.value)
    assert "mona_lisa" in msg and all(name in msg for name in SAMPLES)


def test_same_file(tmp_path, monkeypatch):
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert same_file(a, "a.png") and same_file("./a.png", a)
    (tmp_path / "sub").mkdir()
    assert same_file(a, "sub/../a.png")
    os.link(a, tmp_path / "hard.png")
    assert same_file(a, tmp_path / "hard.png")
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    assert same_file(tmp_path / "alias" / "new.png", tmp_path / "new.png")  # neither exists
    assert not same_file(a, tmp_path / "b.png")
    (tmp_path / "b.png").write_bytes(b"x")
    assert not same_file(a, tmp_path / "b.png")

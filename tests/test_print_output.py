"""16-bit PNG/TIFF for print: exact round trips, the colour profile, the run's record, bad input.

The 16-bit values are read back by the small decoders below, written from the PNG and TIFF
specifications (all five PNG row filters, the TIFF horizontal predictor), not by the package's own
code; Pillow is the second, independent reader (it decodes 16-bit RGB to the high byte of each
sample, and returns the profile and text). Expected values come from the definition
``v16 = rint(257 v)`` (so 8-bit ``k`` is exactly ``257 k``).
"""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from numpynst import print_output
from numpynst.cli import main
from numpynst.errors import ImageError, OptionError
from numpynst.image import ImageInfo, icc_profile, load_image, save_image, srgb_profile
from numpynst.provenance import bit_depth_for
from numpynst.testing import tiny_vgg, write_tiny_vgg_h5


# --------------------------------------------------------------------------- independent readers
def read_png16(data: bytes) -> tuple[np.ndarray, dict]:
    """(uint16 (H, W, 3), {chunk type: [payloads]}) of a 16-bit RGB PNG; every CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body), kind
        chunks.setdefault(kind, []).append(body)
        pos += 12 + n
    assert list(chunks)[0] == b"IHDR" and list(chunks)[-1] == b"IEND"
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert (depth, colour, interlace) == (16, 2, 0)
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    stride, bpp = w * 6, 6
    assert len(raw) == h * (stride + 1)
    out = np.zeros((h, stride), dtype=np.int64)
    prior = np.zeros(stride, dtype=np.int64)
    for r in range(h):
        ftype, line = raw[r * (stride + 1)], raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)]
        cur = out[r]
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b = prior[i]
            c = prior[i - bpp] if i >= bpp else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            else:
                assert ftype == 4
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (line[i] + pred) % 256
        prior = cur
    v = (out[:, 0::2] << 8) | out[:, 1::2]
    return v.reshape(h, w, 3).astype(np.uint16), chunks


def read_tiff16(data: bytes) -> tuple[np.ndarray, dict]:
    """(uint16 (H, W, 3), {tag: values}) of a little-endian, Deflate + predictor 16-bit RGB TIFF."""
    assert data[:4] == b"II*\x00"
    (ifd,) = struct.unpack("<I", data[4:8])
    (n,) = struct.unpack("<H", data[ifd:ifd + 2])
    sizes, fmt = {2: 1, 3: 2, 4: 4, 5: 8, 7: 1}, {3: "H", 4: "I", 5: "I"}
    tags, previous = {}, -1
    for k in range(n):
        tag, kind, count = struct.unpack("<HHI", data[ifd + 2 + 12 * k:ifd + 10 + 12 * k])
        assert tag > previous          # TIFF requires ascending tags
        previous = tag
        size = sizes[kind] * count
        field = data[ifd + 10 + 12 * k:ifd + 14 + 12 * k]
        raw = field[:size] if size <= 4 else data[struct.unpack("<I", field)[0]:][:size]
        tags[tag] = raw if kind in (2, 7) else struct.unpack(
            f"<{count * (2 if kind == 5 else 1)}{fmt[kind]}", raw)
    w, h = tags[256][0], tags[257][0]
    assert tags[258] == (16, 16, 16) and tags[259] == (8,) and tags[262] == (2,) and tags[317] == (2,)
    rows = []
    for off, cnt in zip(tags[273], tags[279]):
        v = np.frombuffer(zlib.decompress(data[off:off + cnt]), dtype="<u2").reshape(-1, w, 3)
        rows.append(np.cumsum(v.astype(np.int64), axis=1) % 65536)     # undo the predictor
    return np.concatenate(rows).astype(np.uint16)[:h], tags


def expected16(rgb) -> np.ndarray:
    return np.clip(np.rint(np.asarray(rgb, dtype=np.float64) * 257.0), 0, 65535).astype(np.uint16)


def _float_image(h=13, w=17, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 255.0, (h, w, 3)).astype(np.float32)


def _test_profile() -> bytes:
    """An RGB profile that differs from the default sRGB one (its creator field changed)."""
    p = bytearray(srgb_profile())
    p[80:84] = b"TEST"
    return bytes(p)


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff"])
def test_16bit_round_trip_is_exact(tmp_path, ext):
    rgb = _float_image()
    rgb[0, 0], rgb[0, 1], rgb[0, 2] = 0.0, 255.0, 300.0      # the ends, and clipping above 255
    rgb[1, 0] = -4.0                                           # and below 0
    path = save_image(tmp_path / f"x{ext}", rgb, bit_depth=16)
    data = path.read_bytes()
    v, _ = (read_png16 if ext == ".png" else read_tiff16)(data)
    np.testing.assert_array_equal(v, expected16(rgb))
    assert v[0, 1].tolist() == [65535] * 3 and v[0, 2].tolist() == [65535] * 3 and v[1, 0].tolist() == [0] * 3
    with Image.open(path) as im:              # Pillow: the high byte of each sample
        assert im.size == (17, 13)
        np.testing.assert_array_equal(np.asarray(im), expected16(rgb) >> 8)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_uint8_input_is_exactly_257k_and_8bit_readers_get_k_back(tmp_path, ext):
    rgb = np.random.default_rng(3).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    path = save_image(tmp_path / f"x{ext}", rgb, bit_depth=16)
    v, _ = (read_png16 if ext == ".png" else read_tiff16)(path.read_bytes())
    np.testing.assert_array_equal(v, rgb.astype(np.uint16) * 257)
    np.testing.assert_array_equal(load_image(path), rgb)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_keeps_levels_that_8bit_rounds_away(tmp_path, ext):
    ramp = np.linspace(100.0, 101.0, 400)                       # one 8-bit level, 258 16-bit ones
    rgb = np.repeat(np.repeat(ramp[None, :, None], 3, axis=2), 2, axis=0)
    v, _ = (read_png16 if ext == ".png" else read_tiff16)(
        save_image(tmp_path / f"r{ext}", rgb, bit_depth=16).read_bytes())
    assert len(np.unique(v)) == 258 and len(np.unique(np.rint(rgb))) == 2
    assert np.abs(v / 257.0 - rgb).max() <= 0.5 / 257 + 1e-12   # error: half a 16-bit step


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_many_strips_and_chunks_round_trip(tmp_path, ext, monkeypatch):
    """Strip boundaries (PNG's Paeth filter needs the row above across them) and split IDATs."""
    monkeypatch.setattr(print_output, "STRIP_BYTES", 150 * 6 * 3)        # 3 rows per strip of 150 px
    monkeypatch.setattr(print_output, "_IDAT_BYTES", 16)
    rgb = _float_image(40, 150, seed=5)   # random: zlib emits output before the end (several IDATs)
    path = save_image(tmp_path / f"s{ext}", rgb, bit_depth=16)
    v, parts = (read_png16 if ext == ".png" else read_tiff16)(path.read_bytes())
    np.testing.assert_array_equal(v, expected16(rgb))
    if ext == ".png":
        assert len(parts[b"IDAT"]) > 1
    else:
        assert len(parts[273]) == 14 and parts[278] == (3,)


def test_grey_array_is_written_as_rgb(tmp_path):
    grey = np.random.default_rng(2).uniform(0, 255, (5, 6))
    v, _ = read_png16(save_image(tmp_path / "g.png", grey, bit_depth=16).read_bytes())
    np.testing.assert_array_equal(v, expected16(np.repeat(grey[..., None], 3, axis=2)))


# --------------------------------------------------------------------------- colour and metadata
def test_png16_tags_srgb_without_profile_and_embeds_a_given_one(tmp_path):
    rgb = _float_image()
    _, chunks = read_png16(save_image(tmp_path / "a.png", rgb, bit_depth=16).read_bytes())
    assert chunks[b"sRGB"] == [b"\x00"] and b"iCCP" not in chunks
    assert struct.unpack(">I", chunks[b"gAMA"][0]) == (45455,)
    prof = _test_profile()
    path = save_image(tmp_path / "b.png", rgb, bit_depth=16,
                      info=ImageInfo(prof, '{"seed": 1, "content": "caf\\u00e9.jpg"}', "numpynst 9"))
    _, chunks = read_png16(path.read_bytes())
    assert b"sRGB" not in chunks and b"gAMA" not in chunks
    name, rest = chunks[b"iCCP"][0].split(b"\x00", 1)
    assert name == b"ICC profile" and rest[0] == 0 and zlib.decompress(rest[1:]) == prof
    with Image.open(path) as im:
        assert im.info["icc_profile"] == prof
        assert im.info["Software"] == "numpynst 9"
        assert json.loads(im.info["Description"]) == {"seed": 1, "content": "café.jpg"}
    assert icc_profile(path) == prof


def test_png16_text_is_utf8(tmp_path):
    path = save_image(tmp_path / "u.png", _float_image(), bit_depth=16,
                      info=ImageInfo(description="Ölgemälde 油画", software="numpynst"))
    with Image.open(path) as im:
        assert im.info["Description"] == "Ölgemälde 油画"


def test_tiff16_profile_and_tags(tmp_path):
    rgb = _float_image()
    path = save_image(tmp_path / "a.tif", rgb, bit_depth=16, info=ImageInfo(description='{"a": 1}',
                                                                             software="numpynst 9"))
    _, tags = read_tiff16(path.read_bytes())
    assert tags[34675] == srgb_profile()                          # no profile given: sRGB
    assert tags[270] == b'{"a": 1}\x00' and tags[305] == b"numpynst 9\x00"
    assert tags[296] == (1,) and tags[282] == (1, 1)              # no print size claimed
    prof = _test_profile()
    path = save_image(tmp_path / "b.tif", rgb, bit_depth=16, info=ImageInfo(prof, "d", "s"))
    with Image.open(path) as im:
        assert im.info["icc_profile"] == prof
        assert im.tag_v2[270] == "d" and im.tag_v2[305] == "s"
    with pytest.raises(ImageError, match="ASCII"):
        save_image(tmp_path / "c.tif", rgb, bit_depth=16, info=ImageInfo(description="é"))
    assert not (tmp_path / "c.tif").exists()


@pytest.mark.parametrize("ext", [".png", ".tif", ".jpg", ".webp"])
def test_8bit_outputs_carry_the_profile_and_text_where_the_format_can(tmp_path, ext):
    prof = _test_profile()
    path = save_image(tmp_path / f"e{ext}", _float_image(), info=ImageInfo(prof, "how it was made", "numpynst"))
    with Image.open(path) as im:
        assert im.info["icc_profile"] == prof
        text = {".png": im.info.get("Description"), ".jpg": im.info.get("comment", b"").decode(),
                ".tif": getattr(im, "tag_v2", {}).get(270), ".webp": "how it was made"}[ext]
        assert text == "how it was made"


def test_icc_profile_of_a_content_file(tmp_path):
    prof = _test_profile()
    rgb = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "with.jpg", icc_profile=prof)
    Image.fromarray(rgb).save(tmp_path / "without.png")
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.fromarray(rgb).save(tmp_path / "lab.png", icc_profile=lab)
    assert icc_profile(tmp_path / "with.jpg") == prof
    assert icc_profile(tmp_path / "without.png") is None
    assert icc_profile(tmp_path / "lab.png") is None             # not an RGB profile: not ours to keep


def test_exif_orientation_is_applied_once_and_not_written_again(tmp_path):
    """A portrait photo stored sideways (EXIF orientation 6): loaded upright, saved upright, and the
    output carries no orientation tag that a viewer would apply a second time."""
    stored = np.zeros((10, 16, 3), dtype=np.uint8)
    stored[:, :4] = 255                                  # a white band on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6                                     # rotate 90 degrees clockwise to view
    Image.fromarray(stored).save(tmp_path / "photo.png", exif=exif.tobytes())
    upright = load_image(tmp_path / "photo.png")
    assert upright.shape == (16, 10, 3) and upright[:4].min() == 255 and upright[4:].max() == 0
    for ext, depth in ((".png", 16), (".tif", 16), (".jpg", 8), (".png", 8)):
        path = save_image(tmp_path / f"out{depth}{ext}", upright.astype(np.float32), bit_depth=depth,
                          info=ImageInfo(description="d", software="s"))
        with Image.open(path) as im:
            assert im.size == (10, 16)
            assert im.getexif().get(0x0112) is None


# --------------------------------------------------------------------------- safety and bad input
def test_a_file_that_does_not_decode_is_never_put_in_place(tmp_path, monkeypatch):
    def truncated(fh, rgb, icc_profile=None, text=None):
        buf = io.BytesIO()
        real_png(buf, rgb, icc_profile, text)
        fh.write(buf.getvalue()[:-40])                   # the end of the image data is lost
    real_png = print_output.write_png16
    import numpynst.image.save as nimg_save                # the module whose save_image calls it
    monkeypatch.setattr(nimg_save, "write_png16", truncated)
    with pytest.raises(ImageError, match="cannot save image"):
        save_image(tmp_path / "t.png", _float_image(), bit_depth=16)
    assert list(tmp_path.iterdir()) == []


def test_bad_bit_depth_requests(tmp_path):
    rgb = _float_image()
    for ext in (".jpg", ".webp", ".bmp"):
        with pytest.raises(ImageError, match=r"16 bits per channel.*use \.png or \.tif"):
            save_image(tmp_path / f"x{ext}", rgb, bit_depth=16)
    with pytest.raises(OptionError, match="bit_depth must be 8 or 16"):
        save_image(tmp_path / "x.png", rgb, bit_depth=12)
    with pytest.raises(ImageError, match="NaN"):
        save_image(tmp_path / "x.png", np.full((2, 2, 3), np.nan), bit_depth=16)
    with pytest.raises(ImageError, match="0..1 image"):
        save_image(tmp_path / "x.tif", rgb / 255.0 / 2, bit_depth=16)
    (tmp_path / "keep.tif").write_bytes(b"mine")
    with pytest.raises(ImageError):
        save_image(tmp_path / "keep.tif", rgb, bit_depth=16, overwrite=False)
    assert (tmp_path / "keep.tif").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tif"]


def test_bit_depth_rule():
    assert bit_depth_for("a.tif", None) == 16 and bit_depth_for("a.TIFF", None) == 16
    assert bit_depth_for("a.png", None) == 8 and bit_depth_for("a.png", 16) == 16
    assert bit_depth_for("a.tif", 8) == 8 and bit_depth_for("a.jpg", 8) == 8
    with pytest.raises(OptionError, match=r"^--bit-depth 16: --output a\.jpg is \.jpg"):
        bit_depth_for("a.jpg", 16)


# --------------------------------------------------------------------------- the whole way
def test_stylize_result_has_the_float_image_it_rounds():
    from numpynst.transfer import stylize
    rng = np.random.default_rng(0)
    content = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)      # not on the pooling grid:
    style = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)        # the result is resized back
    res = stylize(content, style, iterations=2, model=tiny_vgg(), content_layer="block2_conv2",
                  style_layers={"block1_conv1": 1.0}, tol=None)
    f = res.image_float
    assert f.dtype == np.float32 and f.shape == (20, 28, 3) and 0 <= f.min() and f.max() <= 255
    np.testing.assert_array_equal(res.image, np.rint(f).astype(np.uint8))
    assert np.abs(f - np.rint(f)).max() > 0.1                        # really unrounded


def test_cli_writes_a_16bit_tiff_that_says_how_it_was_made(tmp_path, capsys):
    prof = _test_profile()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
        tmp_path / "photo.jpg", icc_profile=prof, quality=95)
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "art.png")
    weights = write_tiny_vgg_h5(tmp_path / "tiny.h5")
    out = tmp_path / "print.tif"
    code = main(["stylize", str(tmp_path / "photo.jpg"), str(tmp_path / "art.png"), "-o", str(out),
                 "--iterations", "3", "--quiet", "--style-layers", "block1_conv1", "--content-layer",
                 "block2_conv2", "--tol", "0", "--seed", "7", "--weights", str(weights)])
    assert code == 0, capsys.readouterr()
    v, tags = read_tiff16(out.read_bytes())
    assert v.shape == (24, 32, 3)
    assert len(np.unique(v % 257)) > 1                      # not an 8-bit image scaled up
    assert tags[34675] == prof                              # the content's own profile
    assert tags[305] == b"numpynst 0.1.0\x00"
    record = json.loads(tags[270][:-1])
    assert record["content"] == "photo.jpg" and record["styles"] == ["art.png"]
    opts = record["options"]
    assert opts["seed"] == 7 and opts["iterations"] == 3 and opts["optimizer"] == "lbfgs"
    assert opts["weights"] == "tiny.h5" and opts["style_layers"] == {"block1_conv1": 1.0}
    assert record["size"] == "32x24" and record["iterations_run"] == 3
    assert record["J_final"] <= record["J_start"]
    assert str(tmp_path) not in tags[270].decode()          # base names only, no folders


def test_cli_bit_depth_16_for_a_jpeg_is_a_one_line_error(tmp_path, capsys):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "p.png")
    code = main(["stylize", str(tmp_path / "p.png"), str(tmp_path / "p.png"), "-o",
                 str(tmp_path / "o.jpg"), "--bit-depth", "16"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--bit-depth 16" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]

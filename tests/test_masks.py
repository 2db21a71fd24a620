"""Spatial control end to end: masks read and checked (files, arrays), the guided Objective's gradient
against central differences, its reductions (one all-ones mask is the unguided objective), the
options, the CLI's one-line errors (exit 2, nothing written) and the batch manifest's column."""

import json

import numpy as np
import pytest
from PIL import Image

from numpynst.backend import to_host
from numpynst.errors import ImageError, ManifestError, OptionError
from numpynst.gradcheck import check_directional, numerical_gradient_sparse, rel_error
from numpynst.image import load_masks, uncovered
from numpynst.objective import Objective
from numpynst.options import StylizeOptions
from numpynst.testing import write_tiny_vgg_h5
from numpynst.vgg import preprocess

LAYERS = {"block1_conv1": 0.3, "block2_conv1": 0.3, "block3_conv1": 0.4}
FAST = ["--iterations", "3", "--quiet", "--style-layers", "block1_conv1,block2_conv1",
        "--content-layer", "block2_conv2", "--tol", "0"]


def _img(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)


def _halves(h, w, soft=0):
    """Top/bottom masks (R=2), with a linear ramp of ``soft`` rows across the boundary."""
    t = np.clip((np.arange(h) - (h / 2 - soft / 2)) / max(soft, 1e-9), 0, 1) if soft else (np.arange(h) >= h // 2)
    bottom = np.repeat(np.asarray(t, dtype=float)[:, None], w, axis=1)
    return np.stack([1 - bottom, bottom])


# ---------------------------------------------------------------------------- reading masks
def _save_grey(path, arr):
    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)
    return path


def test_files_and_arrays_become_unit_masks_at_the_pictures_size(tmp_path):
    grey = np.zeros((10, 20), np.uint8)
    grey[:, 10:] = 255
    grey[:, 9] = 128
    f = _save_grey(tmp_path / "m.png", grey)
    m = load_masks([f, grey, grey.astype(bool), grey / 255.0], (20, 40))
    assert m.shape == (4, 20, 40) and m.dtype == np.float32
    assert m.min() >= 0 and m.max() <= 1
    np.testing.assert_allclose(m[0], m[1], atol=1e-6)                 # file == uint8 array
    assert m[0][:, 0].max() == 0 and m[0][:, -1].min() == 1           # black -> 0, white -> 1
    assert 0 < uncovered(m[:1]) < 1 and uncovered(np.stack([m[0], 1 - m[0]])) == 0


@pytest.mark.parametrize("make, error, fragments", [
    (lambda d: np.zeros((8, 8)), OptionError, ["mask #1", "all black", "style #1 would apply nowhere"]),
    (lambda d: _save_grey(d / "black.png", np.zeros((8, 8))), ImageError, ["mask #1 (black.png)", "all black"]),
    (lambda d: Image.fromarray(np.dstack([np.full((8, 8), 255, np.uint8), np.zeros((8, 8), np.uint8),
                                          np.zeros((8, 8), np.uint8)])).save(d / "red.png") or d / "red.png",
     ImageError, ["mask #1 (red.png)", "colour picture", "not a greyscale mask"]),
    (lambda d: (d / "text.png").write_text("no image") and d / "text.png", ImageError, ["mask #1 (text.png)"]),
    (lambda d: np.full((8, 8), 2.0), OptionError, ["mask #1", "in [0, 1]"]),
    (lambda d: np.ones((8, 30)), OptionError, ["mask #1 is 30x8 but the picture is 8x8", "aspect ratios differ"]),
    (lambda d: np.ones((2, 8, 8)), OptionError, ["mask #1 must be an (H, W) array"]),
])
def test_bad_masks_are_one_line_errors_naming_the_mask(tmp_path, make, error, fragments):
    with pytest.raises(error) as info:
        load_masks([make(tmp_path)], (8, 8))
    text = str(info.value)
    assert "\n" not in text
    for f in fragments:
        assert f in text, (f, text)


def test_style_masks_load_each_at_its_paintings_size(tmp_path):
    out = load_masks([np.ones((4, 4)), np.ones((6, 3))], [(8, 8), (12, 6)], "style mask")
    assert [m.shape for m in out] == [(8, 8), (12, 6)]
    with pytest.raises(OptionError, match="style mask #2 is all black .* would be taken from nowhere"):
        load_masks([np.ones((4, 4)), np.zeros((6, 3))], [(8, 8), (12, 6)], "style mask")


# ---------------------------------------------------------------------------- the guided objective
def _objective(model, rng, masks, n_styles=2, **kw):
    xp = model.xp
    content = preprocess(_img(rng, 16, 20), dtype=np.float64, xp=xp)
    styles = [preprocess(_img(rng, 20, 24), dtype=np.float64, xp=xp) for _ in range(n_styles)]
    kw.setdefault("style_layers", LAYERS)
    kw.setdefault("content_layer", "block2_conv2")
    return Objective(model, content, styles, masks=masks, **kw), content


@pytest.mark.parametrize("kw", [
    dict(alpha=1.0, beta=1e-2, tv_weight=0.5),
    dict(alpha=0.5, beta=3.0, tv_weight=0.1, weights_mode="calibrated", style_blend=[3, 1]),
    dict(alpha=0.0, beta=1.0, tv_weight=0.0, mask_mode="erode"),
])
def test_guided_objective_gradient_matches_central_differences(model, rng, kw):
    obj, content = _objective(model, rng, _halves(16, 20, soft=6), **kw)
    _check_pixel_gradient(obj, content + model.xp.asarray(rng.normal(0, 10, size=content.shape)))


def _check_pixel_gradient(obj, x):
    """dJ/dx against central differences: along 3 random directions and at 12 random pixels
    (h = 1e-2 on the 0..255 scale, where truncation and round-off both sit near 1e-10)."""
    g = obj.value_and_grad(x)[1]
    f = lambda z: obj.value_and_grad(z)[0]  # noqa: E731
    assert check_directional(f, x, g, n_dirs=3, h=1e-2) < 1e-7
    idx, num = numerical_gradient_sparse(f, x, n=12, h=1e-2, rng=1)
    assert rel_error(to_host(g).reshape(-1)[idx], num) < 1e-7


def test_one_all_ones_mask_is_the_unguided_objective(model, rng):
    xp = model.xp
    content = preprocess(_img(rng, 16, 20), dtype=np.float64, xp=xp)
    style = preprocess(_img(rng, 24, 20), dtype=np.float64, xp=xp)
    x = content + xp.asarray(rng.normal(0, 10, size=content.shape))
    for mode in ("raw", "calibrated"):
        plain = Objective(model, content, style, style_layers=LAYERS, weights_mode=mode)
        guided = Objective(model, content, style, style_layers=LAYERS, weights_mode=mode,
                           masks=np.ones((1, 16, 20)))
        (J0, g0), (J1, g1) = plain.value_and_grad(x), guided.value_and_grad(x)
        assert float(J1) == pytest.approx(float(J0), rel=1e-10)
        assert rel_error(g1, g0) < 1e-10


def test_style_masks_take_the_statistic_from_the_masked_part(model, rng):
    """A style mask covering the left half of a painting made of two copies of a picture side by side
    gives the same target as that picture alone."""
    xp = model.xp
    content = preprocess(_img(rng, 16, 16), dtype=np.float64, xp=xp)
    half = _img(rng, 16, 16)
    other = _img(rng, 16, 16)
    both = preprocess(np.concatenate([half, other], axis=1), dtype=np.float64, xp=xp)
    left = np.zeros((16, 32))
    left[:, :16] = 1.0
    layers = {"block1_conv1": 1.0}       # spacing 1: the mask's cells are pixels, no pooling blur
    a = Objective(model, content, both, style_layers=layers, style_masks=[left], mask_mode="resize")
    b = Objective(model, content, preprocess(half, dtype=np.float64, xp=xp), style_layers=layers,
                  style_masks=[None])
    T_a, T_b = to_host(a.style_targets["block1_conv1"]), to_host(b.style_targets["block1_conv1"])
    # only the columns next to the seam see across it (conv padding vs the neighbour): close, not equal
    assert rel_error(T_a, T_b) < 0.05
    c = Objective(model, content, both, style_layers=layers, style_masks=[None])
    assert rel_error(to_host(c.style_targets["block1_conv1"]), T_b) > 3 * rel_error(T_a, T_b)


def test_a_region_eroded_away_at_a_layer_is_left_out_there(model, rng):
    m = np.zeros((2, 16, 20))
    m[0] = 1.0
    m[1, 6:10] = 1.0      # a 4-px stripe: block1_conv1 sees 3 px (kept), block2_conv1 10 px (gone)
    obj, content = _objective(model, rng, m, mask_mode="erode")
    assert obj.guide.absent == [(1, "block2_conv1"), (1, "block3_conv1")]
    assert obj.statistics["block3_conv1"].weights[1] == 0.0
    J, g = obj.value_and_grad(content)
    assert np.isfinite(float(J)) and np.all(np.isfinite(to_host(g)))


def test_mask_count_must_match_the_styles(model, rng):
    with pytest.raises(OptionError, match="one mask per style image: 2 style image"):
        _objective(model, rng, np.ones((3, 16, 20)))
    with pytest.raises(OptionError, match=r"--masks has 1 mask\(s\) for 2 style image\(s\)"):
        StylizeOptions(masks=["a.png"]).validate(n_styles=2, cli=True)
    with pytest.raises(OptionError, match=r"style_masks has 3 mask\(s\) for 1 style image"):
        StylizeOptions(style_masks=["a.png", "b.png", "c.png"]).validate(n_styles=1)


# ---------------------------------------------------------------------------- front ends
@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    for name, (h, w) in {"photo.png": (24, 32), "art.png": (20, 20), "art2.png": (28, 22)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    top = np.zeros((48, 64), np.uint8)
    top[:24] = 255
    _save_grey(tmp_path / "top.png", top)
    _save_grey(tmp_path / "bottom.png", 255 - top)
    _save_grey(tmp_path / "black.png", np.zeros((48, 64)))
    weights = write_tiny_vgg_h5(tmp_path / "tiny.h5")
    return tmp_path, ["--weights", str(weights)]


def test_stylize_with_masks_and_colour_match_writes_the_picture(files, capsys):
    from numpynst.cli import main
    d, w = files
    out = d / "out.png"
    code = main(["stylize", str(d / "photo.png"), str(d / "art.png"), str(d / "art2.png"), "-o", str(out),
                 "--masks", str(d / "top.png"), str(d / "bottom.png"), "--color", "match", *FAST, *w])
    assert code == 0
    assert np.asarray(Image.open(out)).shape == (24, 32, 3)
    record = json.loads(Image.open(out).info["Description"])
    assert record["options"]["masks"] == ["top.png", "bottom.png"] and record["options"]["color"] == "match"


@pytest.mark.parametrize("extra, fragments", [
    (["--masks", "top.png"], ["--masks has 1 mask(s) for 2 style image(s)"]),
    (["--masks", "top.png", "missing.png"], ["missing.png"]),
    (["--masks", "top.png", "black.png"], ["mask #2 (black.png) is all black", "style #2 would apply nowhere"]),
    (["--masks", "top.png", "art.png"], ["mask #2 (art.png): a colour picture"]),
    (["--masks", "top.png", "bottom.png", "--color", "sepia"], ["--color"]),
    (["--masks", "top.png", "bottom.png", "--preserve-color", "--color", "match"], ["contradict"]),
    (["--masks", "top.png", "bottom.png", "--style-loss", "swd"], ["--masks cannot be used with --style-loss swd"]),
])
def test_cli_mask_errors_are_one_line_exit_2_and_write_nothing(files, capsys, extra, fragments):
    from numpynst.cli import main
    d, w = files
    out = d / "out.png"
    extra = [str(d / e) if e.endswith(".png") else e for e in extra]
    try:
        code = main(["stylize", str(d / "photo.png"), str(d / "art.png"), str(d / "art2.png"), "-o", str(out),
                     *extra, *FAST, *w])
    except SystemExit as exc:                 # argparse's own refusal of a bad choice
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    for f in fragments:
        assert f in line, (f, line)
    assert not out.exists()


def test_manifest_masks_column_resolves_files_and_counts(files):
    from numpynst import batch
    d, _ = files
    manifest = d / "jobs.csv"
    manifest.write_text("content,style,masks,weights\nphoto.png,art.png;art2.png,top.png;bottom.png,tiny.h5\n")
    job, = batch.read_manifest(manifest)
    assert job.options["masks"] == [str(d / "top.png"), str(d / "bottom.png")]
    other = d / "other.csv"
    other.write_text("content,style,masks,weights\nphoto.png,art.png;art2.png,bottom.png;top.png,tiny.h5\n")
    assert batch.read_manifest(other)[0].digest != job.digest          # the masks are part of the identity
    manifest.write_text("content,style,masks\nphoto.png,art.png;art2.png,top.png\n")
    with pytest.raises(ManifestError, match=r"row 1 .*column 'masks': .*1 mask\(s\) for 2 style image\(s\)"):
        batch.read_manifest(manifest)
    manifest.write_text("content,style,masks\nphoto.png,art.png,nothere.png\n")
    with pytest.raises(ManifestError, match=r"column 'masks': .*nothere.png"):
        batch.read_manifest(manifest)


def test_a_region_no_style_layer_sees_is_refused_before_the_run(files):
    """Eroded by block2_conv1's receptive field (10 px), a 4-px stripe reaches no style layer: the
    run is refused naming the mask; resized, the same stripe is fine."""
    from numpynst.transfer import prepare
    from numpynst.testing import tiny_vgg
    d, _ = files
    stripe = np.zeros((24, 32))
    stripe[10:14] = 1.0
    model = tiny_vgg(dtype=np.float64)
    kw = dict(model=model, style_layers={"block2_conv1": 1.0}, content_layer="block2_conv2")
    with pytest.raises(OptionError, match=r"mask #2: its white part is narrower than the receptive field"):
        prepare(d / "photo.png", [d / "art.png", d / "art2.png"], masks=[1 - stripe, stripe], mask_mode="erode", **kw)
    p = prepare(d / "photo.png", [d / "art.png", d / "art2.png"], masks=[1 - stripe, stripe], mask_mode="resize", **kw)
    assert p.masks.shape == (2, 24, 32)


def test_uncovered_part_is_noted_on_the_command_line(files, capsys):
    from numpynst.cli import main
    d, w = files
    code = main(["stylize", str(d / "photo.png"), str(d / "art.png"), "-o", str(d / "o.png"),
                 "--masks", str(d / "top.png"), *FAST, *w])
    assert code == 0
    bare = uncovered(load_masks([d / "top.png"], (24, 32)))     # the row at the edge is grey, not black
    assert 0.4 < bare < 0.5
    assert f"note: the masks leave {bare:.1%} of the picture black" in capsys.readouterr().out


# ---------------------------------------------------------------------------- every style loss, exact tiles
def _soft_regions(rng, hw, R=2):
    """Soft masks with a ragged boundary (not aligned to any tile or pooling cell), summing to 1."""
    H, W = hw
    yy, xx = np.mgrid[0:H, 0:W]
    edge = H * 0.45 + 6 * np.sin(xx / 5.0)
    first = np.clip((edge - yy) / 4.0 + 0.5, 0, 1)
    return np.stack([first, 1 - first]) if R == 2 else first[None]


@pytest.mark.parametrize("style_loss", ["gram"])
def test_masked_objective_with_style_masks_matches_central_differences(rng, style_loss):
    """(mean-cov's matrix square roots leave float64 round-off near 1e-6 in these pixel-level
    differences, masked or not: its masked gradient is checked per statistic, test_guided.py.)"""
    from numpynst.testing import tiny_vgg
    model = tiny_vgg(dtype=np.float64)
    c = preprocess(_img(rng, 16, 20), dtype=np.float64)
    styles = [preprocess(_img(rng, 18, 22), dtype=np.float64) for _ in range(2)]
    sm = [None, np.ones((18, 22)) * (np.arange(22) < 14)]
    obj = Objective(model, c, styles, masks=_soft_regions(rng, (16, 20)), style_masks=sm, style_loss=style_loss,
                    style_layers=LAYERS, content_layer="block2_conv2", weights_mode="calibrated", style_blend=[1, 2])
    _check_pixel_gradient(obj, c + rng.normal(0, 10, size=c.shape))


def test_one_all_ones_mask_is_the_unguided_mean_cov(rng):
    from numpynst.testing import tiny_vgg
    model = tiny_vgg(dtype=np.float64)
    c = preprocess(_img(rng, 16, 20), dtype=np.float64)
    s = preprocess(_img(rng, 24, 20), dtype=np.float64)
    x = c + rng.normal(0, 10, size=c.shape)
    kw = dict(style_layers=LAYERS, style_loss="mean-cov", weights_mode="calibrated")
    J0, g0 = Objective(model, c, s, **kw).value_and_grad(x)
    J1, g1 = Objective(model, c, s, masks=np.ones((1, 16, 20)), **kw).value_and_grad(x)
    assert float(J1) == pytest.approx(float(J0), rel=1e-10) and rel_error(g1, g0) < 1e-10


def test_swd_with_masks_is_refused_in_one_line(rng):
    from numpynst.testing import tiny_vgg
    model = tiny_vgg(dtype=np.float64)
    c = preprocess(_img(rng, 32, 32), dtype=np.float64)
    with pytest.raises(OptionError, match="style_loss swd .* does not take masks"):
        Objective(model, c, [c, c], masks=np.ones((2, 32, 32)) / 2, style_loss="swd",
                  style_layers={"block1_conv1": 1.0})


@pytest.mark.parametrize("style_loss", ["gram", "mean-cov"])
@pytest.mark.parametrize("mask_mode", ["resize", "erode"])
@pytest.mark.parametrize("weights_mode", ["raw", "calibrated"])
def test_tiled_equals_whole_with_masks(rng, style_loss, mask_mode, weights_mode):
    """The masks' pieces are sums over positions: over tiles (each tile reads its interior's part of
    the whole image's per-layer masks, ``where``; the style images' tiles theirs) J, dJ/dx and the
    parts equal the whole image's, float64, to 1e-10."""
    from numpynst.testing import tiny_vgg
    from numpynst.tiled import TiledObjective
    model = tiny_vgg(dtype=np.float64)
    hw, shw = (53, 70), (41, 59)
    c, x = (rng.normal(0, 60, (1, *hw, 3)) for _ in range(2))
    styles = [rng.normal(0, 60, (1, *shw, 3)) for _ in range(2)]
    sm = [np.ones(shw) * (np.arange(shw[1]) < 40), None]
    kw = dict(content_layer="block3_conv2", style_layers={"block1_conv1": 0.3, "block2_conv2": 0.3, "block3_conv1": 0.4},
              weights_mode=weights_mode, beta=1e-2 if weights_mode == "raw" else 1.0, style_loss=style_loss,
              masks=_soft_regions(rng, hw), style_masks=sm, mask_mode=mask_mode)
    J0, g0, p0 = Objective(model, c, styles, **kw).evaluate(x)
    obj = TiledObjective(model, c, styles, tile=16, **kw)
    J1, g1, p1 = obj.evaluate(x)
    assert len(obj.tiles) > 6
    assert rel_error(J0, J1) <= 1e-10 and rel_error(g0, g1) <= 1e-10
    for k in p0:
        assert rel_error(p0[k], p1[k]) <= 1e-10, k


def test_a_grey_mask_saved_as_rgb_jpeg_is_grey(tmp_path):
    """JPEG keeps a grey picture's chroma at zero: R, G, B come back within the tolerance."""
    ramp = np.tile(np.linspace(0, 255, 64), (48, 1)).astype(np.uint8)
    Image.fromarray(np.dstack([ramp] * 3)).save(tmp_path / "m.jpg", quality=75)
    rgb = np.asarray(Image.open(tmp_path / "m.jpg")).astype(int)
    assert (rgb.max(axis=2) - rgb.min(axis=2)).max() <= 2
    m = load_masks([tmp_path / "m.jpg"], (48, 64))[0]
    assert np.abs(m - ramp / 255.0).max() < 0.05

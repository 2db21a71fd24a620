"""Exact tiles (numpynst.tiled): tiled value_and_grad equals the whole-image one.

float64: relative error <= 1e-10 for several tile sizes, odd image sizes, max and avg pooling,
several content/style layer sets, raw and calibrated weights; float32 within 1e-5; one case on the
shipped VGG19 with block5_conv1. The halo is derived from the receptive-field recursion: the
smallest halo on the pooling grid is exact, one grid step less is not.
"""

import weakref

import numpy as np
import pytest

from numpynst import tiled
from numpynst.errors import OptionError
from numpynst.gradcheck import rel_error
from numpynst.testing import tiny_vgg
from numpynst.tiled import (LocalTileRunner, Tile, TiledObjective, add_crop, crop, halo_for, receptive,
                            sum_pieces, tile_gradient, tile_grid, tile_statistics, tile_tv)
from numpynst.losses import content_cost, gram_matrix, total_variation
from numpynst.transfer import Objective, stylize
from numpynst.vgg import VGG

LAYER_SETS = [
    ("block2_conv2", {"block1_conv1": 0.5, "block2_conv1": 0.5}),
    ("block3_conv2", {"block1_conv1": 0.3, "block2_conv2": 0.5, "block4_conv1": 0.2}),
    ("block4_conv2", {"block1_conv2": 0.5, "block5_conv1": 0.5}),
    ("block5_conv1", {"block3_conv3": 1.0}),
]


def _images(rng, hw, style_hw, dtype=np.float64):
    return tuple(rng.normal(0, 60, (1, *s, 3)).astype(dtype) for s in (hw, style_hw, hw))


def _compare(model, hw, style_hw, tile, rng, tol, **kw):
    c, s, x = _images(rng, hw, style_hw, model.dtype)
    J0, g0, p0 = Objective(model, c, s, **kw).evaluate(x)
    obj = TiledObjective(model, c, s, tile=tile, **kw)
    J1, g1, p1 = obj.evaluate(x)
    assert len(obj.tiles) > 1
    assert rel_error(J0, J1) <= tol
    assert rel_error(g0, g1) <= tol
    for k in p0:
        assert rel_error(p0[k], p1[k]) <= tol, k
    return obj


@pytest.mark.parametrize("pooling", ["max", "avg"])
@pytest.mark.parametrize("layers", LAYER_SETS, ids=[c for c, _ in LAYER_SETS])
@pytest.mark.parametrize("hw,tile", [((53, 70), 32), ((67, 45), (32, 64)), ((97, 81), 64)])
@pytest.mark.parametrize("mode", ["raw", "calibrated"])
def test_tiled_equals_whole_float64(pooling, layers, hw, tile, mode, rng):
    model = tiny_vgg(pooling=pooling)
    content_layer, style_layers = layers
    _compare(model, hw, (41, 59), tile, rng, 1e-10, content_layer=content_layer,
             style_layers=style_layers, weights_mode=mode, beta=1e-2 if mode == "raw" else 1.0)


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_tiled_equals_whole_float32(pooling, rng):
    model = tiny_vgg(pooling=pooling, dtype=np.float32)
    _compare(model, (75, 61), (64, 64), 32, rng, 1e-5, content_layer="block3_conv2",
             style_layers={"block1_conv1": 0.5, "block4_conv1": 0.5})


def test_tiled_equals_whole_vgg19_block5(rng):
    """The shipped VGG19, float64, the deepest default layer (halo 80 on a 16 px grid)."""
    model = VGG.from_h5(dtype=np.float64)
    obj = _compare(model, (130, 115), (96, 96), 80, rng, 1e-10, content_layer="block4_conv2",
                   style_layers={"block1_conv1": 0.5, "block5_conv1": 0.5})
    assert obj.halo == 80 and obj.factor == 16


def test_receptive_recursion_vgg19():
    """a = sum over convs of the spacing 2^k: 2*1 + 2*2 + 4*4 + 4*8 + 16 = 70 at block5_conv1."""
    model = VGG.from_h5()
    table = receptive(model.layer_names, "block5_conv1")
    assert table["block1_conv2"] == (2, 1)
    assert table["block2_conv1"] == (4, 2)           # block1: 2 convs at spacing 1, then one at 2
    assert table["block5_conv1"] == (70, 16)
    assert halo_for(model, ["block5_conv1", "block1_conv1"]) == 80
    assert halo_for(model, ["block2_conv2"]) == 6


@pytest.mark.parametrize("layer", ["block1_conv2", "block2_conv1", "block3_conv1"])
def test_reach_is_the_gradient_support(layer, rng):
    """The gradient of one unit reaches exactly ``reach`` pixels beyond its cell (avg pooling: no
    holes): the recursion's number is the true dependency, not a bound."""
    model = tiny_vgg(pooling="avg")
    reach, j = receptive(model.layer_names, layer)[layer]
    side = 2 * reach + 8 * j
    x = rng.normal(0, 60, (1, side, side, 3))
    a = model.forward(x, [layer])[layer]
    p = a.shape[1] // 2
    seed = np.zeros_like(a)
    seed[0, p, p, :] = 1.0
    g = np.abs(model.backward({layer: seed})[0]).sum(axis=-1)
    rows = np.nonzero(g.max(axis=1) > 1e-12 * g.max())[0]
    assert rows.min() == p * j - reach and rows.max() == p * j + j - 1 + reach


@pytest.mark.parametrize("content_layer,style_layers", [
    ("block1_conv2", {"block1_conv1": 1.0}),                 # reach 2, grid 1: halo 2
    ("block2_conv2", {"block2_conv1": 1.0}),                 # reach 6, grid 2: halo 6
    ("block3_conv1", {"block1_conv1": 1.0}),                 # reach 10, grid 4: halo 12
])
def test_smallest_halo_is_exact_and_one_step_less_is_not(content_layer, style_layers, rng):
    model = tiny_vgg(pooling="avg")
    names = [content_layer, *style_layers]
    halo, factor = halo_for(model, names), model.pool_factor(names)
    c, s, x = _images(rng, (48, 40), (40, 40))
    kw = dict(content_layer=content_layer, style_layers=style_layers, tile=16)
    ref = Objective(model, c, s, content_layer=content_layer, style_layers=style_layers).value_and_grad(x)
    exact = TiledObjective(model, c, s, halo=halo, **kw).value_and_grad(x)
    short = TiledObjective(model, c, s, halo=halo - factor, **kw).value_and_grad(x)
    assert rel_error(ref[1], exact[1]) < 1e-10
    assert rel_error(ref[1], short[1]) > 1e-6


def test_tile_grid_partitions_every_layer():
    """Interiors cover each position of each layer exactly once (odd sizes, last tiles smaller)."""
    model = tiny_vgg()
    names = ["block4_conv1"]
    H, W = 93, 58
    tiles = tile_grid((H, W), (24, 16), halo_for(model, names), model.pool_factor(names))
    for name, (_, j) in receptive(model.layer_names, "block4_conv1").items():
        count = np.zeros((H // j, W // j), dtype=int)
        for t in tiles:
            rows, cols = t.interior(j)
            ch, cw = (t.cy1 - t.cy0) // j, (t.cx1 - t.cx0) // j
            assert rows.stop <= ch and cols.stop <= cw
            count[rows.start + t.cy0 // j:rows.stop + t.cy0 // j,
                  cols.start + t.cx0 // j:cols.stop + t.cx0 // j] += 1
        assert (count == 1).all(), name


def test_tile_grid_refuses_off_grid():
    with pytest.raises(OptionError, match="pooling grid 8"):
        tile_grid((64, 64), (20, 16), 8, 8)


def test_per_tile_statistics_sum_to_whole_grams(rng):
    """Pass 1 as a worker would run it: the interior Gram pieces add up to the whole image's."""
    model = tiny_vgg()
    x = rng.normal(0, 60, (1, 45, 77, 3))
    layers = ["block1_conv1", "block3_conv2"]
    whole = model.forward(x, layers, keep_cache=False)
    tiles = tile_grid((45, 77), (16, 32), halo_for(model, layers), model.pool_factor(layers))
    pieces = [tile_statistics(model, crop(x, t), t, layers)[0] for t in tiles]
    total = sum_pieces(pieces)
    for n in layers:
        assert rel_error(gram_matrix(whole[n]), total[n][0]) < 1e-12


def test_tile_tv_sums_to_total_variation(rng):
    x = rng.normal(0, 60, (1, 21, 30, 3))
    J, g = total_variation(x)
    Jt, gt = 0.0, np.zeros_like(x)
    for t in tile_grid((21, 30), (8, 16), 0, 1):
        j, piece, box = tile_tv(x, t)
        Jt += j
        add_crop(gt, piece, box)
    assert rel_error(J, Jt) < 1e-13 and rel_error(g, gt) < 1e-13


def test_tile_gradient_single_tile_is_whole_backward(rng):
    """One tile covering the image: pass 2 is the plain seeded backward (content term only)."""
    model = tiny_vgg()
    x, c = rng.normal(0, 60, (2, 1, 24, 24, 3))
    a_c = model.forward(c, ["block2_conv2"], keep_cache=False)["block2_conv2"]
    t = Tile(0, 24, 0, 24, 0, 24, 0, 24)
    g, j = tile_gradient(model, x, t, {}, "block2_conv2", a_c, 1.0, a_c.size)
    J0, da = content_cost(a_c, model.forward(x, ["block2_conv2"])["block2_conv2"])
    g0 = model.backward({"block2_conv2": da})
    assert rel_error(J0, j) < 1e-12 and rel_error(g0, g) < 1e-12


def test_tiled_evaluate_frees_each_tiles_activations_before_its_backward(monkeypatch, rng):
    """Memory at print size: no activations dict outlives its tile's seeds, so the backward
    (release=True) frees each layer's output as it passes it. Checked on the deepest style layer's
    output, which only the dict and the tape hold: when each backward of pass 2 returns (the last
    tile's, whose pass-1 activations are handed over, included) it must be gone. Holding the dict
    costs a crop's activations at every tile (about 0.2 GiB at 4096 px)."""
    model = tiny_vgg()
    c, s, x = _images(rng, (53, 70), (41, 59))
    obj = TiledObjective(model, c, s, tile=32, content_layer="block2_conv2",
                         style_layers={"block1_conv1": 0.5, "block3_conv1": 0.5})
    refs, alive = [], []
    forward, backward = model.forward_tape, model.backward_tape

    def watch_forward(x, names, keep=True):
        acts, tape = forward(x, names, keep=keep)
        if keep:
            refs.append(weakref.ref(acts["block3_conv1"]))
        return acts, tape

    def watch_backward(grads, tape, release=False):
        dx = backward(grads, tape, release=release)
        alive.append(refs[-1]() is not None)
        return dx

    monkeypatch.setattr(model, "forward_tape", watch_forward)
    monkeypatch.setattr(model, "backward_tape", watch_backward)
    J, g, _ = obj.evaluate(x)
    assert len(alive) == len(obj.tiles) > 1 and not any(alive)
    monkeypatch.undo()
    J0, g0, _ = obj.evaluate(x)                   # and the result is what it was
    assert float(J) == float(J0) and np.array_equal(g, g0)


def test_the_runner_runs_the_passes_and_moving_keeps_the_targets(rng):
    """A runner is handed the passes: a counting one gives the default's numbers bit for bit, and
    with_runner moves an objective (its targets built once) without touching the original."""
    model = tiny_vgg()
    c, s, x = _images(rng, (53, 70), (41, 59))
    kw = dict(tile=32, content_layer="block2_conv2", style_layers={"block1_conv1": 0.5, "block3_conv1": 0.5},
              weights_mode="calibrated")
    calls = []

    class Counting(LocalTileRunner):
        def statistics(self, objective, x):
            calls.append("pass 1")
            return super().statistics(objective, x)

        def gradients(self, objective, x, M, last):
            calls.append("pass 2")
            return super().gradients(objective, x, M, last)

    default = TiledObjective(model, c, s, **kw)
    counted = TiledObjective(model, c, s, runner=Counting(), **kw)
    J0, g0, p0 = default.evaluate(x)
    J1, g1, p1 = counted.evaluate(x)
    assert calls == ["pass 1", "pass 2"]
    assert float(J0) == float(J1) and np.array_equal(g0, g1) and p0 == p1
    moved = default.with_runner(Counting())
    assert moved is not default and moved.runner is not default.runner
    assert moved.style_targets is default.style_targets and moved.scales is default.scales
    J2, g2, _ = moved.evaluate(x)
    assert float(J2) == float(J0) and np.array_equal(g2, g0) and calls[2:] == ["pass 1", "pass 2"]
    assert isinstance(default.runner, LocalTileRunner) and default.content_target is None


def test_stylize_tiled_matches_whole(rng):
    """stylize with forced tiles follows the same path as whole (float64 tiny VGG)."""
    model = tiny_vgg()
    c = rng.integers(0, 256, (61, 75, 3), dtype=np.uint8)
    s = rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)
    kw = dict(iterations=4, model=model, tol=None, content_layer="block2_conv2",
              style_layers={"block1_conv1": 0.5, "block3_conv1": 0.5})
    a = stylize(c, s, **kw)
    b = stylize(c, s, tile=16, **kw)
    assert np.allclose(a.history["J"], b.history["J"], rtol=1e-8, atol=0)
    assert np.abs(a.image.astype(int) - b.image).max() <= 1


def test_stylize_refuses_bad_tile():
    model = tiny_vgg()
    img = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(OptionError, match=r"--tile 10: must be a multiple of 4 .* smallest valid value is 12"):
        stylize(img, img, model=model, iterations=1, tile=10, content_layer="block3_conv1",
                style_layers={"block1_conv1": 1.0})
    with pytest.raises(OptionError, match=r"--tile 8: .*at least the halo 12"):
        stylize(img, img, model=model, iterations=1, tile=8, content_layer="block3_conv1",
                style_layers={"block1_conv1": 1.0})


def test_ctrl_c_in_a_tiled_run_keeps_the_best_image(monkeypatch, rng):
    """KeyboardInterrupt inside pass 2 (the third evaluation): the loop stops, the best image is kept."""
    model = tiny_vgg()
    c = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    calls = {"n": 0}
    real = tiled.tile_gradient

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3 * 4:          # 4 tiles per evaluation: the 3rd evaluation's last tile
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tiled, "tile_gradient", interrupted)
    res = stylize(c, c[::-1].copy(), model=model, iterations=10, tol=None, tile=24,
                  content_layer="block2_conv2", style_layers={"block1_conv1": 1.0})
    assert res.stopped == "interrupted"
    assert res.iterations == 1 and len(res.history["J"]) == 2
    assert res.image.shape == c.shape and res.image.dtype == np.uint8
    assert min(res.history["J"]) == res.J_final


# ---------------------------------------------------------------------------- other style statistics
@pytest.mark.parametrize("layers", LAYER_SETS[:3], ids=[c for c, _ in LAYER_SETS[:3]])
@pytest.mark.parametrize("mode", ["raw", "calibrated"])
def test_mean_cov_tiled_equals_whole_float64(layers, mode, rng):
    """mean-cov's pieces (sum a_p, sum a_p a_p^T) are sums over positions: tiles are exact, to the
    Gram's tolerance; the style image (another size) is measured over its own tiles too."""
    content_layer, style_layers = layers
    _compare(tiny_vgg(), (53, 70), (41, 59), 32, rng, 1e-10, content_layer=content_layer,
             style_layers=style_layers, weights_mode=mode, style_loss="mean-cov",
             beta=1e-2 if mode == "raw" else 1.0)


def test_mean_cov_tiled_equals_whole_float32(rng):
    _compare(tiny_vgg(dtype=np.float32), (75, 61), (64, 64), 32, rng, 1e-5, content_layer="block3_conv2",
             style_layers={"block1_conv1": 0.5, "block4_conv1": 0.5}, style_loss="mean-cov")


def test_mean_cov_tiled_with_a_blend_of_two_styles(rng):
    c, s, x = _images(rng, (45, 52), (40, 33))
    s2 = rng.normal(10, 40, (1, 50, 48, 3))
    kw = dict(content_layer="block2_conv2", style_layers={"block1_conv1": 0.5, "block3_conv1": 0.5},
              style_loss="mean-cov", style_blend=[0.3, 0.7], weights_mode="calibrated")
    J0, g0 = Objective(tiny_vgg(), c, [s, s2], **kw).value_and_grad(x)
    J1, g1 = TiledObjective(tiny_vgg(), c, [s, s2], tile=16, **kw).value_and_grad(x)
    assert rel_error(J0, J1) < 1e-10 and rel_error(g0, g1) < 1e-10


def test_swd_over_tiles_is_refused_before_any_work(monkeypatch, rng):
    """swd sorts every position at once: refused up front, naming both ways out, no forward run."""
    model = tiny_vgg()
    c, s, _ = _images(rng, (64, 64), (64, 64))
    monkeypatch.setattr(model, "forward_tape", lambda *a, **k: pytest.fail("a forward ran"))
    with pytest.raises(OptionError, match=r"^style_loss swd \(--style-loss\) cannot run over exact tiles .*"
                                          r"choose --style-loss mean-cov or gram, or a whole image"):
        TiledObjective(model, c, s, tile=32, style_loss="swd", style_layers={"block1_conv1": 1.0})

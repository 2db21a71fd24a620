"""The style-transfer objective and loop: pixel gradients vs central differences (float64, tiny VGG),
target construction, stopping rules, interruption and NaN handling, reproducibility."""

import re

import numpy as np
import pytest

from numpynst.backend import backend_name, to_host
from numpynst.errors import NumpynstError, OptionError
from numpynst.gradcheck import check_directional, numerical_gradient_sparse, rel_error
from numpynst.losses import content_cost, gram_matrix, style_layer_cost, total_variation
from numpynst.testing import tiny_vgg
from numpynst.transfer import WEIGHT_RANGES, Objective, balance, calibration, stylize
from numpynst.vgg import preprocess

LAYERS = {"block1_conv1": 0.3, "block2_conv1": 0.3, "block3_conv1": 0.4}


def _img(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)


@pytest.fixture
def model(xp):
    return tiny_vgg(dtype=np.float64, backend="numpy" if xp.__name__ == "numpy" else "cupy")


def _objective(model, rng, style_shapes=((20, 20),), **kw):
    xp = model.xp
    content = preprocess(_img(rng, 16, 20), dtype=np.float64, xp=xp)
    styles = [preprocess(_img(rng, h, w), dtype=np.float64, xp=xp) for h, w in style_shapes]
    kw.setdefault("style_layers", LAYERS)
    kw.setdefault("content_layer", "block2_conv2")
    return Objective(model, content, styles if len(styles) > 1 else styles[0], **kw), content


@pytest.mark.parametrize("kw", [
    dict(alpha=1.0, beta=1e-3, tv_weight=0.5),
    dict(alpha=0.0, beta=1.0, tv_weight=0.0),                     # style only
    dict(alpha=2.0, beta=1e-2, tv_weight=0.0, content_layer="block1_conv1"),   # content layer == a style layer
    dict(alpha=1.0, beta=3.0, tv_weight=0.1, weights_mode="calibrated"),
])
def test_value_and_grad_matches_central_differences(model, rng, kw):
    obj, content = _objective(model, rng, **kw)
    xp = model.xp
    x = content + xp.asarray(rng.normal(0, 10, size=content.shape))
    J, g = obj.value_and_grad(x)
    f = lambda z: obj.value_and_grad(z)[0]  # noqa: E731
    # Pixels are on a 0..255 scale and J ~ 1e4..1e5, so round-off (eps |J| / h) dominates below
    # h ~ 1e-3; h = 1e-2 (1e-4 relative to the pixels) puts both error terms near 1e-10.
    assert check_directional(f, x, g, n_dirs=3, h=1e-2) < 1e-7
    idx, num = numerical_gradient_sparse(f, x, n=12, h=1e-2, rng=1)
    assert rel_error(to_host(g).reshape(-1)[idx], num) < 1e-7


def test_objective_parts_add_up(model, rng):
    obj, content = _objective(model, rng, alpha=1.5, beta=2e-3, tv_weight=0.25)
    x = content + model.xp.asarray(rng.normal(0, 5, size=content.shape))
    J, _, parts = obj.evaluate(x)
    parts = {k: float(to_host(v)) for k, v in parts.items()}
    assert float(to_host(J)) == pytest.approx(1.5 * parts["content"] + 2e-3 * parts["style"] + 0.25 * parts["tv"],
                                              rel=1e-12)
    # at the content image itself the content cost is exactly zero
    assert float(to_host(obj.evaluate(content).parts["content"])) == 0.0


def test_style_blend_of_identical_images_equals_single_style(model, rng):
    xp = model.xp
    content = preprocess(_img(rng, 16, 16), dtype=np.float64, xp=xp)
    style = preprocess(_img(rng, 16, 16), dtype=np.float64, xp=xp)
    one = Objective(model, content, style, style_layers=LAYERS)
    two = Objective(model, content, [style, style], style_layers=LAYERS, style_blend=[3.0, 1.0])
    for name in LAYERS:
        assert rel_error(one.style_targets[name], two.style_targets[name]) < 1e-14


def test_style_target_is_rescaled_to_the_generated_image_size(model, rng):
    """A style image of 4x the pixels must give a target on the generated image's pixel scale:
    for a style image made of 2x2 copies of a tile, the rescaled Gram is close to the tile's own
    (only the tile borders differ, through zero padding)."""
    xp = model.xp
    tile = _img(rng, 16, 16)
    big = np.tile(tile, (2, 2, 1))
    content = preprocess(_img(rng, 16, 16), dtype=np.float64, xp=xp)
    small = Objective(model, content, preprocess(tile, dtype=np.float64, xp=xp), style_layers={"block1_conv1": 1})
    large = Objective(model, content, preprocess(big, dtype=np.float64, xp=xp), style_layers={"block1_conv1": 1})
    assert rel_error(small.style_targets["block1_conv1"], large.style_targets["block1_conv1"]) < 0.1
    raw = gram_matrix(model.forward(preprocess(big, dtype=np.float64, xp=xp), ["block1_conv1"])["block1_conv1"])
    assert rel_error(raw, large.style_targets["block1_conv1"] * 4) < 1e-12


def test_objective_rejects_bad_options(model, rng):
    with pytest.raises(OptionError, match="unknown layer.*block9_conv1"):
        _objective(model, rng, content_layer="block9_conv1")
    with pytest.raises(OptionError, match=r"beta \(--style-weight\) must be a finite number >= 0, got -1.0"):
        _objective(model, rng, beta=-1.0)
    with pytest.raises(OptionError, match="style_blend has 1 weight.*2 style"):
        _objective(model, rng, style_shapes=((16, 16), (16, 16)), style_blend=[1.0])


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam", "gd"])
def test_stylize_decreases_J(model, rng, optimizer):
    lr = {"lbfgs": None, "adam": 2.0, "gd": 1e-3}[optimizer]
    res = stylize(_img(rng, 24, 20), _img(rng, 20, 20), model=model, iterations=15, optimizer=optimizer, lr=lr,
                  style_layers=LAYERS, content_layer="block2_conv2", beta=1e-2, tol=None)
    assert res.image.shape == (24, 20, 3) and res.image.dtype == np.uint8
    assert res.iterations == 15 and res.stopped == "iterations"
    assert all(len(v) == 16 for v in res.history.values())
    J = np.asarray(res.history["J"])
    if optimizer == "gd":     # small fixed steps: slow on this ill-conditioned problem, but monotone
        assert np.all(np.diff(J) < 0)
    else:
        assert res.J_final < 0.9 * J[0]


def test_stylize_is_reproducible_and_seed_matters(model, rng):
    c, s = _img(rng, 16, 16), _img(rng, 16, 16)
    run = lambda seed: stylize(c, s, model=model, iterations=5, init="noise", seed=seed,  # noqa: E731
                               style_layers=LAYERS, tol=None)
    a, b, other = run(7), run(7), run(8)
    assert np.array_equal(a.image, b.image) and a.history == b.history
    assert not np.array_equal(a.image, other.image)


def test_tolerance_stops_early(model, rng):
    res = stylize(_img(rng, 16, 16), _img(rng, 16, 16), model=model, iterations=400, style_layers=LAYERS,
                  tol=0.5)
    assert res.stopped == "tolerance" and res.iterations < 400


def test_callback_can_stop_and_interrupt_keeps_best_image(model, rng):
    seen = []

    def cb(p):
        seen.append(p.iteration)
        if p.iteration == 4:
            raise KeyboardInterrupt
    # log_every=1: the callback at every step (CuPy's default is every 10th, see the next test)
    res = stylize(_img(rng, 16, 16), _img(rng, 16, 16), model=model, iterations=50, style_layers=LAYERS,
                  callback=cb, tol=None, log_every=1)
    assert res.stopped == "interrupted" and seen == [1, 2, 3, 4]
    assert res.image.shape == (16, 16, 3)
    assert len(res.history["J"]) == 5
    res2 = stylize(_img(rng, 16, 16), _img(rng, 16, 16), model=model, iterations=50, style_layers=LAYERS,
                   callback=lambda p: p.iteration < 3, tol=None, log_every=1)
    assert res2.stopped == "callback" and res2.iterations == 3


def test_callback_runs_at_the_backends_logging_points(model, rng):
    """Without log_every, the callback comes every step on NumPy and every 10th on CuPy (host syncs)."""
    seen = []
    res = stylize(_img(rng, 16, 16), _img(rng, 16, 16), model=model, iterations=25, style_layers=LAYERS,
                  callback=lambda p: seen.append(p.iteration), tol=None)
    every = 1 if backend_name(model.xp) == "numpy" else 10
    assert res.stopped == "iterations" and seen == sorted({*range(every, 26, every), 25})


def test_non_finite_loss_stops_and_keeps_last_finite_image(model, rng, monkeypatch):
    calls = {"n": 0}
    original = Objective.evaluate

    def poisoned(self, x):
        e = original(self, x)
        calls["n"] += 1
        if calls["n"] > 4:
            return e._replace(J=e.J * self.xp.nan)
        return e
    monkeypatch.setattr(Objective, "evaluate", poisoned)
    # Adam accepts every step (L-BFGS's line search would reject the NaN trial point instead)
    res = stylize(_img(rng, 16, 16), _img(rng, 16, 16), model=model, iterations=30, style_layers=LAYERS, tol=None,
                  optimizer="adam")
    assert res.stopped == "non-finite loss"
    assert np.isnan(res.history["J"][-1]) and np.isfinite(res.J_final)
    assert res.image.dtype == np.uint8


def test_scales_run_coarse_to_fine_and_preserve_color(model, rng):
    sizes = []
    res = stylize(_img(rng, 32, 48), _img(rng, 24, 24), model=model, iterations=3, scales=[0.5, 1.0],
                  style_layers=LAYERS, tol=None, preserve_color=True,
                  callback=lambda p: sizes.append((p.scale, tuple(p.x.shape))))
    assert res.image.shape == (32, 48, 3) and res.iterations == 6
    assert sizes[0] == (0.5, (1, 16, 24, 3)) and sizes[-1] == (1.0, (1, 32, 48, 3))
    with pytest.raises(OptionError, match="scales must be increasing"):
        stylize(_img(rng, 16, 16), _img(rng, 16, 16), model=model, scales=[1.0, 0.5])


def test_stylize_rejects_bad_arguments(model, rng):
    c = _img(rng, 16, 16)
    with pytest.raises(OptionError, match="optimizer must be one of gd, adam, lbfgs, got 'sgd'"):
        stylize(c, c, model=model, optimizer="sgd")
    with pytest.raises(OptionError, match="iterations must be an integer"):
        stylize(c, c, model=model, iterations=-3)
    with pytest.raises(OptionError, match="size must be an integer"):
        stylize(c, c, model=model, size=0)
    with pytest.raises(NumpynstError):
        stylize(c, [], model=model)


def test_works_at_a_multiple_of_the_pooling_factor_and_returns_the_requested_size(model, rng):
    """block3_conv1 sits behind 2 pools: the loop runs at sides that are multiples of 4 (so floor-mode
    pooling drops no edge pixels), and the result comes back at the content's own size."""
    shapes = []
    res = stylize(_img(rng, 30, 45), _img(rng, 24, 24), model=model, iterations=2, style_layers=LAYERS,
                  content_layer="block2_conv2", tol=None, callback=lambda p: shapes.append(tuple(p.x.shape)))
    assert shapes[0] == (1, 32, 44, 3)
    assert res.image.shape == (30, 45, 3)


# ---------------------------------------------------------------------------------------------
# Calibrated weights

def test_calibration_scales_are_each_terms_value_at_a_blank_image(model, rng):
    obj, content = _objective(model, rng, weights_mode="calibrated")
    sc = obj.scales
    a_c = obj.content_target
    assert sc.content == pytest.approx(float(content_cost(a_c, 0 * a_c)[0]), rel=1e-12)
    acts = model.forward(content, list(LAYERS))
    for n in LAYERS:
        blank = 0 * acts[n]
        assert sc.style[n] == pytest.approx(float(style_layer_cost(obj.style_targets[n], blank)[0]), rel=1e-12)
    assert sc.tv == pytest.approx(float(total_variation(content)[0]), rel=1e-12)
    # the same scales from the content target cut in pieces (how tiles pass it)
    pieces = [a_c[:, :2], a_c[:, 2:]]
    pieced = calibration(pieces, obj.style_targets, {n: acts[n].shape for n in LAYERS}, content)
    # equal to rounding: the sums run in another order (on CuPy they differed in the last bit)
    assert pieced.content == pytest.approx(sc.content, rel=1e-13) and pieced.tv == sc.tv
    assert pieced.style == pytest.approx(sc.style, rel=1e-13)
    # raw mode: all ones
    raw, _ = _objective(model, rng)
    assert raw.scales.content == 1.0 and raw.scales.tv == 1.0 and set(raw.scales.style.values()) == {1.0}


def test_calibrated_J_is_raw_J_with_rescaled_weights(model, rng):
    """Calibration changes only the weights: the calibrated J equals the notes' raw J with weights
    alpha / s_content, beta lambda_l / s_l, tv / s_tv (the formulas of the costs are untouched)."""
    cal, content = _objective(model, rng, alpha=0.7, beta=2.0, tv_weight=0.05, weights_mode="calibrated")
    sc = cal.scales
    raw_layers = {n: lam / sc.style[n] for n, lam in LAYERS.items()}
    raw, _ = _objective(model, np.random.default_rng(1234), alpha=0.7 / sc.content, beta=2.0,
                        tv_weight=0.05 / sc.tv, style_layers=raw_layers)
    x = content + model.xp.asarray(rng.normal(0, 20, size=content.shape))
    J1, g1, p1 = cal.evaluate(x)
    J2, g2 = raw.value_and_grad(x)
    assert float(J1) == pytest.approx(float(J2), rel=1e-12)
    assert rel_error(g1, g2) < 1e-12
    parts = {k: float(to_host(v)) for k, v in p1.items()}
    assert float(J1) == pytest.approx(0.7 * parts["content"] + 2.0 * parts["style"] + 0.05 * parts["tv"], rel=1e-12)
    # relative errors: the content term is 0 at the photo, the style term 0 at the style targets
    assert float(cal.evaluate(content).parts["content"]) == 0.0


def test_calibrated_terms_do_not_depend_on_the_pictures_contrast(model, rng):
    """Raw J_style ~ a^4 and J_content ~ a^2: halving the contrast of both pictures changes the raw
    terms by large factors but leaves the calibrated (relative) terms nearly unchanged."""
    xp = model.xp
    c_img, s_img = _img(rng, 16, 20), _img(rng, 20, 20)
    x_img = _img(rng, 16, 20)
    parts = {}
    for mode in ("raw", "calibrated"):
        for k in (1.0, 0.5):
            def pre(a):
                return preprocess(np.clip(128 + k * (a.astype(np.float64) - 128), 0, 255).astype(np.uint8),
                                  dtype=np.float64, xp=xp)
            obj = Objective(model, pre(c_img), pre(s_img), style_layers=LAYERS, content_layer="block2_conv2",
                            weights_mode=mode)
            parts[mode, k] = {n: float(to_host(v)) for n, v in obj.evaluate(pre(x_img)).parts.items()}
    for n in ("content", "style", "tv"):
        raw_ratio = parts["raw", 0.5][n] / parts["raw", 1.0][n]
        cal_ratio = parts["calibrated", 0.5][n] / parts["calibrated", 1.0][n]
        assert abs(np.log(cal_ratio)) < 0.5 * abs(np.log(raw_ratio)), (n, raw_ratio, cal_ratio)


@pytest.mark.parametrize("kw, pattern", [
    (dict(beta=-1.0), r"beta \(--style-weight\) must be in \[0, 10\] \(calibrated weights\), got -1.0"),
    (dict(beta=float("nan")), r"beta \(--style-weight\) must be in \[0, 10\].*got nan"),
    (dict(alpha=float("inf")), r"alpha \(--content-weight\) must be in.*got inf"),
    (dict(beta=10.5), r"beta \(--style-weight\) must be in \[0, 10\]"),
    (dict(tv_weight=2.0), r"tv_weight \(--tv-weight\) must be in \[0, 1\]"),
    (dict(beta="1"), r"beta \(--style-weight\) must be in"),
    (dict(weights_mode="log"), r"weights_mode \(--weights-mode\) must be one of calibrated, raw, got 'log'"),
])
def test_calibrated_weights_outside_their_range_are_refused(model, rng, kw, pattern):
    with pytest.raises(OptionError, match=pattern):
        stylize(_img(rng, 16, 16), _img(rng, 16, 16), model=model, iterations=1, style_layers=LAYERS, **kw)


def test_weight_ranges_hold_the_defaults_and_raw_mode_has_no_upper_bound(model, rng):
    from numpynst.transfer import DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_TV_WEIGHT
    for name, d in (("alpha", DEFAULT_ALPHA), ("beta", DEFAULT_BETA), ("tv_weight", DEFAULT_TV_WEIGHT)):
        lo, hi = WEIGHT_RANGES[name]
        assert lo <= d <= hi
    res = stylize(_img(rng, 16, 16), _img(rng, 16, 16), model=model, iterations=1, style_layers=LAYERS,
                  content_layer="block2_conv2", beta=1e6, weights_mode="raw", tol=None)
    assert res.iterations == 1


# ---------------------------------------------------------------------------------------------
# Coarse-to-fine and the progress bar

def test_coarse_to_fine_passes_the_float_image(model, rng, monkeypatch):
    """The next scale starts from the previous scale's best image upsampled *in float*: rounding it
    to uint8 pixels on the way (as saving and reloading would) must not happen."""
    import numpynst.transfer as transfer
    from numpynst.image import resize_to
    from numpynst.vgg import deprocess

    starts, bests = [], []
    original = transfer.minimize

    def spy(fun, x0, *args, **kw):
        starts.append(np.array(to_host(x0)))
        res = original(fun, x0, *args, **kw)
        bests.append(np.array(to_host(res.best_x)))
        return res
    monkeypatch.setattr(transfer, "minimize", spy)
    stylize(_img(rng, 32, 48), _img(rng, 24, 24), model=model, iterations=4, scales=[0.5, 1.0],
            style_layers=LAYERS, content_layer="block2_conv2", tol=None)
    coarse = bests[0].reshape(1, 16, 24, 3)[0]
    expected = resize_to(coarse, (32, 48))
    assert np.allclose(starts[1].reshape(32, 48, 3), expected, rtol=0, atol=1e-3)
    # pixel values (x + mean) of the start are not whole grey levels, nor clipped to 0..255
    rgb_start = deprocess(starts[1].reshape(1, 32, 48, 3)).astype(np.float64)    # uint8, for reference
    pix = starts[1].reshape(32, 48, 3) + np.array([103.939, 116.779, 123.68])
    assert np.abs(pix - np.round(pix)).max() > 0.1
    assert np.abs(pix[..., ::-1] - rgb_start).max() > 0.0


def test_stylize_keeps_no_reference_to_the_start_image(model, rng, monkeypatch):
    """stylize hands minimize its only reference to each scale's start image (minimize copies it
    and drops it): at 4096 px a start image kept alive is 200 MB for the whole scale."""
    import gc
    import weakref

    import numpynst.transfer as transfer
    alive, original = [], transfer.minimize

    def spy(fun, x0, *args, **kw):
        x, ref = x0.copy(), weakref.ref(x0)
        del x0
        gc.collect()
        alive.append(ref() is not None)
        return original(fun, x, *args, **kw)
    monkeypatch.setattr(transfer, "minimize", spy)
    stylize(_img(rng, 32, 48), _img(rng, 24, 24), model=model, iterations=2, scales=[0.5, 1.0],
            style_layers=LAYERS, content_layer="block2_conv2", tol=None)
    assert alive == [False, False]


def test_stylize_releases_cached_memory_once_the_last_scales_objective_is_gone(model, rng, monkeypatch):
    """At the start of each scale stylize calls backend.release_cached (CuPy: the pool's cached
    blocks back to the driver), and by then no earlier scale's objective is alive: what it held is
    free, so the release covers it (an 8192 px scale after 4096 px peaked 40% over the plan without)."""
    import weakref

    import numpynst.transfer as transfer
    built, released, make = [], [], transfer.make_objective

    def spy_make(*args, **kw):
        obj = make(*args, **kw)
        built.append(weakref.ref(obj))
        return obj
    monkeypatch.setattr(transfer, "make_objective", spy_make)
    monkeypatch.setattr(transfer, "release_cached",
                        lambda xp: released.append((xp, len(built), [r() is not None for r in built])))
    stylize(_img(rng, 32, 48), _img(rng, 24, 24), model=model, iterations=2, scales=[0.25, 0.5, 1.0],
            style_layers=LAYERS, content_layer="block2_conv2", tol=None)
    assert [(xp, n, alive) for xp, n, alive in released] == [
        (model.xp, 0, []), (model.xp, 1, [False]), (model.xp, 2, [False, False])]


def test_balance_readout():
    assert balance([10.0, 4.0, 0.05, 20.0], (1.0, 100.0, 0.01)) == "J 10 | content 40% style 50% tv 2%"
    assert balance([float("nan"), 1, 1, 1], (1, 1, 1)) == "J nan"


@pytest.mark.parametrize("tol, scales", [(None, None), (None, [0.5, 1.0]), (0.95, None)])
def test_progress_bar_ends_exactly_at_its_total(model, rng, capsys, tol, scales):
    cap = 30 if tol else 6          # the tolerance looks back 20 iterations
    res = stylize(_img(rng, 32, 32), _img(rng, 24, 24), model=model, iterations=cap, style_layers=LAYERS,
                  content_layer="block2_conv2", tol=tol, scales=scales, progress=True, log_every=2)
    err = capsys.readouterr().err
    frames = [f for f in err.replace("\r", "\n").split("\n") if "it" in f and "/" in f]
    assert frames, err
    last = frames[-1]
    done = res.iterations
    assert f" {done}/{done} " in last, last                 # n == total at the end
    assert "content" in last and "style" in last and "%" in last
    counts = [tuple(map(int, re.search(r"(\d+)/(\d+) \[", f).groups())) for f in frames]
    assert all(n <= total for n, total in counts) and counts[-1][0] == done
    assert not any(re.match(r"\s*\d+it", f) for f in frames)     # tqdm's "201it" form: count past total
    if tol:
        assert res.stopped == "tolerance" and done < cap


# ---------------------------------------------------------------------------------------------
# L-BFGS from any start, on the shipped VGG19

@pytest.mark.slow
def test_noise_and_style_inits_converge_with_the_default_optimizer():
    """``--init noise`` and ``--init style`` with the default L-BFGS and weights: after 200
    evaluations the noise start is within 1.5x of the content start's J (measured at 48 px with
    an earlier TV default of 0.01: 0.302 vs 0.295), the style start too (0.300)."""
    from numpynst.image import sample_path
    from numpynst.vgg import VGG

    model = VGG.from_h5()
    J = {init: stylize(sample_path("chelsea"), sample_path("ihc"), size=48, iterations=199, model=model,
                       tol=None, init=init).J_final
         for init in ("content", "noise", "style")}
    assert J["noise"] <= 1.5 * J["content"] and J["style"] <= 1.5 * J["content"]

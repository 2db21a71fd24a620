"""The style-transfer loop (``stylize``): stopping rules, interruption and NaN handling,
reproducibility, coarse to fine and the progress bar. The objective it minimizes is tested in
test_objective.py."""

import re

import numpy as np
import pytest

from numpynst.backend import backend_name, to_host
from numpynst.errors import NumpynstError, OptionError
from numpynst.transfer import Objective, balance, stylize
from test_objective import LAYERS, _img


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


def test_stylize_is_prepare_then_run_with_keywords_or_an_options_object(model, rng):
    """``stylize(c, s, **kw)``, ``stylize(c, s, StylizeOptions(**kw))`` and ``run(prepare(...))`` are
    one code path: the same pictures and histories to the bit; ``prepare`` checks and plans without
    optimising anything."""
    from numpynst.options import StylizeOptions
    from numpynst.transfer import prepare, run
    c, s = _img(rng, 32, 48), _img(rng, 24, 24)
    kw = dict(iterations=3, scales=[0.5, 1.0], style_layers=LAYERS, content_layer="block2_conv2", tol=None)
    a = stylize(c, s, model=model, **kw)
    b = stylize(c, s, StylizeOptions(**kw), model=model)
    p = prepare(c, s, StylizeOptions(iterations=3), model=model, scales=[0.5, 1.0], style_layers=LAYERS,
                content_layer="block2_conv2", tol=None)
    assert p.options == StylizeOptions(**kw).validate(1)
    assert list(p.plans) == [0.5, 1.0] and [pl.hw for pl in p.plans.values()] == [(16, 24), (32, 48)]
    assert len(p.describe().splitlines()) == 6 and p.describe().count(" whole image ") == 3   # title, columns, 2 scales, note, plan line
    assert p.describe().splitlines()[-1] == p.plan_line()
    d = run(p)
    for other in (b, d):
        assert np.array_equal(a.image_float, other.image_float) and a.history == other.history
    with pytest.raises(OptionError, match="unknown option 'sizes'"):
        stylize(c, s, model=model, sizes=32)


def test_default_scales_go_coarse_to_fine_down_to_the_coarsest_side():
    from numpynst.options import COARSEST_SIDE, DEFAULT_SCALES, default_scales
    assert default_scales((384, 512)) == [0.25, 0.5, 1.0]          # the default size: three scales
    assert default_scales((170, 256)) == [0.5, 1.0]
    assert default_scales((96, 128)) == [1.0]
    for side in range(16, 4097, 7):
        s = default_scales((side // 2 + 1, side))
        assert s[-1] == 1.0 and s == sorted(s) and set(s) <= set(DEFAULT_SCALES)
        assert all(round(x * side) >= COARSEST_SIDE for x in s[:-1])               # none too coarse
        assert all(round(x * side) < COARSEST_SIDE for x in DEFAULT_SCALES if x not in s)   # none dropped wrongly


def test_the_run_picks_the_default_scales_for_its_size_unless_told(model, rng):
    from numpynst.transfer import prepare
    c, s = _img(rng, 170, 256), _img(rng, 24, 24)
    assert prepare(c, s, model=model, style_layers=LAYERS).scales == [0.5, 1.0]
    assert prepare(c, s, model=model, style_layers=LAYERS, scales=[1.0]).scales == [1.0]
    assert prepare(c, s, model=model, style_layers=LAYERS, scales=[0.25]).scales == [0.25, 1.0]
    assert prepare(_img(rng, 64, 96), s, model=model, style_layers=LAYERS).scales == [1.0]


def test_J_start_and_J_final_are_the_full_size_scale_s(model, rng):
    res = stylize(_img(rng, 32, 48), _img(rng, 24, 24), model=model, iterations=3, scales=[0.5, 1.0],
                  style_layers=LAYERS, tol=None)
    J = res.history["J"]
    assert res.scale_starts == (0, 4) and len(J) == 8           # each scale: its start and 3 iterations
    assert res.J_start == J[4] and res.J_final == min(J[4:])
    one = stylize(_img(rng, 32, 48), _img(rng, 24, 24), model=model, iterations=3, style_layers=LAYERS, tol=None)
    assert one.scale_starts == (0,) and one.J_final == min(one.history["J"])

"""The style-transfer objective and loop: pixel gradients vs central differences (float64, tiny VGG),
target construction, stopping rules, interruption and NaN handling, reproducibility."""

import numpy as np
import pytest

from numpynst.backend import to_host
from numpynst.errors import NumpynstError, OptionError
from numpynst.gradcheck import check_directional, numerical_gradient_sparse, rel_error
from numpynst.losses import gram_matrix
from numpynst.testing import tiny_vgg
from numpynst.transfer import Objective, stylize
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
    with pytest.raises(OptionError, match="beta must be a finite number >= 0"):
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
    res = stylize(_img(rng, 16, 16), _img(rng, 16, 16), model=model, iterations=50, style_layers=LAYERS,
                  callback=cb, tol=None)
    assert res.stopped == "interrupted" and seen == [1, 2, 3, 4]
    assert res.image.shape == (16, 16, 3)
    assert len(res.history["J"]) == 5
    res2 = stylize(_img(rng, 16, 16), _img(rng, 16, 16), model=model, iterations=50, style_layers=LAYERS,
                   callback=lambda p: p.iteration < 3, tol=None)
    assert res2.stopped == "callback" and res2.iterations == 3


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
    with pytest.raises(OptionError, match="iterations must be an integer >= 0"):
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

"""The style-transfer objective (``numpynst.objective``): pixel gradients vs central differences
(float64, tiny VGG), parts and targets (style blends, style-image rescaling), option checks, and the
calibrated weights (scales, ranges)."""

import numpy as np
import pytest

from numpynst.backend import to_host
from numpynst.errors import OptionError
from numpynst.gradcheck import check_directional, numerical_gradient_sparse, rel_error
from numpynst.losses import content_cost, gram_matrix, style_layer_cost, total_variation
from numpynst.objective import COEFFICIENT_RANGES, Objective, calibration
from numpynst.transfer import stylize
from numpynst.vgg import preprocess

LAYERS = {"block1_conv1": 0.3, "block2_conv1": 0.3, "block3_conv1": 0.4}


def _img(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)


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


def test_kept_gradient_buffers_leave_no_trace_between_evaluations(model, rng):
    """The style gradients are written into buffers kept across evaluations: evaluating at x, then
    elsewhere, then at x again gives the same J and dJ/dx bit for bit, the first gradient is not
    changed by the later evaluations, and J and dJ/dx equal the textbook sum of the costs of
    numpynst.losses (each gradient weighted after the fact) sent through the network."""
    obj, content = _objective(model, rng, alpha=1.0, beta=1e-3, tv_weight=0.5)
    xp = model.xp
    x = content + xp.asarray(rng.normal(0, 10, size=content.shape))
    J1, g1 = obj.value_and_grad(x)
    keep = g1.copy()
    obj.value_and_grad(x + 7.0)
    J2, g2 = obj.value_and_grad(x)
    assert float(J1) == float(J2) and bool(xp.all(g1 == g2)) and bool(xp.all(g1 == keep))
    acts, tape = model.forward_tape(x, obj.outputs)
    Jc, gc = content_cost(obj.content_target, acts[obj.content_layer])
    grads, J = {obj.content_layer: obj.alpha * gc}, obj.alpha * Jc
    for n, lam in obj.style_layers.items():
        Js, gs = style_layer_cost(obj.style_targets[n], acts[n])
        J = J + obj.beta * lam * Js
        grads[n] = grads[n] + obj.beta * lam * gs if n in grads else obj.beta * lam * gs
    Jt, gt = total_variation(x)
    dx = model.backward_tape(grads, tape) + obj.tv_weight * gt
    J = J + obj.tv_weight * Jt
    assert float(J1) == pytest.approx(float(J), rel=1e-13)
    assert rel_error(to_host(g1), to_host(dx)) < 1e-12


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
    (dict(beta=-1.0), r"beta \(--style-weight\) must be in \[0, 100\] \(calibrated weights\), got -1.0"),
    (dict(beta=float("nan")), r"beta \(--style-weight\) must be in \[0, 100\].*got nan"),
    (dict(alpha=float("inf")), r"alpha \(--content-weight\) must be in.*got inf"),
    (dict(beta=100.5), r"beta \(--style-weight\) must be in \[0, 100\]"),
    (dict(tv_weight=2.0), r"tv_weight \(--tv-weight\) must be in \[0, 1\]"),
    (dict(beta="1"), r"^beta must be a number, got '1'$"),             # the schema's type check, first
    (dict(weights_mode="log"), r"^weights_mode must be one of calibrated, raw, got 'log'$"),
])
def test_calibrated_weights_outside_their_range_are_refused(model, rng, kw, pattern):
    with pytest.raises(OptionError, match=pattern):
        stylize(_img(rng, 16, 16), _img(rng, 16, 16), model=model, iterations=1, style_layers=LAYERS, **kw)


def test_weight_ranges_hold_the_defaults_and_raw_mode_has_no_upper_bound(model, rng):
    from numpynst.transfer import DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_TV_WEIGHT
    for name, d in (("alpha", DEFAULT_ALPHA), ("beta", DEFAULT_BETA), ("tv_weight", DEFAULT_TV_WEIGHT)):
        lo, hi = COEFFICIENT_RANGES[name]
        assert lo <= d <= hi
    res = stylize(_img(rng, 16, 16), _img(rng, 16, 16), model=model, iterations=1, style_layers=LAYERS,
                  content_layer="block2_conv2", beta=1e6, weights_mode="raw", tol=None)
    assert res.iterations == 1

"""VGG model: backward vs numerical gradients, depth-limited forward, pre/deprocessing, and an
independent cross-check of the shipped VGG19 against PyTorch."""

import numpy as np
import pytest

import numpynst.layers as L
from numpynst.errors import OptionError
from numpynst.gradcheck import check_directional, numerical_gradient_sparse, rel_error
from numpynst.testing import tiny_params, tiny_vgg
from numpynst.vgg import IMAGENET_MEAN_BGR, VGG, all_layer_names, deprocess, preprocess

OUTPUTS = ["block1_conv2", "block2_pool", "block3_conv1", "block4_conv2"]


def _objective(model, outputs, rng):
    """L(x) = sum_l sum(R_l * a_l(x)) + 0.5 * sum(a_last^2): a scalar depending on several layers."""
    weights = {}

    def loss(x, keep=False):
        acts = model.forward(x, outputs, keep_cache=keep)
        if not weights:
            weights.update({k: rng.standard_normal(v.shape) for k, v in acts.items()})
        total = sum(np.sum(weights[k] * v) for k, v in acts.items())
        last = outputs[-1]
        return total + 0.5 * np.sum(acts[last] ** 2), acts

    def grads(acts):
        g = {k: weights[k].copy() for k in acts}
        g[outputs[-1]] = g[outputs[-1]] + acts[outputs[-1]]
        return g

    return loss, grads


@pytest.mark.parametrize("arch,pooling", [("vgg19", "max"), ("vgg19", "avg"), ("vgg16", "max")])
def test_backward_matches_numerical_gradient_with_several_outputs(arch, pooling):
    rng = np.random.default_rng(0)
    model = tiny_vgg(arch, widths=(3, 4, 4, 5, 5), pooling=pooling, seed=1)
    x = rng.standard_normal((1, 16, 12, 3)) * 50.0
    loss, grads = _objective(model, OUTPUTS, rng)
    _, acts = loss(x, keep=True)
    dx = model.backward(grads(acts))
    assert dx.shape == x.shape and dx.dtype == np.float64
    f = lambda z: loss(z)[0]  # noqa: E731
    assert check_directional(f, x, dx, n_dirs=3, h=1e-4) < 1e-6
    idx, num = numerical_gradient_sparse(f, x, n=15, h=1e-4, rng=2)
    assert rel_error(dx.reshape(-1)[idx], num) < 1e-6


def test_backward_on_cupy_matches_numpy(xp):
    """Same tiny model on the backend under test: identical activations and gradients."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 8, 3)) * 30
    host = tiny_vgg(seed=4)
    dev = tiny_vgg(seed=4, backend="cupy" if xp is not np else "numpy")
    a_h = host.forward(x, ["block2_conv2"])["block2_conv2"]
    a_d = dev.forward(xp.asarray(x), ["block2_conv2"])["block2_conv2"]
    g = rng.standard_normal(a_h.shape)
    dx_h = host.backward({"block2_conv2": g})
    dx_d = dev.backward({"block2_conv2": xp.asarray(g)})
    assert rel_error(a_h, xp.asnumpy(a_d) if xp is not np else a_d) < 1e-12
    assert rel_error(dx_h, xp.asnumpy(dx_d) if xp is not np else dx_d) < 1e-12


def test_backward_is_linear_in_the_layer_gradients():
    rng = np.random.default_rng(5)
    model = tiny_vgg()
    x = rng.standard_normal((1, 8, 8, 3))
    acts = model.forward(x, ["block1_conv1", "block3_conv2"])
    g1 = rng.standard_normal(acts["block1_conv1"].shape)
    g3 = rng.standard_normal(acts["block3_conv2"].shape)
    g1_before, g3_before = g1.copy(), g3.copy()
    both = model.backward({"block1_conv1": g1, "block3_conv2": g3})
    sep = model.backward({"block1_conv1": g1}) + model.backward({"block3_conv2": g3})
    assert rel_error(both, sep) < 1e-13
    # the caller's arrays are not modified
    assert np.array_equal(g1, g1_before) and np.array_equal(g3, g3_before)


class _Counter:
    def __init__(self, monkeypatch):
        self.calls = []
        for name in ("conv2d_forward", "maxpool_forward", "conv2d_backward", "maxpool_backward"):
            orig = getattr(L, name)
            monkeypatch.setattr(L, name, self._wrap(name, orig))

    def _wrap(self, name, fn):
        def wrapped(*args, **kwargs):
            self.calls.append((name, kwargs))
            return fn(*args, **kwargs)
        return wrapped

    def count(self, name):
        return sum(1 for n, _ in self.calls if n == name)


def test_forward_stops_at_deepest_requested_layer_and_backward_starts_there(monkeypatch):
    model = tiny_vgg()
    counter = _Counter(monkeypatch)
    x = np.random.default_rng(0).standard_normal((1, 16, 16, 3))
    out = model.forward(x, ["block2_conv1", "block1_conv1"])
    assert set(out) == {"block1_conv1", "block2_conv1"}
    assert counter.count("conv2d_forward") == 3 and counter.count("maxpool_forward") == 1
    # a gradient for the shallow layer only: backward walks back from block1_conv1, not block2_conv1
    model.backward({"block1_conv1": np.ones_like(out["block1_conv1"])})
    assert counter.count("conv2d_backward") == 1 and counter.count("maxpool_backward") == 0
    model.backward({"block2_conv1": np.ones_like(out["block2_conv1"])})
    assert counter.count("conv2d_backward") == 4 and counter.count("maxpool_backward") == 1
    # NST never needs weight gradients
    assert all(kw.get("weight_grads") is False for n, kw in counter.calls if n == "conv2d_backward")


def test_pool_layers_are_outputs_and_halve_the_size():
    model = tiny_vgg(pooling="avg")
    x = np.random.default_rng(0).standard_normal((1, 20, 18, 3))
    out = model.forward(x, ["block1_conv2", "block1_pool", "block2_pool"])
    assert out["block1_pool"].shape == (1, 10, 9, 4)
    assert out["block2_pool"].shape == (1, 5, 4, 6)
    a = out["block1_conv2"]
    assert np.allclose(out["block1_pool"], a.reshape(1, 10, 2, 9, 2, 4).mean(axis=(2, 4)))


def test_bad_names_shapes_and_sizes_are_option_errors():
    model = tiny_vgg("vgg16")
    x = np.zeros((1, 16, 16, 3))
    with pytest.raises(OptionError, match="unknown vgg16 layer name.*'block3_conv4'.*valid names: block1_conv1"):
        model.forward(x, ["block1_conv1", "block3_conv4"])
    with pytest.raises(OptionError, match=r"shape \(N, H, W, 3\)"):
        model.forward(np.zeros((16, 16, 3)), "block1_conv1")
    with pytest.raises(OptionError, match="at least 32 px"):
        model.forward(np.zeros((1, 16, 40, 3)), "block5_pool")
    out = model.forward(x, ["block2_conv1"])
    with pytest.raises(OptionError, match="not an output of the last forward"):
        model.backward({"block1_conv1": np.zeros((1, 16, 16, 4))})
    with pytest.raises(OptionError, match="has shape"):
        model.backward({"block2_conv1": np.zeros((1, 3, 3, 6))})
    assert out["block2_conv1"].shape == (1, 8, 8, 6)
    model.forward(x, ["block2_conv1"], keep_cache=False)
    with pytest.raises(RuntimeError, match="keep_cache=True"):
        model.backward({"block2_conv1": np.zeros((1, 8, 8, 6))})
    with pytest.raises(OptionError, match="pooling"):
        tiny_vgg(pooling="min")
    with pytest.raises(OptionError, match="dtype"):
        tiny_vgg(dtype=np.int32)


def test_layer_names_and_channels():
    model = tiny_vgg("vgg19", widths=(2, 3, 4, 5, 6))
    assert model.layer_names == all_layer_names("vgg19")
    assert len(model.conv_names) == 16 and len(model.layer_names) == 21
    assert model.channels("block3_conv4") == 4 and model.channels("block5_pool") == 6
    assert all(w.dtype == np.float64 for w, _ in model.params.values())


def _old_receptive(layer_names, deepest):
    """The recursion as tiled.py wrote it before the layer table (a walk over the names)."""
    a, j, out = 0, 1, {}
    for name in layer_names[:list(layer_names).index(deepest) + 1]:
        if name.endswith("_pool"):
            j *= 2
        else:
            a += j
        out[name] = (a, j)
    return out


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_layer_table_matches_the_receptive_recursion_pool_factor_and_channels(arch):
    widths = (2, 3, 4, 5, 6)
    model = tiny_vgg(arch, widths=widths)
    names = model.layer_names
    assert [layer.name for layer in model.layers] == list(names)
    walk = _old_receptive(names, names[-1])
    for i, layer in enumerate(model.layers):
        assert layer.index == i and model.layer(layer.name) is layer
        assert layer.kind == ("pool" if layer.name.endswith("_pool") else "conv")
        assert (layer.reach, layer.spacing) == walk[layer.name]
        pools_in_front = sum(1 for n in names[:i] if n.endswith("_pool"))
        assert layer.pool_factor == 2 ** pools_in_front == model.pool_factor([layer.name, names[0]])
        block = int(layer.name[5]) - 1
        assert layer.channels == widths[block] == model.channels(layer.name)
    assert model.deepest(["block2_conv1", "block4_pool", "block1_conv2"]).name == "block4_pool"
    assert model.up_to(["block2_conv1"])[-1].name == "block2_conv1"
    with pytest.raises(OptionError, match="unknown"):
        model.layer("block9_conv1")


def test_shipped_vgg19_layer_table():
    """VGG19's block5_conv1: reach 2*1 + 2*2 + 4*4 + 4*8 + 16 = 70 at spacing 16, 512 channels."""
    layer = VGG.from_h5().layer("block5_conv1")
    assert (layer.reach, layer.spacing, layer.pool_factor, layer.channels) == (70, 16, 16, 512)


def test_tapes_are_independent(rng):
    """Two forwards, two tapes: each backward through its own tape gives that forward's gradient,
    whatever ran in between, and the model's own (stateful) tape is left alone."""
    model = tiny_vgg()
    x1, x2 = rng.standard_normal((2, 1, 16, 12, 3)) * 50
    names = ["block1_conv2", "block3_conv1"]
    ref = {}
    for k, x in ((1, x1), (2, x2)):
        acts = model.forward(x, names)
        ref[k] = (acts, model.backward({n: np.ones_like(a) for n, a in acts.items()}))
    model.forward(x1, ["block2_conv1"])                       # the stateful tape: not the ones below
    acts1, tape1 = model.forward_tape(x1, names)
    acts2, tape2 = model.forward_tape(x2, names)
    for n in names:
        assert np.array_equal(acts1[n], ref[1][0][n]) and np.array_equal(acts2[n], ref[2][0][n])
    ones = {n: np.ones_like(a) for n, a in acts1.items()}
    assert np.array_equal(model.backward_tape(dict(ones), tape1), ref[1][1])
    assert np.array_equal(model.backward_tape(dict(ones), tape2, release=True), ref[2][1])
    assert not tape2 and tape1                                  # release empties that tape only
    assert np.array_equal(model.backward_tape(dict(ones), tape1), ref[1][1])
    with pytest.raises(RuntimeError, match="needs a forward"):
        model.backward_tape(dict(ones), tape2)
    assert model.forward_tape(x1, names, keep=False)[1] is None
    # the stateful convenience still has its own tape (block2_conv1's)
    g = model.backward({"block2_conv1": np.ones((1, 8, 6, model.channels("block2_conv1")))})
    assert g.shape == x1.shape


# ------------------------------------------------------------------------- pre/deprocess
def test_preprocess_is_bgr_minus_mean_and_deprocess_inverts_it():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = preprocess(rgb)
    assert x.shape == (1, 5, 7, 3) and x.dtype == np.float32 and x.flags.c_contiguous
    red = preprocess(np.array([[[255, 0, 0]]], dtype=np.uint8), dtype=np.float64)
    assert np.allclose(red[0, 0, 0], [0 - 103.939, 0 - 116.779, 255 - 123.68])
    assert np.array_equal(deprocess(x), rgb)
    assert np.array_equal(deprocess(x[0]), rgb)
    assert np.array_equal(deprocess(preprocess(rgb.astype(np.float64), dtype=np.float64)), rgb)
    assert np.array_equal(preprocess(rgb[None]), x)


def test_deprocess_clips_and_rounds():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 0] = 1e6                               # far above 255
    x[0, 0, 1] = -1e6                              # far below 0
    x[0, 0, 2] = np.array([0.4, 0.6, -0.4]) - np.array(IMAGENET_MEAN_BGR) + 10  # 10.4, 10.6, 9.6 BGR
    out = deprocess(x)
    assert out.dtype == np.uint8
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [0, 0, 0]
    assert out[0, 2].tolist() == [10, 11, 10]      # RGB: R from channel 2 (9.6), G 10.6, B 10.4
    with pytest.raises(OptionError):
        deprocess(np.zeros((2, 4, 4, 3)))
    with pytest.raises(OptionError):
        preprocess(np.zeros((4, 4)))


# ------------------------------------------------------------------------- the shipped VGG19
@pytest.fixture(scope="module")
def vgg19_f64():
    return VGG.from_h5(dtype=np.float64)


def test_fast_and_naive_convolution_agree_on_real_weights(vgg19_f64):
    rng = np.random.default_rng(0)
    x = preprocess(rng.integers(0, 256, (16, 16, 3)).astype(np.uint8), dtype=np.float64)
    fast = vgg19_f64.forward(x, ["block1_conv2"])["block1_conv2"]
    a = x
    for name in ("block1_conv1", "block1_conv2"):
        w, b = vgg19_f64.params[name]
        a = np.maximum(L.conv2d_forward_naive(a, w, b, 1, 1)[0], 0)
    assert rel_error(fast, a) < 1e-12


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_shipped_vgg19_matches_pytorch(pooling):
    """Independent implementation: torch's conv2d/relu/pool on the same weights, float64."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    model = VGG.from_h5(dtype=np.float64, pooling=pooling)
    rng = np.random.default_rng(7)
    x = preprocess(rng.integers(0, 256, (32, 24, 3)).astype(np.uint8), dtype=np.float64)
    a = model.forward(x, ["block5_conv1"])["block5_conv1"]
    r = rng.standard_normal(a.shape)
    dx = model.backward({"block5_conv1": r})

    t = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)          # NCHW
    h = t
    for name in model.layer_names[:model.layer_names.index("block5_conv1") + 1]:
        if name in model.params:
            w, b = model.params[name]
            # Keras (KH, KW, Cin, Cout) -> torch (Cout, Cin, KH, KW); both are cross-correlations
            h = F.relu(F.conv2d(h, torch.tensor(w.transpose(3, 2, 0, 1)), torch.tensor(b), padding=1))
        else:
            h = F.max_pool2d(h, 2, 2) if pooling == "max" else F.avg_pool2d(h, 2, 2)
    (h * torch.tensor(r.transpose(0, 3, 1, 2))).sum().backward()
    act_err = rel_error(a, h.detach().numpy().transpose(0, 2, 3, 1))
    grad_err = rel_error(dx, t.grad.numpy().transpose(0, 2, 3, 1))
    print(f"torch agreement ({pooling}): activations {act_err:.1e}, pixel gradient {grad_err:.1e}")
    assert act_err < 1e-10 and grad_err < 1e-10


def test_model_lives_on_its_device_in_its_dtype(xp):
    model = tiny_vgg(dtype=np.float32, backend="cupy" if xp is not np else "numpy")
    assert model.xp is xp
    w, b = model.params["block1_conv1"]
    assert w.dtype == np.float32 and type(w).__module__.split(".")[0] == xp.__name__.split(".")[0]
    x = model.preprocess(np.zeros((8, 8, 3), dtype=np.uint8))
    assert x.dtype == np.float32 and model.forward(x, "block1_pool")["block1_pool"].dtype == np.float32


def test_numpy_params_are_read_only_copies():
    """Read-only, so conv may cache Winograd transforms; copies, so the caller's arrays are untouched."""
    params = tiny_params("vgg19", seed=3)
    params = {k: (w.astype(np.float32), b.astype(np.float32)) for k, (w, b) in params.items()}
    model = VGG.from_params("vgg19", params, dtype=np.float32)    # same dtype: no conversion copy
    for name, (w, b) in model.params.items():
        assert not w.flags.writeable and not b.flags.writeable
        assert not np.may_share_memory(w, params[name][0]) and not np.may_share_memory(b, params[name][1])
        assert params[name][0].flags.writeable and np.array_equal(w, params[name][0])
    with pytest.raises(ValueError, match="read-only"):
        model.params["block1_conv1"][0][0, 0, 0, 0] = 1.0


def test_backward_leaves_the_callers_gradients_alone():
    """backward works in place on its own intermediates only, never on the arrays it is given."""
    model = tiny_vgg()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 16, 16, 3))
    acts = model.forward(x, ["block1_conv1", "block2_conv2"])
    grads = {k: rng.standard_normal(v.shape) for k, v in acts.items()}
    saved = {k: v.copy() for k, v in grads.items()}
    dx1 = model.backward(grads)
    assert all(np.array_equal(grads[k], saved[k]) for k in grads)
    assert np.array_equal(model.backward(grads), dx1)


def test_backward_with_release_frees_the_tape_as_it_goes_and_gives_the_same_gradient():
    import gc
    import weakref
    rng = np.random.default_rng(3)
    model = tiny_vgg(widths=(3, 4, 4, 5, 5), seed=2)
    x = rng.standard_normal((1, 16, 12, 3)) * 50.0
    outs = ["block1_conv2", "block3_conv1"]
    acts = model.forward(x, outs)
    grads = {k: rng.standard_normal(v.shape) for k, v in acts.items()}
    keep = model.backward(dict(grads))
    assert model._tape                                          # the default keeps the tape: backward again works
    # intermediate activations (not returned to us) die once backward is through their layer
    inner = [weakref.ref(c[1].out) for _, kind, c in model._tape if kind == "conv"
             and not any(c[1].out is a for a in acts.values())]
    assert inner
    given = dict(grads)
    dx = model.backward(given, release=True)
    assert np.array_equal(dx, keep)
    assert given == {}                                          # each gradient was taken once used
    gc.collect()
    assert all(r() is None for r in inner)
    with pytest.raises(RuntimeError, match="needs a forward"):
        model.backward(dict(grads))

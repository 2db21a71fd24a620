"""GPU-only tests: the CUDA kernels against their NumPy twins, the layer functions' dispatch to them,
no device->host transfer inside the optimization loop, and stylize on CuPy against NumPy.

Every test here needs CuPy and a CUDA device; elsewhere they are skipped and ``pytest -rs`` shows
why. (The kernel *sources* are also exercised without a GPU, by tests/test_cuda_kernels_emulated.py.)
"""

from __future__ import annotations

import contextlib
import itertools
from types import SimpleNamespace

import numpy as np
import pytest

import numpynst.optim
import numpynst.transfer
from numpynst import backend
from numpynst.layers import conv, pooling
from numpynst.layers import relu as activations
from numpynst.layers.fast import cuda_kernels as ck
from numpynst.layers.fast import im2col as fast_im2col
from numpynst.backend import cupy_available, to_host
from numpynst.testing import tiny_vgg
from numpynst.transfer import stylize

_CUPY_OK, _CUPY_REASON = cupy_available()
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not _CUPY_OK, reason=f"no GPU backend: {_CUPY_REASON}")]

DTYPES = [np.float32, np.float64]
# (N, H, W, C), (KH, KW), stride, pad: odd sizes, 1x1 and non-square kernels, strides 1 and 2, pads 0 and 1
CONV_CASES = [(s, k, st, p) for s, k, st, p in itertools.product(
    [(1, 7, 5, 3), (2, 6, 9, 4), (3, 5, 5, 1)], [(3, 3), (1, 1), (2, 3)], [1, 2], [0, 1])]
# (N, H, W, C), size, stride: floor mode (remainders), overlapping windows (stride < size), size 1
POOL_CASES = [((2, 6, 6, 3), 2, 2), ((1, 7, 9, 2), 2, 2), ((2, 7, 8, 3), 3, 2), ((1, 5, 6, 4), 2, 1),
              ((1, 9, 9, 1), 3, 3), ((2, 4, 5, 2), 1, 1)]


@pytest.fixture(scope="module")
def cp():
    return backend.resolve("cupy")


# ------------------------------------------------------------------------------ kernels vs NumPy
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_and_col2im_equal_the_numpy_twins(cp, dtype):
    rng = np.random.default_rng(0)
    for shape, (kh, kw), stride, pad in CONV_CASES:
        x = rng.standard_normal(shape).astype(dtype)
        cols = ck.im2col(cp.asarray(x), kh, kw, stride, pad)
        np.testing.assert_array_equal(to_host(cols), conv.im2col(x, kh, kw, stride, pad),
                                      err_msg=f"im2col {shape} k={kh}x{kw} s={stride} p={pad}")
        c = rng.standard_normal(cols.shape).astype(dtype)
        # the gather adds the same terms in the same order as the NumPy loop: equal, not just close
        np.testing.assert_array_equal(to_host(ck.col2im(cp.asarray(c), shape, kh, kw, stride, pad)),
                                      conv.col2im(c, shape, kh, kw, stride, pad),
                                      err_msg=f"col2im {shape} k={kh}x{kw} s={stride} p={pad}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_chunks_equal_the_numpy_twins(cp, dtype):
    """im2col_rows (asymmetric pads) and chunked col2im_rows_add, the forms the conv fast path uses."""
    rng = np.random.default_rng(1)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for (n, h, w, c), (kh, kw), stride, pad in CONV_CASES:
        ph, pw = pad, 1 - pad
        ho, wo = (h + 2 * ph - kh) // stride + 1, (w + 2 * pw - kw) // stride + 1
        x = rng.standard_normal((n, h, w, c)).astype(dtype)
        for i0, i1 in [(0, ho), (0, 1), (ho // 2, ho)]:
            if i1 <= i0:
                continue
            got = cp.full((n, i1 - i0, wo, kh, kw, c), 7, dtype=dtype)    # every entry must be written
            want = np.empty((n, i1 - i0, wo, kh, kw, c), dtype=dtype)
            ck.im2col_rows(cp.asarray(x), got, i0, i1, stride, ph, pw)
            fast_im2col.im2col_rows(x, want, i0, i1, stride, ph, pw)
            np.testing.assert_array_equal(to_host(got), want, err_msg=f"rows [{i0}, {i1}) of {(n, h, w, c)}")
        # dx accumulated chunk by chunk equals col2im of all rows at once
        ho, wo = conv.conv_output_size(h, kh, stride, pad), conv.conv_output_size(w, kw, stride, pad)
        cols = rng.standard_normal((n, ho, wo, kh, kw, c)).astype(dtype)
        want = conv.col2im(cols.reshape(n * ho * wo, -1), (n, h, w, c), kh, kw, stride, pad)
        for rows in (1, 2, ho):
            dx = cp.zeros((n, h, w, c), dtype=dtype)
            for i0 in range(0, ho, rows):
                i1 = min(ho, i0 + rows)
                ck.col2im_rows_add(cp.asarray(cols[:, i0:i1]), dx, i0, i1, stride, pad)
            np.testing.assert_allclose(to_host(dx), want, rtol=rtol, atol=rtol,
                                       err_msg=f"chunks of {rows} rows, {(n, h, w, c)} k={kh}x{kw} s={stride}")


def test_col2im_is_the_adjoint_of_im2col(cp):
    """<im2col(x), C> = <x, col2im(C)>: a property of the pair, independent of the NumPy twins."""
    rng = np.random.default_rng(2)
    for shape, (kh, kw), stride, pad in CONV_CASES:
        x = cp.asarray(rng.standard_normal(shape))
        cols = ck.im2col(x, kh, kw, stride, pad)
        c = cp.asarray(rng.standard_normal(cols.shape))
        lhs = float(to_host(cp.sum(cols * c)))
        rhs = float(to_host(cp.sum(x * ck.col2im(c, shape, kh, kw, stride, pad))))
        assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_maxpool_kernels_equal_the_numpy_twins(cp, dtype, ties):
    rng = np.random.default_rng(3)
    for shape, size, stride in POOL_CASES:
        # integers in 0..2 make most windows tie: checks the first-maximum rule
        x = (rng.integers(0, 3, size=shape) if ties else rng.standard_normal(shape)).astype(dtype)
        out, argmax = ck.maxpool_forward(cp.asarray(x), size, stride)
        want, cache = pooling.maxpool_forward(x, size, stride)
        np.testing.assert_array_equal(to_host(out), want)
        np.testing.assert_array_equal(to_host(argmax), cache.argmax)
        assert argmax.dtype == np.uint8
        dout = rng.standard_normal(want.shape).astype(dtype)
        dx = ck.maxpool_backward(cp.asarray(dout), argmax, shape, size, stride)
        np.testing.assert_array_equal(to_host(dx), pooling.maxpool_backward(dout, cache),
                                      err_msg=f"maxpool backward {shape} size={size} stride={stride}")
        # gradient is routed, never duplicated or lost (any stride, overlapping windows included)
        assert float(to_host(dx.sum())) == pytest.approx(float(dout.sum()), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward_kernel_equals_the_numpy_twin(cp, dtype):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 5, 7, 3)).astype(dtype)
    x[0, 0, :3, 0] = 0.0                                   # the kink: derivative 0 there
    out, cache = activations.relu_forward(x)
    dout = rng.standard_normal(x.shape).astype(dtype)
    dout[0, 1, 1, 1] = np.nan                              # behind a dead unit if x < 0 there
    got = ck.relu_backward(cp.asarray(dout), cp.asarray(out))
    np.testing.assert_array_equal(to_host(got), activations.relu_backward(dout, cache))


def test_kernels_reject_numpy_arrays_and_other_dtypes(cp):
    with pytest.raises(TypeError, match="needs CuPy arrays"):
        ck.im2col(np.zeros((1, 4, 4, 1), np.float32), 3, 3, 1, 1)
    with pytest.raises(TypeError, match="float32 or float64"):
        ck.maxpool_forward(cp.zeros((1, 4, 4, 1), cp.int32), 2, 2)
    assert ck.supports(cp.zeros(3, cp.float32)) and not ck.supports(np.zeros(3, np.float32))
    with ck.disabled():
        assert not ck.supports(cp.zeros(3, cp.float32))


# ------------------------------------------------------------------------------ layer dispatch
def test_layers_dispatch_cupy_arrays_to_the_kernels_and_agree_with_the_array_code(cp, monkeypatch):
    """conv (forward, dx by col2im, dw), max pool and ReLU on CuPy arrays launch the kernels, and give
    what the array formulation gives on the same GPU (kernels disabled)."""
    launched: list[str] = []
    real_launch, real_relu = ck._launch, ck._relu_kernel
    monkeypatch.setattr(ck, "_launch", lambda cp_, name, *a, **k: (launched.append(name),
                                                                   real_launch(cp_, name, *a, **k))[1])
    monkeypatch.setattr(ck, "_relu_kernel", lambda cp_: (launched.append("relu"), real_relu(cp_))[1])
    rng = np.random.default_rng(5)
    x = cp.asarray(rng.standard_normal((2, 9, 7, 5)))
    w = cp.asarray(rng.standard_normal((3, 3, 5, 4)))
    b = cp.asarray(rng.standard_normal(4))

    def run():
        out, cc = conv.conv2d_forward(x, w, b, stride=1, pad=1, method="im2col")
        a, rc = activations.relu_forward(out)
        p, pc = pooling.maxpool_forward(a, 2, 2)
        g = pooling.maxpool_backward(cp.ones_like(p) + p, pc)
        g = activations.relu_backward(g, rc)
        dx, dw, db = conv.conv2d_backward(g, cc, method="col2im")
        s2, sc = conv.conv2d_forward(x, w, b, stride=2, pad=1)            # stride 2: im2col + col2im only
        dx2, _, _ = conv.conv2d_backward(s2, sc, weight_grads=False)
        return [to_host(v) for v in (out, a, p, g, dx, dw, db, s2, dx2)]

    with ck.disabled():
        want = run()
    assert launched == [], "kernels ran although disabled"
    got = run()
    for name in ("numpynst_im2col", "numpynst_col2im", "numpynst_maxpool_fwd", "numpynst_maxpool_bwd", "relu"):
        assert name in launched, f"{name} was not used for CuPy arrays: is its dispatch hook in place?"
    for g_, w_ in zip(got, want):
        np.testing.assert_allclose(g_, w_, rtol=1e-11, atol=1e-11)


# ------------------------------------------------------------------------------ no host transfer in the loop
class HostTransfer(AssertionError):
    """A device->host copy (or a sync reading a device value) where none is allowed."""


# Every Python-visible way a CuPy array reaches the host. Cython code inside CuPy that calls int()
# on a device array (e.g. boolean-mask indexing counting its True entries) goes through the same
# type slots, so it is caught as well. cupyx.allow_synchronize(False) would be the official guard,
# but it is deprecated since CuPy v10 and in CuPy 14 no code path consults it any more.
_NDARRAY_EXITS = ("get", "item", "tolist", "__float__", "__int__", "__index__", "__complex__",
                  "__bool__", "__array__", "__repr__", "__str__", "__format__")   # those CuPy defines


@contextlib.contextmanager
def transfer_trap(cp):
    """Patch CuPy's device->host exits to raise :class:`HostTransfer` while ``trap.armed`` is True."""
    trap = SimpleNamespace(armed=False, hits=[])
    saved = []

    def guard(name, orig):
        def guarded(*args, **kwargs):
            if trap.armed:
                trap.hits.append(name)
                raise HostTransfer(f"device->host transfer while forbidden: {name}")
            return orig(*args, **kwargs)
        return guarded

    targets = [(cp.ndarray, n) for n in _NDARRAY_EXITS if hasattr(cp.ndarray, n)] + [(cp, "asnumpy")]
    try:
        for obj, name in targets:
            own = name in vars(obj)             # inherited dunders are deleted again, not copied in
            orig = getattr(obj, name)
            saved.append((obj, name, own, orig))
            setattr(obj, name, guard(name, orig))
        yield trap
    finally:
        trap.armed = False
        for obj, name, own, orig in reversed(saved):
            if own:
                setattr(obj, name, orig)
            else:
                delattr(obj, name)


def test_transfer_trap_catches_device_to_host_copies(cp):
    a = cp.arange(6, dtype=cp.float32).reshape(2, 3)
    s = a.sum()
    exits = {
        "float": lambda: float(s), "int": lambda: int(s), "bool / if": lambda: bool(s > 0),
        "item": lambda: s.item(), "get": lambda: a.get(), "tolist": lambda: a.tolist(),
        "asnumpy": lambda: cp.asnumpy(a), "backend.to_host": lambda: to_host(a),
        "backend.to_float": lambda: backend.to_float(s), "print": lambda: str(a),
        "f-string": lambda: f"{s:.3f}",
    }
    with transfer_trap(cp) as trap:
        trap.armed = True
        for what, f in exits.items():
            with pytest.raises(HostTransfer):
                f()
                pytest.fail(f"{what} reached the host unnoticed")
        trap.armed = False
        assert float(s) == 15.0 and to_host(a).shape == (2, 3)     # disarmed: everything works again
    assert float(s) == 15.0                                          # and the patches are gone


def test_transfer_trap_sees_the_hidden_copy_of_boolean_mask_assignment(cp):
    """``a[mask] = v`` makes CuPy count the mask's True entries on the host (int() of a device scalar).

    The count comes before the write, so the trapped assignment leaves ``a`` as it was; disarmed, the
    same line works (CuPy 14.2 on an H200 showed the trap raising and ``a`` unchanged).
    """
    a = cp.arange(6, dtype=cp.float32)
    with transfer_trap(cp) as trap:
        trap.armed = True
        with pytest.raises(HostTransfer):
            a[a > 2] = 0
        trap.armed = False
        assert float(a.sum()) == 15.0       # stopped before the write
        a[a > 2] = 0
    assert float(a.sum()) == 3.0


def _images(rng):
    content = rng.integers(0, 256, size=(40, 24, 3)).astype(np.uint8)   # rounded to 48x32 by stylize
    style = rng.integers(0, 256, size=(36, 36, 3)).astype(np.uint8)
    return content, style


@pytest.mark.parametrize("conv", ["im2col", "winograd", "implicit", "measure"])
@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "array-code"])
@pytest.mark.parametrize("optimizer", ["gd", "adam", "lbfgs"])
def test_no_host_transfer_inside_the_optimization_loop(cp, monkeypatch, optimizer, kernels, conv):
    """The loop of optim.minimize, as stylize runs it, runs with every device->host exit trapped.

    Armed at the first optimizer step (the style targets and the first evaluation, before the loop,
    may copy), disarmed by minimize's flush of the recorded history (optim.py's only to_host), which
    with log_every=0 happens once, after the loop. The steps are wrapped on the optimizer class, so
    the test does not depend on how transfer.py imports make_optimizer.
    """
    if conv == "implicit" and not kernels:
        pytest.skip("the implicit GEMM is a kernel: with the kernels off there is no such path")
    iterations = 10
    monkeypatch.setenv("NUMPYNST_GPU_CONV", conv)      # the 3x3 convs' path on CuPy (dispatch.py)
    model = tiny_vgg(backend="cupy", dtype=np.float32, widths=(8, 64, 64, 64, 64))
    content, style = _images(np.random.default_rng(6))
    with contextlib.nullcontext() if kernels else ck.disabled():
        hits, steps, flushes, result = _loop_trapped(cp, monkeypatch, optimizer, lambda: stylize(
            content, style, model=model, iterations=iterations, optimizer=optimizer, log_every=0, tol=None))
    assert hits == [], f"device->host transfers inside the loop: {hits}"
    assert steps == iterations, "the trap was not armed for every step"
    assert flushes == 1, "expected exactly one flush of the loss history, after the loop"
    assert result.iterations == iterations and len(result.history["J"]) == iterations + 1
    assert np.all(np.isfinite(result.history["J"]))


def _loop_trapped(cp, monkeypatch, optimizer: str, run):
    """``(trap hits, steps, history flushes, run())``: ``run`` (a stylize) with the trap armed at each
    step of ``optimizer``'s class and disarmed by minimize's flush of the history (optim's to_host)."""
    steps, flushes = [], []
    cls = {"gd": numpynst.optim.GradientDescent, "adam": numpynst.optim.Adam,
           "lbfgs": numpynst.optim.LBFGS}[optimizer]
    with transfer_trap(cp) as trap:
        real_step = cls.step

        def step(self, *a, **k):
            trap.armed = True
            steps.append(1)
            return real_step(self, *a, **k)

        real_to_host = numpynst.optim.to_host

        def flush_to_host(a):
            trap.armed = False
            flushes.append(1)
            return real_to_host(a)

        monkeypatch.setattr(cls, "step", step)
        monkeypatch.setattr(numpynst.optim, "to_host", flush_to_host)
        result = run()
    return trap.hits, len(steps), len(flushes), result


def test_release_cached_returns_the_pools_free_blocks(cp):
    """backend.release_cached: the blocks CuPy's pool cached from freed arrays go back to the driver;
    live arrays stay."""
    pool = cp.get_default_memory_pool()
    keep = cp.ones(1 << 20, dtype=cp.float32)           # 4 MiB, alive throughout
    freed = cp.ones(16 << 20, dtype=cp.float32)         # 64 MiB, freed into the pool's cache
    del freed
    assert pool.total_bytes() - pool.used_bytes() >= 64 << 20
    backend.release_cached(cp)
    assert pool.total_bytes() == pool.used_bytes() >= 4 << 20
    assert float(keep.sum()) == float(1 << 20)
    backend.release_cached(np)                          # NumPy: nothing to do, no error


def test_device_memory_is_flat_across_iterations(cp):
    """After the first iterations (L-BFGS history, scratch buffers, kernel caches) every iteration
    allocates and frees the same arrays: live device memory is the same at every logging point and
    CuPy's memory pool stops growing (a leak, or a buffer that grows per iteration, fails this)."""
    pool = cp.get_default_memory_pool()
    used, total = [], []

    def callback(progress):
        used.append(pool.used_bytes())
        total.append(pool.total_bytes())

    model = tiny_vgg(backend="cupy", dtype=np.float32, widths=(8, 16, 16, 16, 16))
    content, style = _images(np.random.default_rng(8))
    stylize(content, style, model=model, iterations=14, optimizer="lbfgs", log_every=1, tol=None,
            callback=callback)
    assert len(used) == 14
    assert len(set(used[4:])) == 1, f"live device memory changes between iterations: {used}"
    assert max(total[4:]) <= total[4] * 1.01, f"the memory pool keeps growing: {total}"


# ------------------------------------------------------------------------------ CuPy vs NumPy end to end
@pytest.mark.parametrize("optimizer", ["gd", "adam", "lbfgs"])
def test_stylize_on_cupy_matches_numpy(optimizer):
    """Same float64 tiny model, images and seed: the loss histories agree to round-off."""
    content, style = _images(np.random.default_rng(7))
    runs = {}
    for name in ("numpy", "cupy"):
        model = tiny_vgg(backend=name, dtype=np.float64)
        runs[name] = stylize(content, style, model=model, iterations=8, optimizer=optimizer, init="noise",
                             seed=3, tol=None, log_every=4)
    a, b = runs["numpy"], runs["cupy"]
    assert a.iterations == b.iterations == 8
    for key in ("J", "content", "style", "tv"):
        np.testing.assert_allclose(b.history[key], a.history[key], rtol=1e-8, err_msg=key)
    assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 1


# ------------------------------------------------------------------------------ implicit GEMM, measured choice
@pytest.mark.parametrize("dtype", DTYPES)
def test_implicit_gemm_equals_the_naive_twins(cp, dtype):
    """Forward (bias, ReLU) and the stride-1 dx of the implicit-GEMM kernel against the naive loops,
    on the shapes of the emulated test plus VGG's 64/128-channel ones."""
    rng = np.random.default_rng(11)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for shape, f, (kh, kw), stride, pad in [((2, 9, 10, 3), 70, (3, 3), 1, 1), ((1, 12, 13, 8), 130, (3, 3), 1, 1),
                                            ((2, 7, 9, 5), 6, (2, 3), 2, 0), ((1, 16, 20, 64), 64, (3, 3), 1, 1),
                                            ((1, 10, 12, 128), 128, (3, 3), 1, 1)]:
        x = rng.standard_normal(shape).astype(dtype)
        w = (rng.standard_normal((kh, kw, shape[3], f)) / np.sqrt(kh * kw * shape[3])).astype(dtype)
        b = rng.standard_normal(f).astype(dtype)
        want, cache = conv.conv2d_forward_naive(x, w, b, stride, pad)
        got = ck.conv_implicit(cp.asarray(x), cp.asarray(w), cp.asarray(b), stride, pad, pad)
        np.testing.assert_allclose(to_host(got), want, **tol)
        got = ck.conv_implicit(cp.asarray(x), cp.asarray(w), None, stride, pad, pad, relu=True)
        np.testing.assert_allclose(to_host(got), np.maximum(want - b, 0), **tol)
        if stride == 1:
            dout = rng.standard_normal(want.shape).astype(dtype)
            dx = conv.conv2d_backward_naive(dout, cache)[0]
            np.testing.assert_allclose(to_host(ck.conv_implicit_dx(cp.asarray(dout), cp.asarray(w), pad)), dx, **tol)


def test_layers_take_the_implicit_gemm_or_the_measured_choice(cp, monkeypatch):
    """conv2d_forward/backward with NUMPYNST_GPU_CONV=implicit and =measure agree with im2col, and the
    measurement records one choice per (forward|dx, shape)."""
    from numpynst.layers.fast import dispatch
    rng = np.random.default_rng(12)
    x = cp.asarray(rng.standard_normal((1, 24, 20, 64)), dtype=cp.float32)
    w = cp.asarray(rng.standard_normal((3, 3, 64, 64)) / 24, dtype=cp.float32)
    b = cp.asarray(rng.standard_normal(64), dtype=cp.float32)
    g = cp.asarray(rng.standard_normal((1, 24, 20, 64)), dtype=cp.float32)
    res = {}
    monkeypatch.setattr(dispatch, "_CHOICES", {})
    for name in ("im2col", "implicit", "measure"):
        monkeypatch.setenv("NUMPYNST_GPU_CONV", name)
        out, cache = conv.conv2d_forward(x, w, b, relu=True)
        dx, _, _ = conv.conv2d_backward(g, cache, weight_grads=False)
        res[name] = (to_host(out), to_host(dx))
    for name in ("implicit", "measure"):
        for got, want in zip(res[name], res["im2col"]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    choices = dispatch.measured_choices()
    assert sorted(k[0] for k in choices) == ["dx", "forward"]
    for c in choices.values():
        assert c["method"] in c["seconds"] and set(c["seconds"]) == {"im2col", "implicit"}


# ------------------------------------------------------------------------------ precision
def test_tf32_switch_sets_and_restores_cupys_compute_type(cp):
    assert backend.matmul_precision(cp) == "fp32"
    with backend.tf32_matmul(cp):
        major = cp.cuda.Device().compute_capability[0]
        assert backend.matmul_precision(cp) == ("tf32" if int(major) >= 8 else "fp32")
        a = cp.asarray(np.random.default_rng(0).standard_normal((256, 256)), dtype=cp.float32)
        err = float(cp.abs(a @ a - (a.astype(cp.float64) @ a.astype(cp.float64))).max())
    assert backend.matmul_precision(cp) == "fp32"
    exact = float(cp.abs(a @ a - (a.astype(cp.float64) @ a.astype(cp.float64))).max())
    if backend.matmul_precision(cp) == "fp32" and int(major) >= 8:
        assert err > 10 * exact, (err, exact)       # TF32 products: 10-bit mantissas, visibly coarser


def test_fp16_objective_on_cupy_agrees_with_fp32_and_with_the_numpy_emulation(cp):
    from numpynst.image import load_image, sample_path
    from numpynst.objective import Objective
    from numpynst.vgg import VGG, preprocess
    c = load_image(sample_path("chelsea"), size=64)
    s = load_image(sample_path("ihc"), size=64)
    x = preprocess(c) + np.random.default_rng(0).normal(0, 20, (1, 64, 64, 3)).astype(np.float32)
    J = {}
    for name, dt in (("cupy", np.float32), ("cupy", np.float16), ("numpy", np.float16)):
        m = VGG.from_h5(backend=name, dtype=dt)
        obj = Objective(m, preprocess(c, xp=name), preprocess(s, xp=name), weights_mode="calibrated")
        j, g = obj.value_and_grad(backend.to_device(x, name))
        J[name, np.dtype(dt).name] = float(j), to_host(g).astype(np.float64).ravel()
    j32, g32 = J["cupy", "float32"]
    j16, g16 = J["cupy", "float16"]
    assert abs(j16 - j32) / j32 < 1e-3
    assert g16 @ g32 / np.linalg.norm(g16) / np.linalg.norm(g32) > 0.999
    assert abs(J["numpy", "float16"][0] - j16) / j32 < 1e-3     # the emulation predicts the device


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_no_host_transfer_in_the_fp16_loop(cp, monkeypatch, optimizer):
    """The fp16 run's loop (seed scaling on the device included) copies nothing to the host."""
    model = tiny_vgg(backend="cupy", dtype=np.float16, widths=(8, 64, 64, 64, 64))
    content, style = _images(np.random.default_rng(9))
    hits, steps, _, result = _loop_trapped(cp, monkeypatch, optimizer, lambda: stylize(
        content, style, model=model, iterations=6, optimizer=optimizer, log_every=0, tol=None, precision="fp16"))
    assert hits == [] and steps == 6
    assert np.all(np.isfinite(result.history["J"]))


def test_im2col_kernel_copies_float16_bit_for_bit(cp):
    rng = np.random.default_rng(13)
    for shape, (kh, kw), stride, pad in CONV_CASES[:6]:
        x = rng.standard_normal(shape).astype(np.float16)
        got = to_host(ck.im2col(cp.asarray(x), kh, kw, stride, pad))
        np.testing.assert_array_equal(got.view(np.uint16), conv.im2col(x, kh, kw, stride, pad).view(np.uint16))

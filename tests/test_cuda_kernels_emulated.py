"""The CUDA kernel sources of numpynst.layers.fast.cuda_kernels, run on the CPU: no GPU needed.

A kernel body is plain C++ apart from ``__global__``, ``__restrict__`` and the built-in
``blockIdx``/``blockDim``/``threadIdx``/``gridDim``. A ten-line shim defines those, a generated
driver runs every (block, thread) of the launch one after another, and g++ compiles the exact
source string the GPU would get. The wrappers in cuda_kernels.py run unchanged on NumPy arrays
through a stand-in for the ``cupy`` module, so argument order, index-type choice, chunk bands and
launch sizes are exercised too. Results must equal the NumPy twins in numpynst.layers.

Kernels that cooperate through shared memory (``__syncthreads``: the implicit-GEMM convolution)
run each thread of a block as a fiber (``ucontext``): a thread runs until its next barrier, and the
barrier opens when every thread of the block has reached it; ``__shared__`` becomes ``static``
(one copy, as one block's shared memory, since blocks run one after another). Within each barrier
interval the threads run one after another, in ascending order in one interval and descending in the
next, so a missing barrier (a thread reading a shared slot another has not written yet, or one
overwriting a slot another has not read yet) gives wrong numbers here; a barrier that some threads of
a block skip is reported as an error.

What this cannot see: GPU-only behaviour (true concurrency between threads — none of these kernels
has two threads writing one address —, memory coalescing, NVRTC itself). tests/test_gpu.py checks
the same properties on a real device.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import itertools
import re
import shutil
import subprocess

import numpy as np
import pytest

from numpynst.layers import conv, pooling
from numpynst.layers.fast import cuda_kernels as ck
from numpynst.layers.fast import im2col as fast_im2col

CXX = shutil.which("g++") or shutil.which("c++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++/c++) to emulate the CUDA kernels")

SHIM = """
struct numpynst_dim3 { unsigned x; };
static numpynst_dim3 blockIdx, blockDim, threadIdx, gridDim;
#define __global__
#define __restrict__ __restrict
"""


class _Dev(np.ndarray):
    """A NumPy array posing as a device array: ``with a.device:`` is a no-op."""

    @property
    def device(self):
        return contextlib.nullcontext()


def dev(a):
    return np.ascontiguousarray(a).view(_Dev)


# Barriers: every thread of a block is a fiber; __syncthreads() parks it and returns to the scheduler.
FIBER_SHIM = """
#include <ucontext.h>
#include <vector>
#define __shared__ static
static ucontext_t numpynst_sched;
static std::vector<ucontext_t> numpynst_ctx;
static std::vector<int> numpynst_state;        // 0: runnable, 1: at a barrier, 2: finished
static int numpynst_cur;
static void __syncthreads() {
  numpynst_state[numpynst_cur] = 1;
  swapcontext(&numpynst_ctx[numpynst_cur], &numpynst_sched);
}
"""


def _plain_driver(name: str, params: list[str], names: list[str]) -> str:
    return (f'extern "C" int drive(unsigned g, unsigned b, {", ".join(params)}) {{\n'
            f'  gridDim.x = g; blockDim.x = b;\n'
            f'  for (unsigned i = 0; i < g; ++i) for (unsigned t = 0; t < b; ++t) {{\n'
            f'    blockIdx.x = i; threadIdx.x = t; {name}({", ".join(names)}); }}\n  return 0;\n}}\n')


def _fiber_driver(name: str, params: list[str], names: list[str]) -> str:
    """Run each block's threads as fibers; returns 1 if some threads finished while others wait at a
    barrier (a barrier not reached by all: undefined on a GPU)."""
    globals_ = "".join("static " + re.sub(r"(\w+)$", r"g_\1", p.replace("__restrict__", "")) + ";\n"
                       for p in params)
    return (globals_ +
            f'static void numpynst_fiber() {{ {name}({", ".join("g_" + n for n in names)}); '
            f'numpynst_state[numpynst_cur] = 2; }}\n'
            f'extern "C" int drive(unsigned g, unsigned b, {", ".join(params)}) {{\n'
            + "".join(f"  g_{n} = {n};\n" for n in names) +
            '  gridDim.x = g; blockDim.x = b;\n'
            '  numpynst_ctx.assign(b, ucontext_t()); numpynst_state.assign(b, 0);\n'
            '  std::vector<std::vector<char>> stacks(b, std::vector<char>(1 << 16));\n'
            '  for (unsigned i = 0; i < g; ++i) {\n'
            '    blockIdx.x = i;\n'
            '    for (unsigned t = 0; t < b; ++t) {\n'
            '      getcontext(&numpynst_ctx[t]);\n'
            '      numpynst_ctx[t].uc_stack.ss_sp = stacks[t].data();\n'
            '      numpynst_ctx[t].uc_stack.ss_size = stacks[t].size();\n'
            '      numpynst_ctx[t].uc_link = &numpynst_sched;\n'
            '      makecontext(&numpynst_ctx[t], numpynst_fiber, 0);\n'
            '      numpynst_state[t] = 0;\n'
            '    }\n'
            '    for (int round = 0;; ++round) {\n'
            '      for (unsigned s = 0; s < b; ++s) {\n'
            '        unsigned t = round % 2 == 0 ? s : b - 1 - s;   // alternate the order\n'
            '        if (numpynst_state[t] == 2) continue;\n'
            '        numpynst_state[t] = 0; numpynst_cur = (int)t; threadIdx.x = t;\n'
            '        swapcontext(&numpynst_sched, &numpynst_ctx[t]);\n'
            '      }\n'
            '      unsigned done = 0;\n'
            '      for (unsigned t = 0; t < b; ++t) done += numpynst_state[t] == 2;\n'
            '      if (done == b) break;\n'
            '      if (done > 0) return 1;\n'
            '    }\n'
            '  }\n'
            '  return 0;\n'
            '}\n')


class _EmulatedKernel:
    """Stand-in for cupy.RawKernel: compiles ``code`` with g++ and runs the whole grid in a loop
    (threads that meet at ``__syncthreads`` as fibers)."""

    build_dir = None
    _built: dict[str, ctypes.CDLL] = {}

    def __init__(self, code: str, name: str):
        params = [p.strip() for p in
                  re.search(r"void\s+%s\((.*?)\)\s*\{" % name, code, re.S).group(1).split(",")]
        names = [re.split(r"[\s*]+", p)[-1] for p in params]
        if "__syncthreads" in code:
            src = SHIM + FIBER_SHIM + code + _fiber_driver(name, params, names)
        else:
            src = SHIM + code + _plain_driver(name, params, names)
        key = hashlib.sha1(src.encode()).hexdigest()[:16]
        if key not in self._built:
            cpp, so = self.build_dir / f"{key}.cpp", self.build_dir / f"{key}.so"
            cpp.write_text(src)
            subprocess.run([CXX, "-O1", "-shared", "-fPIC", "-Wall", "-Werror", "-o", str(so), str(cpp)],
                           check=True, capture_output=True, text=True)
            self._built[key] = ctypes.CDLL(str(so))
        self.fn = self._built[key].drive

    def __call__(self, grid, block, args):
        conv_ = {np.int32: ctypes.c_int, np.int64: ctypes.c_longlong}
        cargs = [ctypes.c_uint(grid[0]), ctypes.c_uint(block[0])]
        for a in args:
            if isinstance(a, np.ndarray):
                assert a.flags.c_contiguous, "a kernel got a non-contiguous array"
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            else:
                cargs.append(conv_[type(a)](int(a)))
        assert self.fn(*cargs) == 0, "a __syncthreads() was not reached by every thread of a block"


class _FakeCupy:
    uint8 = np.uint8
    RawKernel = _EmulatedKernel

    @staticmethod
    def empty(shape, dtype):
        return dev(np.full(shape, 99, dtype=dtype))      # not zeros: every element must be written

    @staticmethod
    def ascontiguousarray(a):
        return dev(a)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cuda_emulated")


@pytest.fixture(params=["int32", "int64", "grid-stride"])
def emulated(request, monkeypatch, build_dir):
    """cuda_kernels wired to the emulator; params: index type, and a tiny grid where each thread loops."""
    monkeypatch.setattr(_EmulatedKernel, "build_dir", build_dir)
    monkeypatch.setattr(ck, "_cupy", lambda *arrays, what, copy_only=False: _check_dtypes(arrays, copy_only))
    monkeypatch.setattr(ck, "is_device_array", lambda a: isinstance(a, np.ndarray))
    monkeypatch.setattr(ck, "_raw_kernels", {})
    if request.param == "int64":
        monkeypatch.setattr(ck, "_INT32_LIMIT", -1)
    if request.param == "grid-stride":
        monkeypatch.setattr(ck, "MAX_BLOCKS", 2)
        monkeypatch.setattr(ck, "THREADS", 3)
    return request.param


def _check_dtypes(arrays, copy_only=False):
    for a in arrays:
        if a.dtype not in (ck.COPY_DTYPES if copy_only else ck.DTYPES):
            raise TypeError(a.dtype)
    return _FakeCupy


CONV_CASES = [(s, k, st, p) for s, k, st, p in itertools.product(
    [(1, 7, 5, 3), (2, 6, 9, 2)], [(3, 3), (1, 1), (2, 3)], [1, 2], [0, 1])]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_emulated_im2col_col2im_equal_numpy(emulated, dtype):
    rng = np.random.default_rng(0)
    for shape, (kh, kw), stride, pad in CONV_CASES:
        x = rng.standard_normal(shape).astype(dtype)
        cols = ck.im2col(dev(x), kh, kw, stride, pad)
        np.testing.assert_array_equal(cols, conv.im2col(x, kh, kw, stride, pad))
        c = rng.standard_normal(cols.shape).astype(dtype)
        np.testing.assert_array_equal(ck.col2im(dev(c), shape, kh, kw, stride, pad),
                                      conv.col2im(c, shape, kh, kw, stride, pad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_emulated_row_chunks_equal_numpy(emulated, dtype):
    rng = np.random.default_rng(1)
    for (n, h, w, c), (kh, kw), stride, pad in CONV_CASES:
        ph, pw = pad, 1 - pad
        ho, wo = (h + 2 * ph - kh) // stride + 1, (w + 2 * pw - kw) // stride + 1
        x = rng.standard_normal((n, h, w, c)).astype(dtype)
        for i0, i1 in [(0, ho), (0, 1), (ho // 2, ho)]:
            if i1 <= i0:
                continue
            got = dev(np.full((n, i1 - i0, wo, kh, kw, c), 7, dtype))
            want = np.empty((n, i1 - i0, wo, kh, kw, c), dtype)
            ck.im2col_rows(dev(x), got, i0, i1, stride, ph, pw)
            fast_im2col.im2col_rows(x, want, i0, i1, stride, ph, pw)
            np.testing.assert_array_equal(got, want)
        ho, wo = conv.conv_output_size(h, kh, stride, pad), conv.conv_output_size(w, kw, stride, pad)
        cols = rng.standard_normal((n, ho, wo, kh, kw, c)).astype(dtype)
        want = conv.col2im(cols.reshape(n * ho * wo, -1), (n, h, w, c), kh, kw, stride, pad)
        for rows in (1, 2):
            dx = dev(np.zeros((n, h, w, c), dtype))
            for i0 in range(0, ho, rows):
                i1 = min(ho, i0 + rows)
                ck.col2im_rows_add(dev(cols[:, i0:i1]), dx, i0, i1, stride, pad)
            tol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(dx, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_emulated_maxpool_equals_numpy_with_ties_and_floor_mode(emulated, dtype):
    rng = np.random.default_rng(2)
    for shape, size, stride in [((2, 7, 9, 2), 2, 2), ((1, 7, 8, 3), 3, 2), ((1, 5, 6, 2), 2, 1),
                                ((1, 9, 9, 1), 3, 3), ((2, 4, 5, 2), 1, 1)]:
        for x in (rng.standard_normal(shape), rng.integers(0, 3, size=shape)):      # distinct / many ties
            x = x.astype(dtype)
            out, argmax = ck.maxpool_forward(dev(x), size, stride)
            want, cache = pooling.maxpool_forward(x, size, stride)
            np.testing.assert_array_equal(out, want)
            np.testing.assert_array_equal(argmax, cache.argmax)
            dout = rng.standard_normal(want.shape).astype(dtype)
            np.testing.assert_array_equal(ck.maxpool_backward(dev(dout), argmax, shape, size, stride),
                                          pooling.maxpool_backward(dout, cache))


def test_emulated_maxpool_nan_rule_matches_numpy(emulated):
    """A NaN first in its window stays the maximum; a later NaN never takes over (as ``v > out``)."""
    x = np.array([np.nan, 1, 2, np.nan, 5, np.nan, 0, 3], dtype=np.float64).reshape(1, 2, 4, 1)
    out, argmax = ck.maxpool_forward(dev(x), 2, 2)
    want, cache = pooling.maxpool_forward(x, 2, 2)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(argmax, cache.argmax)


def test_wrappers_refuse_buffers_that_do_not_fit(emulated):
    """Shape checks stand between a wrong call and an out-of-bounds write on the device."""
    x = dev(np.zeros((1, 5, 5, 2)))
    with pytest.raises(ValueError, match="does not fit"):
        ck.im2col_rows(x, dev(np.zeros((1, 2, 5, 3, 3, 1))), 0, 2, 1, 1, 1)     # C mismatch
    with pytest.raises(ValueError, match="does not fit"):
        ck.col2im_rows_add(dev(np.zeros((1, 2, 5, 3, 3, 2))), x, 0, 3, 1, 1)    # 3 rows claimed, 2 given
    with pytest.raises(ValueError, match="do not match"):
        ck.maxpool_backward(dev(np.zeros((1, 2, 2, 2))), dev(np.zeros((1, 2, 2, 2), np.uint8)),
                            (1, 5, 5, 2), 2, 1)


# ------------------------------------------------------------------------------ implicit-GEMM convolution
IGEMM_CASES = [  # (x shape, F, kernel, stride, pad): several 128-row tiles, ragged channel tiles, K % 8 != 0
    ((2, 9, 10, 3), 70, (3, 3), 1, 1),
    ((1, 12, 13, 8), 130, (3, 3), 1, 1),
    ((2, 7, 9, 5), 6, (2, 3), 2, 0),
    ((1, 6, 5, 4), 9, (1, 1), 1, 0),
    ((1, 8, 8, 2), 3, (3, 3), 2, 1),
]


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_emulated_implicit_gemm_forward_equals_the_naive_twin(emulated, dtype):
    """conv_implicit against conv2d_forward_naive (bias), and with relu against max(naive, 0)."""
    rng = np.random.default_rng(3)
    for shape, f, (kh, kw), stride, pad in IGEMM_CASES:
        x = rng.standard_normal(shape).astype(dtype)
        w = rng.standard_normal((kh, kw, shape[3], f)).astype(dtype)
        b = rng.standard_normal(f).astype(dtype)
        want, _ = conv.conv2d_forward_naive(x, w, b, stride, pad)
        np.testing.assert_allclose(ck.conv_implicit(dev(x), dev(w), dev(b), stride, pad, pad), want, **_tol(dtype))
        got = ck.conv_implicit(dev(x), dev(w), None, stride, pad, pad, relu=True)
        np.testing.assert_allclose(got, np.maximum(want - b, 0), **_tol(dtype))


def test_emulated_implicit_gemm_uneven_padding_equals_im2col(emulated):
    """Rows and columns padded differently (the flipped dx of a 2x3 kernel needs it): as conv_im2col."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 7, 8, 3))
    w = rng.standard_normal((2, 3, 3, 5))
    np.testing.assert_allclose(ck.conv_implicit(dev(x), dev(w), None, 1, 1, 2),
                               fast_im2col.conv_im2col(x, w, None, 1, 1, 2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_emulated_implicit_gemm_dx_equals_the_naive_twin(emulated, dtype):
    """conv_implicit_dx (the flipped kernel) against conv2d_backward_naive's dx (stride 1, pad < K)."""
    rng = np.random.default_rng(5)
    for shape, f, (kh, kw), pad in [((2, 9, 10, 3), 70, (3, 3), 1), ((1, 12, 11, 130), 8, (3, 3), 1),
                                    ((1, 6, 7, 4), 5, (3, 3), 0), ((1, 5, 6, 3), 4, (1, 1), 0)]:
        x = rng.standard_normal(shape).astype(dtype)
        w = rng.standard_normal((kh, kw, shape[3], f)).astype(dtype)
        out, cache = conv.conv2d_forward_naive(x, w, np.zeros(f, dtype), 1, pad)
        dout = rng.standard_normal(out.shape).astype(dtype)
        want = conv.conv2d_backward_naive(dout, cache)[0]
        np.testing.assert_allclose(ck.conv_implicit_dx(dev(dout), dev(w), pad), want, **_tol(dtype))


def test_emulator_catches_a_missing_barrier(emulated, monkeypatch):
    """Without the barrier that ends each step, a thread overwrites shared slots the others have not
    multiplied yet: the emulation must then disagree with the twin (so the tests above can fail)."""
    src = ck._SOURCES["numpynst_conv_igemm"]
    last = src.rindex("__syncthreads();")
    monkeypatch.setitem(ck._SOURCES, "numpynst_conv_igemm", src[:last] + ";" + src[last + len("__syncthreads();"):])
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((1, 9, 10, 8)), rng.standard_normal((3, 3, 8, 16))
    want = conv.conv2d_forward_naive(x, w, np.zeros(16), 1, 1)[0]
    assert not np.allclose(ck.conv_implicit(dev(x), dev(w), None, 1, 1, 1), want, rtol=1e-6, atol=1e-6)


def test_implicit_gemm_refuses_weights_that_do_not_fit(emulated):
    with pytest.raises(ValueError, match="do not fit"):
        ck.conv_implicit(dev(np.zeros((1, 5, 5, 2))), dev(np.zeros((3, 3, 3, 4))), None, 1, 1, 1)
    with pytest.raises(ValueError, match="do not fit"):
        ck.conv_implicit(dev(np.zeros((1, 5, 5, 2))), dev(np.zeros((3, 3, 2, 4))), dev(np.zeros(3)), 1, 1, 1)


def test_emulated_im2col_copies_float16_bit_for_bit(emulated):
    """--precision fp16: im2col moves float16 values as 16-bit patterns (negative zeros, infinities and
    the padding's +0 included), exactly as the NumPy twin."""
    rng = np.random.default_rng(7)
    for shape, (kh, kw), stride, pad in CONV_CASES[:6]:
        x = rng.standard_normal(shape).astype(np.float16)
        x.flat[0], x.flat[-1] = -0.0, np.inf
        got = ck.im2col(dev(x), kh, kw, stride, pad)
        want = conv.im2col(x, kh, kw, stride, pad)
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))

"""The CUDA kernel sources of numpynst.layers.fast.cuda_kernels, run on the CPU: no GPU needed.

A kernel body is plain C++ apart from ``__global__``, ``__restrict__`` and the built-in
``blockIdx``/``blockDim``/``threadIdx``/``gridDim``. A ten-line shim defines those, a generated
driver runs every (block, thread) of the launch one after another, and g++ compiles the exact
source string the GPU would get. The wrappers in cuda_kernels.py run unchanged on NumPy arrays
through a stand-in for the ``cupy`` module, so argument order, index-type choice, chunk bands and
launch sizes are exercised too. Results must equal the NumPy twins in numpynst.layers.

What this cannot see: GPU-only behaviour (concurrency between threads — none of these kernels
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


class _EmulatedKernel:
    """Stand-in for cupy.RawKernel: compiles ``code`` with g++ and runs the whole grid in a loop."""

    build_dir = None
    _built: dict[str, ctypes.CDLL] = {}

    def __init__(self, code: str, name: str):
        params = re.search(r"void\s+%s\((.*?)\)\s*\{" % name, code, re.S).group(1).split(",")
        names = [re.split(r"[\s*]+", p.strip())[-1] for p in params]
        driver = (f'extern "C" void drive(unsigned g, unsigned b, {", ".join(p.strip() for p in params)}) {{\n'
                  f'  gridDim.x = g; blockDim.x = b;\n'
                  f'  for (unsigned i = 0; i < g; ++i) for (unsigned t = 0; t < b; ++t) {{\n'
                  f'    blockIdx.x = i; threadIdx.x = t; {name}({", ".join(names)}); }}\n}}\n')
        src = SHIM + code + driver
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
        self.fn(*cargs)


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
    monkeypatch.setattr(ck, "_cupy", lambda *arrays, what: _check_dtypes(arrays))
    monkeypatch.setattr(ck, "is_device_array", lambda a: isinstance(a, np.ndarray))
    monkeypatch.setattr(ck, "_raw_kernels", {})
    if request.param == "int64":
        monkeypatch.setattr(ck, "_INT32_LIMIT", -1)
    if request.param == "grid-stride":
        monkeypatch.setattr(ck, "MAX_BLOCKS", 2)
        monkeypatch.setattr(ck, "THREADS", 3)
    return request.param


def _check_dtypes(arrays):
    for a in arrays:
        if a.dtype not in ck.DTYPES:
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

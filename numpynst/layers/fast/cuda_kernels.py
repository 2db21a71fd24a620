"""Hand-written CUDA kernels for the ops whose array formulation is slow on a GPU.

The array code in :mod:`numpynst.layers.conv`, :mod:`numpynst.layers.fast.im2col`,
:mod:`numpynst.layers.pooling` and :mod:`numpynst.layers.relu` runs unchanged on CuPy, but it is
written as loops over kernel offsets: im2col is ``KH*KW`` strided copies, col2im ``KH*KW`` strided
``+=`` passes over the whole gradient, max-pool backward ``size*size`` passes each with its own
``where``. On a GPU every pass is a kernel launch plus a full read and write of
the array. The kernels here do each op in **one pass**, one thread per output element:

==========================  ===========================================  ==============================
function                    same result as (``numpynst.layers.``...)     one thread per
==========================  ===========================================  ==============================
:func:`im2col`              ``conv.im2col``                              element of ``cols``
:func:`im2col_rows`         ``fast.im2col.im2col_rows`` (one row chunk)  element of ``cols``
:func:`col2im`              ``conv.col2im``                              element of ``dx`` (a gather)
:func:`col2im_rows_add`     one chunk of ``fast.im2col.dx_col2im``       element of the touched rows
:func:`maxpool_forward`     ``pooling.maxpool_forward``                  element of ``out``
:func:`maxpool_backward`    ``pooling.maxpool_backward``                 element of ``dx`` (a gather)
:func:`relu_backward`       ``relu.relu_backward``                       element (ElementwiseKernel)
:func:`conv_implicit`       ``fast.im2col.conv_im2col``                  a 128 x 64/128 tile of ``out``
==========================  ===========================================  ==============================

:func:`conv_implicit` (and :func:`conv_implicit_dx`, the stride-1 ``dx`` as a convolution with the
flipped kernel) is the one kernel here that does arithmetic beyond additions: an implicit GEMM, the
convolution as ``im2col(x) @ w2d`` with the column matrix never written to memory. Its sums run in
another order than cuBLAS's, so it equals its twin up to rounding, not bit for bit. It is not the
default: :mod:`numpynst.layers.fast.dispatch` measures it against im2col + cuBLAS per layer shape on
the device and keeps the faster.

Textbook twins: these are speed only. The array versions above stay the readable definition and
the default on NumPy; ``tests/test_gpu.py`` checks on a GPU that both agree, and
``tests/test_cuda_kernels_emulated.py`` runs these very kernel sources on the CPU (compiled by g++
behind a small shim) against the same twins.

**Gathers, not scatters.** col2im and max-pool backward are naturally scatters (each ``cols`` / ``dout``
entry adds into an input position, and overlapping windows collide). Here each *destination*
element instead loops over the few sources that reach it and sums them itself: no atomics, no two
threads writing one address, and each sum is taken in the order the array twin adds the same
terms. The only arithmetic is those additions, so results are deterministic and bitwise equal to
the twins' (given the same ``cols``/``dout``).

**Same rules as the twins.** Max pooling is floor mode (rows/columns past the last full window get
zero gradient) and the first maximum in row-major window order wins a tie; ReLU's derivative at 0 is
0. Supported dtypes: float32 and float64; im2col also float16 (``--precision fp16``), copied as 16-bit
patterns. Every array is made C-contiguous first (a no-op when it is).

**Lazy, cached compilation.** Nothing touches CuPy at import. A kernel's source is compiled by
NVRTC on its first launch for each ``(dtype, index type)`` pair and then kept (in this process,
and in CuPy's on-disk kernel cache across processes). Index arithmetic is 32-bit when every array
involved has fewer than ~2^31 elements (fast on GPUs), 64-bit otherwise (``I`` in the sources).

CuPy is obtained through :mod:`numpynst.backend` only; this module imports no layer module (the
layers import it), only :mod:`numpynst.backend` and :mod:`numpynst.layers.geometry`. Set
``NUMPYNST_CUDA_KERNELS=0`` in the environment (or use :func:`disabled`) to run the array
formulations on CuPy instead, e.g. to compare or benchmark them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator

import numpy as np

from ...backend import cupy_available, get_xp, is_device_array
from ..geometry import output_size

Array = Any

THREADS = 256               # threads per block
MAX_BLOCKS = 2 ** 16        # grid-stride loops cover the rest; keeps e + stride far from overflow
# 32-bit indices when every index fits with room for one grid stride on top
_INT32_LIMIT = 2 ** 31 - 1 - THREADS * MAX_BLOCKS
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# im2col only copies: float16 arrays (``--precision fp16``) go through it as 16-bit patterns
COPY_DTYPES = DTYPES + (np.dtype(np.float16),)

# ----------------------------------------------------------------------------------------------
# Kernel sources. Each is compiled with "typedef <float|double> T; typedef <int|long long> I;"
# in front. Every kernel is a grid-stride loop over a flat element index e in memory order of the
# array it writes, so consecutive threads write consecutive addresses (coalesced stores) and, since
# channels are the fastest axis everywhere (NHWC), read consecutive addresses too.
# ----------------------------------------------------------------------------------------------

_IM2COL = r"""
// cols (N, R, Wo, KH, KW, C): the receptive fields of output rows i0 .. i0+R-1.
// Thread e <-> cols element (n, r, j, p, q, c) = the unravelled e.
// It copies x[n, y, z, c] with y = (i0 + r)*stride + p - ph, z = j*stride + q - pw, or writes 0
// where (y, z) falls in the zero padding.
extern "C" __global__ void numpynst_im2col(
        const T* __restrict__ x, T* __restrict__ cols,
        I N, I H, I W, I C, I KH, I KW, I stride, I ph, I pw, I i0, I R, I Wo) {
    I total = N * R * Wo * KH * KW * C;
    for (I e = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; e < total; e += (I)blockDim.x * (I)gridDim.x) {
        I t = e;
        I c = t % C;  t /= C;
        I q = t % KW; t /= KW;
        I p = t % KH; t /= KH;
        I j = t % Wo; t /= Wo;
        I r = t % R;  t /= R;
        I n = t;
        I y = (i0 + r) * stride + p - ph;
        I z = j * stride + q - pw;
        bool inside = y >= 0 && y < H && z >= 0 && z < W;
        cols[e] = inside ? x[((n * H + y) * W + z) * C + c] : (T)0;
    }
}
"""

_COL2IM = r"""
// Adjoint of numpynst_im2col for cols (N, R, Wo, KH, KW, C) holding output rows i0 .. i0+R-1:
// dx[n, y, z, c] (+)= sum of the cols entries that im2col copied from x[n, y, z, c].
// Thread e <-> dx element (n, y0 + b, z, c) = the unravelled e over the band (N, Hb, W, C) of rows
// y0 .. y0+Hb-1 (the caller passes the rows this chunk can reach).
// Kernel row p reads y from output row i = (y + ph - p) / stride when that divides exactly and
// i0 <= i < i0+R; likewise q and j < Wo for columns. Terms are added for p, then q, ascending: the
// order of the array twins' "for p: for q: dx[slice] += ..." loops, so the sums are the same.
extern "C" __global__ void numpynst_col2im(
        const T* __restrict__ cols, T* __restrict__ dx,
        I N, I H, I W, I C, I KH, I KW, I stride, I ph, I pw, I i0, I R, I Wo,
        I y0, I Hb, int accumulate) {
    I total = N * Hb * W * C;
    for (I e = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; e < total; e += (I)blockDim.x * (I)gridDim.x) {
        I t = e;
        I c = t % C;  t /= C;
        I z = t % W;  t /= W;
        I y = y0 + t % Hb; t /= Hb;
        I n = t;
        I at = ((n * H + y) * W + z) * C + c;
        T acc = accumulate ? dx[at] : (T)0;
        for (I p = 0; p < KH; ++p) {
            I ys = y + ph - p;                     // = i * stride if output row i reads y at p
            if (ys < 0 || ys % stride != 0) continue;
            I r = ys / stride - i0;
            if (r < 0 || r >= R) continue;
            for (I q = 0; q < KW; ++q) {
                I zs = z + pw - q;
                if (zs < 0 || zs % stride != 0) continue;
                I j = zs / stride;
                if (j >= Wo) continue;
                acc += cols[((((n * R + r) * Wo + j) * KH + p) * KW + q) * C + c];
            }
        }
        dx[at] = acc;
    }
}
"""

_MAXPOOL_FWD = r"""
// Thread e <-> out element (n, i, j, c) = the unravelled e over (N, Ho, Wo, C).
// Scans the window x[n, i*stride + p, j*stride + q, c] in offset order k = p*size + q and lets only
// a strictly greater value take over: the first maximum wins ties (and a NaN never takes over, as
// in the array twin's "v > out" update). argmax[e] = k of the winner.
extern "C" __global__ void numpynst_maxpool_fwd(
        const T* __restrict__ x, T* __restrict__ out, unsigned char* __restrict__ argmax,
        I N, I H, I W, I C, I size, I stride, I Ho, I Wo) {
    I total = N * Ho * Wo * C;
    for (I e = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; e < total; e += (I)blockDim.x * (I)gridDim.x) {
        I t = e;
        I c = t % C;  t /= C;
        I j = t % Wo; t /= Wo;
        I i = t % Ho; t /= Ho;
        I n = t;
        const T* corner = x + ((n * H + i * stride) * W + j * stride) * C + c;   // window entry (0, 0)
        T best = corner[0];
        int arg = 0;
        for (int k = 1; k < size * size; ++k) {
            T v = corner[((I)(k / size) * W + (I)(k % size)) * C];
            if (v > best) { best = v; arg = k; }
        }
        out[e] = best;
        argmax[e] = (unsigned char)arg;
    }
}
"""

_MAXPOOL_BWD = r"""
// Thread e <-> dx element (n, y, z, c) = the unravelled e over (N, H, W, C).
// The windows holding row y are i = ceil((y - size + 1) / stride) .. floor(y / stride), clipped to
// [0, Ho) (empty for the rows floor mode drops); likewise j for column z. The element receives
// dout[n, i, j, c] from each such window whose recorded argmax is its own offset
// k = (y - i*stride)*size + (z - j*stride). Windows are visited by decreasing i, then decreasing j,
// i.e. increasing k: the order in which the array twin adds them.
extern "C" __global__ void numpynst_maxpool_bwd(
        const T* __restrict__ dout, const unsigned char* __restrict__ argmax, T* __restrict__ dx,
        I N, I H, I W, I C, I size, I stride, I Ho, I Wo) {
    I total = N * H * W * C;
    for (I e = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; e < total; e += (I)blockDim.x * (I)gridDim.x) {
        I t = e;
        I c = t % C; t /= C;
        I z = t % W; t /= W;
        I y = t % H; t /= H;
        I n = t;
        I i_lo = y < size ? 0 : (y - size) / stride + 1;
        I i_hi = y / stride < Ho - 1 ? y / stride : Ho - 1;
        I j_lo = z < size ? 0 : (z - size) / stride + 1;
        I j_hi = z / stride < Wo - 1 ? z / stride : Wo - 1;
        T acc = (T)0;
        for (I i = i_hi; i >= i_lo; --i) {
            for (I j = j_hi; j >= j_lo; --j) {
                I o = ((n * Ho + i) * Wo + j) * C + c;
                if ((I)argmax[o] == (y - i * stride) * size + (z - j * stride)) acc += dout[o];
            }
        }
        dx[e] = acc;
    }
}
"""

_CONV_IGEMM = r"""
// Implicit-GEMM convolution: out (M = N*Ho*Wo, F) = A (M, K) @ Wm (K, F) [+ bias] [then max(., 0)],
// with A = im2col(x) (K = KH*KW*C, column k = (p*KW + q)*C + c) never written to memory: each tile
// of A is gathered from x straight into shared memory, with 0 where the field overhangs the padding.
//
// Blocking. A block of 256 threads owns a BM x BN tile of out (BM = 128 rows = output pixels,
// BN = 16*TN columns = output channels) and walks K in steps of BK = 8: per step it stages the
// BM x BK slice of A (transposed: As[k][m]) and the BK x BN slice of Wm (Bs[k][f]) in shared
// memory, and thread (ty, tx) = (t / 16, t % 16) adds their products into its TM x TN = 8 x TN
// accumulators: rows ty*8 .. ty*8+7, columns tx*TN .. tx*TN+TN-1 of the tile. While one step is
// multiplied, the next step's slices are already being read from global memory into registers
// (ra, rb); they go to shared memory after the step (two __syncthreads per step).
// Loads. Thread t loads column ka = t % 8 of the A slice for rows ra0 + 32u (u < 4): 8 neighbouring
// threads read 8 consecutive columns k of one row, i.e. 8 consecutive channels of one pixel when
// they share a kernel offset (coalesced). Its k is the same for its 4 rows, so k -> (p, q, c) is
// decoded once per step; each row's image n and field corner (y0, z0) once per tile.
// Tiles are visited by a grid-stride loop over tile indices (every thread of a block takes the
// same trip count, so the barriers inside are reached by all of them).
// The sum over k is taken in ascending k per accumulator, in the accumulator type T.
#define BM 128
#define BK 8
#define TM 8
#define AU (BM * BK / 256)
#define BU (BK * BN / 256)
extern "C" __global__ void numpynst_conv_igemm(
        const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ out,
        I N, I H, I W, I C, I KH, I KW, I F, I stride, I ph, I pw, I Ho, I Wo, int has_bias, int relu) {
    __shared__ T As[BK][BM + 4];            // + 4: the 8 columns a warp stores fall in distinct banks
    __shared__ T Bs[BK][BN];
    const int t = (int)threadIdx.x;
    const int tx = t % 16, ty = t / 16;
    const int ka = t % BK, ra0 = t / BK;
    const I M = N * Ho * Wo, K = KH * KW * C;
    const I tilesN = (F + BN - 1) / BN;
    const I tiles = ((M + BM - 1) / BM) * tilesN;
    for (I tile = (I)blockIdx.x; tile < tiles; tile += (I)gridDim.x) {
        const I m0 = (tile / tilesN) * BM, f0 = (tile % tilesN) * BN;
        I base[AU], y0[AU], z0[AU];
        bool live[AU];
        for (int u = 0; u < AU; ++u) {
            I m = m0 + ra0 + 32 * u;
            live[u] = m < M;
            I j = m % Wo, i = (m / Wo) % Ho, n = m / (Wo * Ho);
            y0[u] = i * stride - ph;
            z0[u] = j * stride - pw;
            base[u] = ((n * H + y0[u]) * W + z0[u]) * C;          // x offset of field entry (0, 0, 0)
        }
        T acc[TM][TN];
        for (int i = 0; i < TM; ++i)
            for (int j = 0; j < TN; ++j) acc[i][j] = (T)0;
        T rga[AU], rgb[BU];
        // this thread's share of the A and W slices of the step starting at column k0, into registers
        auto load = [&](I k0) {
            I k = k0 + ka;
            I c = k % C, q = (k / C) % KW, p = k / (C * KW), off = (p * W + q) * C + c;
            for (int u = 0; u < AU; ++u) {
                I y = y0[u] + p, z = z0[u] + q;
                rga[u] = (live[u] && k < K && y >= 0 && y < H && z >= 0 && z < W) ? x[base[u] + off] : (T)0;
            }
            for (int v = 0; v < BU; ++v) {
                int e = t + 256 * v;
                I kk = k0 + e / BN, f = f0 + e % BN;
                rgb[v] = (kk < K && f < F) ? w[kk * F + f] : (T)0;
            }
        };
        load(0);
        for (I k0 = 0; k0 < K; k0 += BK) {
            for (int u = 0; u < AU; ++u) As[ka][ra0 + 32 * u] = rga[u];
            for (int v = 0; v < BU; ++v) { int e = t + 256 * v; Bs[e / BN][e % BN] = rgb[v]; }
            __syncthreads();
            if (k0 + BK < K) load(k0 + BK);     // prefetch the next step while this one is multiplied
            for (int kk = 0; kk < BK; ++kk) {
                T a[TM], b[TN];
                for (int i = 0; i < TM; ++i) a[i] = As[kk][ty * TM + i];
                for (int j = 0; j < TN; ++j) b[j] = Bs[kk][tx * TN + j];
                for (int i = 0; i < TM; ++i)
                    for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
            }
            __syncthreads();
        }
        for (int i = 0; i < TM; ++i) {
            I m = m0 + ty * TM + i;
            if (m >= M) continue;
            for (int j = 0; j < TN; ++j) {
                I f = f0 + tx * TN + j;
                if (f >= F) continue;
                T v = acc[i][j];
                if (has_bias) v += bias[f];
                if (relu && v < (T)0) v = (T)0;   // as maximum(v, 0): a NaN stays NaN
                out[m * F + f] = v;
            }
        }
    }
}
"""

_SOURCES = {
    "numpynst_im2col": _IM2COL,
    "numpynst_col2im": _COL2IM,
    "numpynst_maxpool_fwd": _MAXPOOL_FWD,
    "numpynst_maxpool_bwd": _MAXPOOL_BWD,
    "numpynst_conv_igemm": _CONV_IGEMM,
}

# dx = dy (= dout) where the forward output y is positive, else 0 (the derivative of max(x, 0) at 0 is 0).
# Exactly the array twin's where(out > 0, dout, 0), in one pass with no boolean mask array.
_RELU_BWD = ("T dy, O y", "T dx", "dx = y > (O)0 ? dy : (T)0", "numpynst_relu_backward")

_C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double",
            np.dtype(np.float16): "unsigned short"}      # copied bit for bit; 0 is +0.0
_I_TYPES = {np.dtype(np.int32): "int", np.dtype(np.int64): "long long"}


def kernel_source(name: str, dtype: Any, index_dtype: Any = np.int32, tn: int = 4) -> str:
    """The CUDA C++ source compiled for kernel ``name`` with element type ``dtype``.

    ``name`` is one of ``numpynst_im2col``, ``numpynst_col2im``, ``numpynst_maxpool_fwd``,
    ``numpynst_maxpool_bwd``, ``numpynst_conv_igemm``; ``index_dtype`` int32 or int64 (the type ``I``
    of every index); ``tn`` (4 or 8): the implicit GEMM's columns per thread (its tile is 16 ``tn``
    output channels wide), ignored by the others.
    """
    head = f"typedef {_C_TYPES[np.dtype(dtype)]} T;\ntypedef {_I_TYPES[np.dtype(index_dtype)]} I;\n"
    if name == "numpynst_conv_igemm":
        head += f"#define TN {int(tn)}\n#define BN (16 * TN)\n"
    return head + _SOURCES[name]


# ----------------------------------------------------------------------------------------------
# Switches
# ----------------------------------------------------------------------------------------------

_state = threading.local()


def _env_enabled() -> bool:
    return os.environ.get("NUMPYNST_CUDA_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


def available() -> bool:
    """True when CuPy with a usable CUDA device is present (the kernels can run)."""
    return cupy_available()[0]


def enabled() -> bool:
    """Whether the layer functions dispatch CuPy arrays to these kernels (default: yes).

    Off when the environment variable ``NUMPYNST_CUDA_KERNELS`` is ``0``/``false``/``no``/``off``,
    or inside :func:`disabled` (per thread).
    """
    flag = getattr(_state, "enabled", None)
    return _env_enabled() if flag is None else flag


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within the block (this thread only), CuPy arrays take the array formulations, not the kernels."""
    old = getattr(_state, "enabled", None)
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = old


def supports(*arrays: Array, copy_only: bool = False) -> bool:
    """True when the layer functions should hand these arrays to a kernel here.

    All must be CuPy arrays of float32/float64 (float16 too with ``copy_only``: for im2col, which
    only copies), the kernels :func:`enabled`, and a GPU :func:`available`. Cheap and import-free
    for NumPy arrays (the first test fails), so the dispatch costs the NumPy path one attribute lookup.
    """
    if not arrays or not all(is_device_array(a) for a in arrays):
        return False
    if not all(a.dtype in (COPY_DTYPES if copy_only else DTYPES) for a in arrays):
        return False
    return enabled() and available()


# ----------------------------------------------------------------------------------------------
# Compilation cache and launching
# ----------------------------------------------------------------------------------------------

_lock = threading.Lock()
_raw_kernels: dict[tuple[str, str, str], Any] = {}
_elementwise: dict[str, Any] = {}


def _cupy(*arrays: Array, what: str, copy_only: bool = False):
    """The array module (CuPy), checking that ``arrays`` are CuPy arrays of a supported float dtype
    (float16 too for a kernel that only copies)."""
    xp = get_xp(*arrays)
    if xp is np:
        raise TypeError(f"cuda_kernels.{what} needs CuPy arrays, got "
                        f"{', '.join(type(a).__name__ for a in arrays)}")
    for a in arrays:
        if a.dtype not in (COPY_DTYPES if copy_only else DTYPES):
            raise TypeError(f"cuda_kernels.{what}: dtype must be float32 or float64"
                            f"{' (or float16)' if copy_only else ''}, got {a.dtype}")
    return xp


def _index_dtype(*sizes: int) -> np.dtype:
    """int32 when every flat index (< the largest array size) fits with a grid stride on top."""
    return np.dtype(np.int32 if max(sizes, default=0) <= _INT32_LIMIT else np.int64)


def raw_kernel(xp, name: str, dtype: Any, index_dtype: Any, tn: int = 4):
    """The ``cupy.RawKernel`` for ``name``; built once per key, compiled by CuPy at first launch."""
    key = (name, np.dtype(dtype).str, np.dtype(index_dtype).str, tn)
    k = _raw_kernels.get(key)
    if k is None:
        with _lock:
            k = _raw_kernels.get(key)
            if k is None:
                k = _raw_kernels[key] = xp.RawKernel(kernel_source(name, dtype, index_dtype, tn), name)
    return k


def _launch(xp, name: str, total: int, dtype: Any, index_dtype: Any, arrays: tuple, ints: tuple,
            extra: tuple = ()) -> None:
    """Launch kernel ``name`` over ``total`` elements: ``(arrays..., ints as I..., extra...)``."""
    if total <= 0:
        return
    blocks = min((total + THREADS - 1) // THREADS, MAX_BLOCKS)
    it = np.dtype(index_dtype).type
    args = tuple(arrays) + tuple(it(v) for v in ints) + tuple(extra)
    with arrays[0].device:
        raw_kernel(xp, name, dtype, index_dtype)((blocks,), (THREADS,), args)


def _relu_kernel(xp):
    k = _elementwise.get("relu")
    if k is None:
        with _lock:
            k = _elementwise.get("relu")
            if k is None:
                k = _elementwise["relu"] = xp.ElementwiseKernel(*_RELU_BWD)
    return k


# ----------------------------------------------------------------------------------------------
# im2col / col2im
# ----------------------------------------------------------------------------------------------

def im2col(x: Array, kh: int, kw: int, stride: int, pad: int) -> Array:
    """``(N, H, W, C) -> cols (N*Ho*Wo, KH*KW*C)``, as :func:`numpynst.layers.conv.im2col` (one kernel)."""
    xp = _cupy(x, what="im2col", copy_only=True)
    n, h, w, c = x.shape
    ho, wo = output_size(h, kh, stride, pad), output_size(w, kw, stride, pad)
    cols = xp.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
    im2col_rows(x, cols, 0, ho, stride, pad, pad)
    return cols.reshape(n * ho * wo, kh * kw * c)


def im2col_rows(x: Array, cols: Array, i0: int, i1: int, stride: int, ph: int, pw: int) -> None:
    """Fill ``cols (N, i1-i0, Wo, KH, KW, C)`` with the receptive fields of output rows ``[i0, i1)``.

    As ``numpynst.layers.fast.im2col.im2col_rows``: zero padding ``ph`` rows / ``pw`` columns on each side,
    ``Wo = (W + 2 pw - KW) // stride + 1``; ``cols`` (C-contiguous, dtype of ``x``) is overwritten
    entirely, padding positions with 0.
    """
    xp = _cupy(x, cols, what="im2col_rows", copy_only=True)
    x = xp.ascontiguousarray(x)
    n, h, w, c = x.shape
    _, r, wo, kh, kw, _ = cols.shape
    if (cols.dtype != x.dtype or not cols.flags.c_contiguous or i1 - i0 != r or i0 < 0
            or tuple(cols.shape) != (n, r, output_size(w, kw, stride, pw), kh, kw, c)):
        raise ValueError(f"im2col_rows: cols {tuple(cols.shape)} {cols.dtype} (contiguous: "
                         f"{cols.flags.c_contiguous}) does not fit x {tuple(x.shape)} {x.dtype}, rows "
                         f"[{i0}, {i1}), stride={stride}, pw={pw}")
    _launch(xp, "numpynst_im2col", cols.size, x.dtype, _index_dtype(x.size, cols.size), (x, cols),
            (n, h, w, c, kh, kw, stride, ph, pw, i0, r, wo))


def col2im(cols: Array, x_shape: tuple[int, int, int, int], kh: int, kw: int, stride: int,
           pad: int) -> Array:
    """Adjoint of :func:`im2col`: ``cols (N*Ho*Wo, KH*KW*C) -> (N, H, W, C)``, as
    :func:`numpynst.layers.conv.col2im`, as a gather (each output element sums its own sources)."""
    xp = _cupy(cols, what="col2im")
    n, h, w, c = (int(s) for s in x_shape)
    ho, wo = output_size(h, kh, stride, pad), output_size(w, kw, stride, pad)
    if tuple(cols.shape) != (n * ho * wo, kh * kw * c):
        raise ValueError(f"col2im: cols.shape={tuple(cols.shape)} does not match x_shape={tuple(x_shape)} "
                         f"with kernel {kh}x{kw}, stride={stride}, pad={pad} (expected "
                         f"{(n * ho * wo, kh * kw * c)})")
    cols6 = xp.ascontiguousarray(cols).reshape(n, ho, wo, kh, kw, c)
    dx = xp.empty((n, h, w, c), dtype=cols.dtype)
    _col2im(xp, cols6, dx, 0, stride, pad, pad, 0, h, accumulate=False)
    return dx


def col2im_rows_add(dcols: Array, dx: Array, i0: int, i1: int, stride: int, pad: int) -> None:
    """``dx += col2im`` of the chunk ``dcols (N, i1-i0, Wo, KH, KW, C)`` for output rows ``[i0, i1)``.

    One chunk of ``numpynst.layers.fast.im2col.dx_col2im``'s loop of strided ``+=``: ``dx`` (N, H, W, C),
    C-contiguous, is updated in place, and only the rows this chunk reaches are touched.
    """
    xp = _cupy(dcols, dx, what="col2im_rows_add")
    n, h, w, c = dx.shape
    _, r, wo, kh, kw, _ = dcols.shape
    if (dcols.dtype != dx.dtype or not dx.flags.c_contiguous or i1 - i0 != r or i0 < 0
            or tuple(dcols.shape) != (n, r, output_size(w, kw, stride, pad), kh, kw, c)):
        raise ValueError(f"col2im_rows_add: dcols {tuple(dcols.shape)} {dcols.dtype} does not fit dx "
                         f"{tuple(dx.shape)} {dx.dtype} (contiguous: {dx.flags.c_contiguous}), rows "
                         f"[{i0}, {i1}), stride={stride}, pad={pad}")
    y0 = max(0, i0 * stride - pad)                       # first row of dx a kernel row can reach
    y1 = min(h, (i1 - 1) * stride + kh - pad)            # one past the last
    _col2im(xp, xp.ascontiguousarray(dcols), dx, i0, stride, pad, pad, y0, y1 - y0, accumulate=True)


def _col2im(xp, cols6: Array, dx: Array, i0: int, stride: int, ph: int, pw: int, y0: int, hb: int,
            accumulate: bool) -> None:
    n, h, w, c = dx.shape
    _, r, wo, kh, kw, _ = cols6.shape
    _launch(xp, "numpynst_col2im", n * max(hb, 0) * w * c, dx.dtype, _index_dtype(dx.size, cols6.size),
            (cols6, dx), (n, h, w, c, kh, kw, stride, ph, pw, i0, r, wo, y0, hb),
            (np.int32(1 if accumulate else 0),))


# ----------------------------------------------------------------------------------------------
# Implicit-GEMM convolution
# ----------------------------------------------------------------------------------------------

IGEMM_THREADS = 256         # fixed by the kernel's tiling (16 x 16 threads, 8 x TN outputs each)
IGEMM_BM = 128              # output pixels per tile


def conv_implicit(x: Array, w: Array, b: Array | None, stride: int, ph: int, pw: int,
                  relu: bool = False) -> Array:
    """``out (N, Ho, Wo, F) = im2col(x) @ w.reshape(KH*KW*C, F) + b`` (``max(., 0)`` with ``relu``)
    without the column matrix: one kernel, tiles of A gathered from ``x`` into shared memory.

    Same result as :func:`numpynst.layers.fast.im2col.conv_im2col` up to the order of the sum over
    ``k`` (rounding): zero padding ``ph`` rows / ``pw`` columns, any stride. ``dx`` of a stride-1
    convolution is this with the flipped kernel (:func:`conv_implicit_dx`); ``dw`` is never needed
    by style transfer and has no kernel here. Tiles are 128 pixels by 128 channels where ``F >= 128``,
    by 64 otherwise (VGG's 64-channel layers fill them exactly).
    """
    xp = _cupy(x, w, what="conv_implicit")
    x, w = xp.ascontiguousarray(x), xp.ascontiguousarray(w)
    n, h, wd, c = x.shape
    kh, kw, c2, f = w.shape
    if c2 != c or w.dtype != x.dtype or stride < 1 or min(ph, pw) < 0 or (b is not None and tuple(b.shape) != (f,)):
        raise ValueError(f"conv_implicit: w {tuple(w.shape)} {w.dtype} / b "
                         f"{None if b is None else tuple(b.shape)} do not fit x {tuple(x.shape)} {x.dtype}, "
                         f"stride={stride}, pad=({ph}, {pw})")
    ho, wo = output_size(h, kh, stride, ph), output_size(wd, kw, stride, pw)
    out = xp.empty((n, ho, wo, f), dtype=x.dtype)
    tn = 8 if f >= 128 else 4
    m = n * ho * wo
    tiles = -(-m // IGEMM_BM) * -(-f // (16 * tn))
    if tiles <= 0:
        return out
    bias = out if b is None else xp.ascontiguousarray(b.astype(x.dtype, copy=False))   # not read without a bias
    idx = _index_dtype(x.size, out.size, w.size)
    it = np.dtype(idx).type
    args = (x, w, bias, out) + tuple(it(v) for v in (n, h, wd, c, kh, kw, f, stride, ph, pw, ho, wo)) + (
        np.int32(b is not None), np.int32(bool(relu)))
    with x.device:
        raw_kernel(xp, "numpynst_conv_igemm", x.dtype, idx, tn)((min(tiles, MAX_BLOCKS),), (IGEMM_THREADS,), args)
    return out


def conv_implicit_dx(dout: Array, w: Array, pad: int) -> Array:
    """``dx`` of a stride-1 convolution (``pad <= K-1``) by :func:`conv_implicit`: ``dout`` padded by
    ``K-1-pad`` convolved with ``w[::-1, ::-1]``, channel axes swapped (as
    :func:`numpynst.layers.fast.im2col.dx_flipped`)."""
    xp = _cupy(dout, w, what="conv_implicit_dx")
    kh, kw = w.shape[:2]
    w_flip = xp.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))      # (KH, KW, F, C)
    return conv_implicit(dout, w_flip, None, 1, kh - 1 - pad, kw - 1 - pad)


# ----------------------------------------------------------------------------------------------
# Max pooling, ReLU
# ----------------------------------------------------------------------------------------------

def maxpool_forward(x: Array, size: int, stride: int) -> tuple[Array, Array]:
    """``(out (N, Ho, Wo, C), argmax uint8 (N, Ho, Wo, C))`` as :func:`numpynst.layers.pooling.maxpool_forward`.

    Floor mode, first-maximum tie rule; ``argmax`` holds the window offset ``p*size + q``.
    Arguments are assumed validated by the caller (``numpynst.layers.pooling``), except what memory safety needs.
    """
    xp = _cupy(x, what="maxpool_forward")
    if not 1 <= size <= 255 or stride < 1 or x.ndim != 4 or size > min(x.shape[1:3]):
        raise ValueError(f"maxpool_forward: bad size={size}/stride={stride} for x.shape={tuple(x.shape)}")
    x = xp.ascontiguousarray(x)
    n, h, w, c = x.shape
    ho, wo = output_size(h, size, stride), output_size(w, size, stride)
    out = xp.empty((n, ho, wo, c), dtype=x.dtype)
    argmax = xp.empty((n, ho, wo, c), dtype=xp.uint8)
    _launch(xp, "numpynst_maxpool_fwd", out.size, x.dtype, _index_dtype(x.size), (x, out, argmax),
            (n, h, w, c, size, stride, ho, wo))
    return out, argmax


def maxpool_backward(dout: Array, argmax: Array, x_shape: tuple[int, int, int, int], size: int,
                     stride: int) -> Array:
    """``dx (x_shape)``: each ``dout`` entry routed to its window's recorded arg-max, as
    :func:`numpynst.layers.pooling.maxpool_backward`, as a gather (no atomics)."""
    xp = _cupy(dout, what="maxpool_backward")
    n, h, w, c = (int(s) for s in x_shape)
    ho, wo = output_size(h, size, stride), output_size(w, size, stride)
    if (tuple(dout.shape) != (n, ho, wo, c) or tuple(argmax.shape) != (n, ho, wo, c)
            or argmax.dtype != np.uint8 or not is_device_array(argmax)):
        raise ValueError(f"maxpool_backward: dout {tuple(dout.shape)} / argmax {tuple(argmax.shape)} "
                         f"{argmax.dtype} do not match x_shape={tuple(x_shape)}, size={size}, "
                         f"stride={stride}")
    dout = xp.ascontiguousarray(dout)
    argmax = xp.ascontiguousarray(argmax)
    dx = xp.empty((n, h, w, c), dtype=dout.dtype)
    _launch(xp, "numpynst_maxpool_bwd", dx.size, dout.dtype, _index_dtype(dx.size), (dout, argmax, dx),
            (n, h, w, c, size, stride, ho, wo))
    return dx


def relu_backward(dout: Array, out: Array, dx: Array | None = None) -> Array:
    """``dx = dout * (out > 0)`` (0 where ``out <= 0`` or is NaN), as
    :func:`numpynst.layers.relu.relu_backward` given the cached forward output ``out``; written into
    ``dx`` when given (an elementwise kernel: ``dx`` may be ``dout`` itself)."""
    xp = _cupy(dout, out, what="relu_backward")
    if tuple(dout.shape) != tuple(out.shape):
        raise ValueError(f"relu_backward: dout.shape={tuple(dout.shape)} != forward shape {tuple(out.shape)}")
    kernel = _relu_kernel(xp)
    return kernel(dout, out) if dx is None else kernel(dout, out, dx)

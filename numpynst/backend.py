"""Array-module switch: the one place in numpynst that imports CuPy.

Every numerical function in numpynst takes ``xp`` from its input arrays (:func:`get_xp`), so the
same code runs on NumPy arrays on the CPU and on CuPy arrays on a GPU. There is no global backend
setting: the backend is chosen where arrays are created (model weights, images) with
:func:`resolve`, and data crosses between host and device only at the edges of a run with
:func:`to_device` / :func:`to_host`.
"""

from __future__ import annotations

import contextlib
import functools
from types import ModuleType
from typing import Any

import numpy as np

from .errors import BackendError

BACKENDS = ("numpy", "cupy", "auto")
#: Arithmetic of a run (``--precision``): ``fp32`` everything in float32 (the default, any backend);
#: ``tf32`` float32 storage with CuPy's float32 matrix products on TF32 tensor cores (10-bit mantissa
#: products, float32 sums); ``fp16`` the network in float16 storage and products with float32 sums,
#: the losses, the image and the optimiser in float32 (see numpynst.objective, "Mixed precision").
PRECISIONS = ("fp32", "tf32", "fp16")


@functools.lru_cache(maxsize=1)
def _cupy_status() -> tuple[ModuleType | None, str]:
    """Import CuPy once and probe for a usable CUDA device.

    Returns ``(cupy_module, "")`` when usable, else ``(None, reason)``. Cached because probing the
    driver costs ~100 ms and the answer does not change within a process.
    """
    try:
        import cupy  # noqa: PLC0415  (the only CuPy import in the package)
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return None, f"CuPy is not installed or failed to import ({type(exc).__name__}: {exc}); " \
                     "install it with: pip install 'numpynst[gpu]'"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return None, f"CuPy is installed but no CUDA device is usable ({type(exc).__name__}: {exc})"
    if n < 1:
        return None, "CuPy is installed but no CUDA device was found"
    return cupy, ""


def cupy_available() -> tuple[bool, str]:
    """``(True, "")`` if CuPy with a CUDA device can be used, else ``(False, reason)``."""
    mod, reason = _cupy_status()
    return mod is not None, reason


def resolve(name: str | ModuleType = "numpy") -> ModuleType:
    """Turn ``"numpy" | "cupy" | "auto"`` (or an array module) into the array module.

    ``"auto"`` picks CuPy when it and a GPU are usable, NumPy otherwise. Asking for ``"cupy"``
    where it cannot run raises :class:`BackendError` with the reason.
    """
    if isinstance(name, ModuleType):
        if name is np or getattr(name, "__name__", "") == "cupy":
            return name
        raise BackendError(f"backend module {name.__name__!r} is not numpy or cupy")
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise BackendError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    name = name.lower()
    if name == "numpy":
        return np
    mod, reason = _cupy_status()
    if mod is not None:
        return mod
    if name == "auto":
        return np
    raise BackendError(f"backend 'cupy' is unavailable: {reason}")


def get_xp(*arrays: Any) -> ModuleType:
    """Array module of the given arrays: CuPy if any is a CuPy array, else NumPy.

    ``None`` and Python scalars are ignored. Mixing NumPy and CuPy arrays is an error here rather
    than a silent host<->device copy later.
    """
    on_device = [is_device_array(a) for a in arrays if isinstance(a, np.ndarray) or is_device_array(a)]
    if not any(on_device):
        return np
    if not all(on_device):
        raise BackendError("got a mix of NumPy and CuPy arrays; move them to one device with "
                           "numpynst.backend.to_device first")
    import sys  # CuPy is already imported: a CuPy array exists
    return sys.modules["cupy"]


def is_device_array(a: Any) -> bool:
    """True for a CuPy (GPU) array."""
    return type(a).__module__.startswith("cupy")


def to_device(a: Any, xp: ModuleType | str, dtype: Any = None) -> Any:
    """Copy ``a`` to the backend ``xp`` (module or name), optionally casting; no copy if already there."""
    xp = resolve(xp)
    if xp is np:
        return np.asarray(to_host(a), dtype=dtype)
    return xp.asarray(a, dtype=dtype)


def to_host(a: Any) -> np.ndarray:
    """Return ``a`` as a NumPy array (a device->host copy for CuPy arrays; a no-op for NumPy)."""
    if is_device_array(a):
        return a.get()
    return np.asarray(a)


def to_float(a: Any) -> float:
    """A Python float from a 0-d array. On CuPy this synchronizes: call it only for logging."""
    return float(to_host(a))


def backend_name(xp: ModuleType) -> str:
    """``"numpy"`` or ``"cupy"``."""
    return "numpy" if xp is np else "cupy"


def release_cached(xp: ModuleType) -> None:
    """Hand the free blocks CuPy's memory pool keeps cached back to the driver; a no-op on NumPy.

    The pool keeps every freed block for a later request it can serve, and a block serves only
    requests no larger than itself (blocks from separate allocations never merge). Between the scales
    of a coarse-to-fine run the sizes change, so the last scale's blocks would stay reserved beside
    the next scale's: on an H200, an 8192 px scale in 2 tiles after a whole 4096 px scale peaked at
    124.0 GiB (nvidia-smi) where the planner counted 88.6 GiB for it and 38.3 GiB for the 4096 px
    scale. Called where nothing of the last scale is alive but its result; costs one cudaFree per
    cached block, and the next scale's first iteration allocates afresh.
    """
    if backend_name(xp) == "cupy":
        xp.get_default_memory_pool().free_all_blocks()


def _linalg():
    """CuPy's module holding the compute type of its matrix products (``cupy.matmul`` consults it
    at every call)."""
    from cupy._core import _routines_linalg  # noqa: PLC0415 (CuPy is imported: arrays exist)
    return _routines_linalg


_TF32 = 7                   # cupy._core._routines_linalg.COMPUTE_TYPE_TF32 (a cpdef enum of CuPy)


def matmul_precision(xp: ModuleType) -> str:
    """``"tf32"`` while CuPy's float32 matrix products may use TF32 tensor cores, else ``"fp32"``
    (always on NumPy). CuPy reads ``CUPY_TF32=1`` from the environment at its first product, and
    :func:`tf32_matmul` sets it for a block."""
    if backend_name(xp) != "cupy":
        return "fp32"
    lin = _linalg()
    return "tf32" if lin.get_compute_type(np.float32) == getattr(lin, "COMPUTE_TYPE_TF32", _TF32) else "fp32"


@contextlib.contextmanager
def tf32_matmul(xp: ModuleType, on: bool = True):
    """Within the block, CuPy's float32 matrix products run on TF32 tensor cores (``on``) or in
    plain float32 (``on=False``); the previous setting comes back after. A no-op on NumPy.

    This is CuPy's per-dtype compute type (``cupy._core._routines_linalg.set_compute_type``, the
    setting behind its ``CUPY_TF32`` environment variable): cuBLAS then runs float32 GEMMs with
    ``CUBLAS_COMPUTE_32F_FAST_TF32``. Process-wide while it lasts (CuPy keeps one setting per
    dtype), on GPUs of compute capability 8.0 or more (CuPy warns and stays in float32 below).
    """
    if backend_name(xp) != "cupy":
        yield
        return
    lin = _linalg()
    old = lin.get_compute_type(np.float32)
    lin.set_compute_type(np.float32, getattr(lin, "COMPUTE_TYPE_TF32", _TF32) if on
                         else getattr(lin, "COMPUTE_TYPE_DEFAULT", 1))
    try:
        yield
    finally:
        lin.set_compute_type(np.float32, old)

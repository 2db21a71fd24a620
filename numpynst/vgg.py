"""VGG16/VGG19 feature extractor: forward to named layers, backward to the pixels.

Architecture (Simonyan & Zisserman 2014, the convolutional part only — style transfer never uses the
dense "top")::

    block b = n_b x [conv 3x3, pad 1, stride 1 -> ReLU]  then  2x2 pool, stride 2
    VGG16: n = (2, 2, 3, 3, 3)      VGG19: n = (2, 2, 4, 4, 4)
    widths 64, 128, 256, 512, 512 in the ImageNet weights (any widths work here)

Layer names are Keras's: ``block3_conv2`` is the *post-ReLU* output of the second convolution of
block 3 (Keras's Conv2D carries its activation), ``block3_pool`` the output of block 3's pool.

Forward keeps, per layer, what the layer's backward needs (``layers.*`` caches). Backward walks the
layers in reverse from the deepest layer that received a gradient, adding each requested layer's
``dL/da`` as it passes that layer (the total derivative of ``L = sum_l L_l(a_l)``::

    g_l = dL_l/da_l + (d a_{l+1} / d a_l)^T g_{l+1}

) and never forms weight gradients: style transfer optimizes the image, not the network.

Inputs are "Caffe-preprocessed": BGR, 0..255 scale, ImageNet mean subtracted (:func:`preprocess`),
because that is how the original VGG weights were trained.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Iterable, Mapping

import numpy as np

from . import layers
from .backend import get_xp, resolve, to_device, to_host
from .arch import ARCH_BLOCKS, all_layer_names, conv_layer_names  # noqa: F401 (API)
from .errors import OptionError
from .weights import default_weights_path, read_vgg_weights

Array = Any

# Caffe/Keras ImageNet mean, in BGR order (the order of the network's input channels)
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
POOLINGS = ("max", "avg")
DTYPES = (np.float32, np.float64)


def _check_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in [np.dtype(d) for d in DTYPES]:
        raise OptionError(f"dtype must be float32 or float64, got {dt}")
    return dt


class VGG:
    """A VGG16/VGG19 convolutional trunk with weights on one device, in one dtype.

    Build with :meth:`from_h5` (a Keras-layout HDF5 file, by default the shipped VGG19) or
    :meth:`from_params`. Attributes: ``arch``, ``xp`` (numpy or cupy), ``dtype``, ``pooling``,
    ``layer_names`` (all valid output names, network order), ``conv_names``, ``params``
    (``name -> (W (3,3,Cin,Cout), b (Cout,))`` on the device), ``path`` (file or None).
    """

    def __init__(self, arch: str, params: Mapping[str, tuple[Array, Array]], *,
                 backend: str | ModuleType = "numpy", pooling: str = "max", dtype: Any = np.float32,
                 path: Any = None):
        self.arch = arch
        self.conv_names = conv_layer_names(arch)
        self.layer_names = all_layer_names(arch)
        if pooling not in POOLINGS:
            raise OptionError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.pooling = pooling
        self.dtype = _check_dtype(dtype)
        self.xp = resolve(backend)
        self.path = path
        missing = [n for n in self.conv_names if n not in params]
        if missing:
            raise OptionError(f"{arch} params lack layer(s) {', '.join(missing)}")
        self.params: dict[str, tuple[Array, Array]] = {}
        cin = 3
        for name in self.conv_names:
            w, b = params[name]
            if tuple(w.shape[:3]) != (3, 3, cin) or tuple(b.shape) != (w.shape[3],):
                raise OptionError(f"layer {name}: expected W (3, 3, {cin}, C) and b (C,), got W "
                                  f"{tuple(w.shape)} and b {tuple(b.shape)}")
            cin = int(w.shape[3])
            # one host->device copy per layer, here and never again
            wd = self.xp.ascontiguousarray(to_device(w, self.xp, self.dtype))
            bd = to_device(b, self.xp, self.dtype)
            if self.xp is np:
                # Read-only parameters: style transfer never changes them, so numpynst.conv may
                # cache their Winograd transforms (and pick F(4x4,3x3)), which it only does for
                # arrays that cannot change behind its back. Our own copies (to_device hands back
                # the caller's array when nothing needs converting), so theirs stay writable.
                if np.may_share_memory(wd, w):
                    wd = wd.copy()
                if np.may_share_memory(bd, b):
                    bd = bd.copy()
                wd.flags.writeable = bd.flags.writeable = False
            self.params[name] = (wd, bd)
        self._tape: list[tuple[str, str, Any]] = []
        self._out_shapes: dict[str, tuple[int, ...]] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_params(cls, arch: str, params: Mapping[str, tuple[Array, Array]], backend: str = "numpy",
                    pooling: str = "max", dtype: Any = np.float32) -> "VGG":
        """Model from ``{conv name: (W (3,3,Cin,Cout), b (Cout,))}`` (host or device arrays)."""
        return cls(arch, params, backend=backend, pooling=pooling, dtype=dtype)

    @classmethod
    def from_h5(cls, path: Any = None, backend: str = "numpy", pooling: str = "max",
                dtype: Any = np.float32) -> "VGG":
        """Model from a Keras-layout HDF5 file (default: the shipped VGG19, see ``weights/README.md``).

        Raises :class:`~numpynst.errors.WeightsError` for a missing or invalid file.
        """
        w = read_vgg_weights(default_weights_path() if path is None else path)
        return cls(w.arch, w.params, backend=backend, pooling=pooling, dtype=dtype, path=w.path)

    def __repr__(self) -> str:
        widths = [int(self.params[n][0].shape[3]) for n in self.conv_names]
        return (f"VGG(arch={self.arch!r}, pooling={self.pooling!r}, dtype={self.dtype}, "
                f"backend={'numpy' if self.xp is np else 'cupy'}, widths={widths})")

    # ------------------------------------------------------------------ helpers
    def channels(self, name: str) -> int:
        """Number of channels of the output of layer ``name``."""
        self._check_names([name])
        block = name.split("_")[0]
        convs = [n for n in self.conv_names if n.startswith(block + "_")]
        conv = name if name in self.params else convs[-1]   # a pool keeps its block's width
        return int(self.params[conv][0].shape[3])

    def pool_factor(self, names: Iterable[str]) -> int:
        """``2^k``, k the number of pooling layers in front of the deepest of ``names``.

        Pooling drops a remainder row/column (floor mode), and the pixels under it then get no
        gradient from deeper layers: a visible stripe along the bottom/right edge. Images whose
        sides are multiples of this factor have no remainder at any of these layers.
        """
        depth = max(self.layer_names.index(n) for n in self._check_names(names))
        return 2 ** sum(1 for n in self.layer_names[:depth] if n.endswith("_pool"))

    def preprocess(self, rgb: Array) -> Array:
        """:func:`preprocess` onto this model's device and dtype."""
        return preprocess(rgb, dtype=self.dtype, xp=self.xp)

    def _check_names(self, names: Iterable[str]) -> list[str]:
        names = list(names)
        bad = [n for n in names if n not in self.layer_names]
        if bad:
            raise OptionError(f"unknown {self.arch} layer name(s) {', '.join(map(repr, bad))}; valid names: "
                              f"{', '.join(self.layer_names)}")
        return names

    # ------------------------------------------------------------------ forward / backward
    def forward(self, x: Array, outputs: str | Iterable[str], keep_cache: bool = True) -> dict[str, Array]:
        """Run the network as deep as the deepest requested layer.

        Args:
            x: ``(N, H, W, 3)`` preprocessed input on the model's device (cast to the model's dtype).
            outputs: layer names (or one name) whose activations to return.
            keep_cache: keep what :meth:`backward` needs (default). ``False`` saves memory when only
                activations are wanted (e.g. computing style targets); backward is then unavailable.
                Either way the caches of any earlier forward are dropped.
        Returns:
            ``{name: activation (N, H_l, W_l, C_l)}``. The arrays are also held in the cache: do not
            modify them in place before calling :meth:`backward`.
        Raises:
            OptionError: unknown layer name, wrong input shape, or an image too small for the pools.
        """
        names = self._check_names([outputs] if isinstance(outputs, str) else outputs)
        if not names:
            raise OptionError("forward: outputs is empty; give at least one layer name")
        xp = self.xp
        if get_xp(x) is not xp:
            raise OptionError(f"forward: x is a {type(x).__module__} array but the model lives on "
                              f"{'numpy' if xp is np else 'cupy'}; move it with numpynst.backend.to_device")
        if getattr(x, "ndim", None) != 4 or x.shape[3] != 3:
            raise OptionError(f"forward: x must have shape (N, H, W, 3), got {getattr(x, 'shape', None)}")
        depth = max(self.layer_names.index(n) for n in names)
        self._check_size(x.shape[1:3], depth)
        wanted = set(names)
        a = xp.asarray(x, dtype=self.dtype)
        tape: list[tuple[str, str, Any]] = []
        self._tape = []
        self._out_shapes = {}
        out: dict[str, Array] = {}
        for name in self.layer_names[:depth + 1]:
            if name in self.params:
                w, b = self.params[name]
                # conv + ReLU fused: the ReLU is applied as each band of the output is written
                a, conv_cache = layers.conv2d_forward(a, w, b, stride=1, pad=1, relu=True)
                relu_cache = layers.ReluCache(a)
                cache: Any = (conv_cache, relu_cache)
                kind = "conv"
            elif self.pooling == "max":
                a, cache = layers.maxpool_forward(a, 2, 2)
                kind = "maxpool"
            else:
                a, cache = layers.avgpool_forward(a, 2, 2)
                kind = "avgpool"
            if keep_cache:
                tape.append((name, kind, cache))
            if name in wanted:
                out[name] = a
                self._out_shapes[name] = tuple(a.shape)
        if keep_cache:
            self._tape = tape
        return out

    def _check_size(self, hw: tuple[int, int], depth: int) -> None:
        h, w = int(hw[0]), int(hw[1])
        pools = 0
        for name in self.layer_names[:depth + 1]:
            if name.endswith("_pool"):
                pools += 1
                if h < 2 or w < 2:
                    raise OptionError(f"the input ({hw[0]}x{hw[1]} px) is only {h}x{w} at {name}, too "
                                      f"small for a 2x2 pool; reaching {self.layer_names[depth]} needs "
                                      f"at least {2 ** pools} px per side")
                h, w = h // 2, w // 2

    def backward(self, grads: Mapping[str, Array], release: bool = False) -> Array:
        """``dL/dx`` for the last :meth:`forward`, given ``{layer name: dL/d(activation)}``.

        The names must be among the outputs of the last forward and each gradient must have its
        activation's shape. Layers deeper than the deepest given gradient are skipped; weight
        gradients are never computed. Returns ``(N, H, W, 3)`` on the model's device.

        ``release=True`` drops each layer's cache as soon as the backward pass is through it (and
        the tape afterwards, as :meth:`clear` does), so the deep activations are gone by the time
        the big full-resolution gradients of block 1 exist: the peak memory of an iteration is then
        set by block 1, not by block 1 plus everything above it. A second ``backward`` then needs
        a new ``forward``. (Activations the caller still holds, e.g. the dict ``forward`` returned,
        stay alive until the caller drops them.) For the same reason ``release=True`` also takes
        each gradient out of ``grads`` once it has been used: pass a dict you do not need afterwards.
        """
        if not self._tape:
            raise RuntimeError("VGG.backward() needs a forward() with keep_cache=True first")
        if not grads:
            raise OptionError("backward: grads is empty; give {layer name: dL/d(activation)}")
        for name, g in grads.items():
            if name not in self._out_shapes:
                raise OptionError(f"backward: layer {name!r} was not an output of the last forward "
                                  f"(outputs: {', '.join(self._out_shapes)})")
            if tuple(g.shape) != self._out_shapes[name]:
                raise OptionError(f"backward: gradient for {name} has shape {tuple(g.shape)}, the "
                                  f"activation has {self._out_shapes[name]}")
        start = max(i for i, (name, _, _) in enumerate(self._tape) if name in grads)
        g = None
        owned = False            # is g an intermediate of ours (free to overwrite) or the caller's?
        tape = self._tape
        if release:
            self._tape, self._out_shapes = [], {}
        for i in range(start, -1, -1):
            name, kind, cache = tape[i]
            if release:
                tape[i] = None           # this layer's cache dies when the loop lets go of it
            if name in grads:
                # asarray may hand back the caller's own array: never modify that in place
                given = grads.pop(name) if release else grads[name]
                gl = self.xp.asarray(given, dtype=self.dtype)
                g, owned = (gl, gl is not given) if g is None else (g + gl, True)
                del given, gl
            if kind == "conv":
                conv_cache, relu_cache = cache
                # in place when g is ours: no fresh activation-sized array (page faults) per layer
                g = layers.relu_backward(g, relu_cache, out=g if owned else None)
                g, _, _ = layers.conv2d_backward(g, conv_cache, weight_grads=False)
            elif kind == "maxpool":
                g = layers.maxpool_backward(g, cache)
            else:
                g = layers.avgpool_backward(g, cache)
            owned = True
            cache = conv_cache = relu_cache = None
        return g

    def clear(self) -> None:
        """Drop the forward caches (frees the activations' memory)."""
        self._tape = []
        self._out_shapes = {}


# ---------------------------------------------------------------------- image <-> network input
def preprocess(rgb: Array, *, dtype: Any = np.float32, xp: str | ModuleType | None = None) -> Array:
    """RGB image -> network input ``x = BGR - mean``, shape ``(1, H, W, 3)``.

    Args:
        rgb: ``(H, W, 3)`` (or ``(1, H, W, 3)``) uint8 or float in 0..255, RGB order.
        dtype: float32 (default) or float64.
        xp: target backend (``"numpy"``, ``"cupy"`` or the module); default: where ``rgb`` is
            (NumPy for NumPy input, the GPU for a CuPy array).
    Returns:
        ``x[0, i, j, c] = rgb[i, j, 2 - c] - IMAGENET_MEAN_BGR[c]`` on ``xp`` in ``dtype``.
    """
    dt = _check_dtype(dtype)
    shape = tuple(getattr(rgb, "shape", ()))
    if len(shape) == 4 and shape[0] == 1:
        rgb = rgb[0]
        shape = shape[1:]
    if len(shape) != 3 or shape[2] != 3:
        raise OptionError(f"preprocess: expected an RGB image of shape (H, W, 3), got shape {shape}")
    xp = get_xp(rgb) if xp is None else resolve(xp)
    a = to_device(rgb, xp, dt)
    mean = xp.asarray(IMAGENET_MEAN_BGR, dtype=dt)
    return xp.ascontiguousarray((a[:, :, ::-1] - mean)[None])


def deprocess(x: Array, dtype: Any = np.uint8) -> np.ndarray:
    """Network input -> RGB uint8 ``(H, W, 3)`` NumPy array: add the mean, BGR->RGB, clip, round.

    Accepts ``(1, H, W, 3)`` or ``(H, W, 3)`` on either backend (one device->host copy). A float
    ``dtype`` gives the values unrounded (clipped to 0..255), for 16-bit output.
    """
    a = to_host(x)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or a.shape[2] != 3:
        raise OptionError(f"deprocess: expected shape (1, H, W, 3) or (H, W, 3), got {a.shape}")
    a = np.clip((a.astype(np.float64) + np.asarray(IMAGENET_MEAN_BGR))[:, :, ::-1], 0, 255)
    return np.rint(a).astype(np.uint8) if np.dtype(dtype) == np.uint8 else a.astype(dtype)

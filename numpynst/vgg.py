"""VGG16/VGG19 feature extractor: forward to named layers, backward to the pixels.

Architecture (Simonyan & Zisserman 2014, the convolutional part only — style transfer never uses the
dense "top")::

    block b = n_b x [conv 3x3, pad 1, stride 1 -> ReLU]  then  2x2 pool, stride 2
    VGG16: n = (2, 2, 3, 3, 3)      VGG19: n = (2, 2, 4, 4, 4)
    widths 64, 128, 256, 512, 512 in the ImageNet weights (any widths work here)

Layer names are Keras's: ``block3_conv2`` is the *post-ReLU* output of the second convolution of
block 3 (Keras's Conv2D carries its activation), ``block3_pool`` the output of block 3's pool.

The network follows the layers' contract (``out, cache = op_forward(...)``,
``dx = op_backward(dout, cache)``) as a whole: :meth:`VGG.forward_tape` returns the activations and
a :class:`Tape` (each layer's cache, in network order) and :meth:`VGG.backward_tape` takes the
gradients and that tape. Backward walks the tape in reverse from the deepest layer that received a
gradient, adding each requested layer's ``dL/da`` as it passes that layer (the total derivative of
``L = sum_l L_l(a_l)``::

    g_l = dL_l/da_l + (d a_{l+1} / d a_l)^T g_{l+1}

) and never forms weight gradients: style transfer optimizes the image, not the network. A caller
holding its own tape needs no "the model's last forward" bookkeeping: two forwards give two tapes.
:meth:`VGG.forward` / :meth:`VGG.backward` are the stateful convenience on top (the model keeps the
last tape), as the tutorials use them.

Each layer's geometry (kind, grid spacing, receptive reach, channels) is in ``VGG.layers``, built
once from the architecture (:func:`numpynst.arch.layer_table`).

Inputs are "Caffe-preprocessed": BGR, 0..255 scale, ImageNet mean subtracted (:func:`preprocess`),
because that is how the original VGG weights were trained.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Iterable, Mapping

import numpy as np

from . import layers as ops
from .backend import get_xp, resolve, to_device, to_host
from .arch import ARCH_BLOCKS, Layer, all_layer_names, conv_layer_names, layer_table  # noqa: F401 (API)
from .errors import OptionError
from .weights import default_weights_path, read_vgg_weights

Array = Any

# Caffe/Keras ImageNet mean, in BGR order (the order of the network's input channels)
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
POOLINGS = ("max", "avg")
DTYPES = (np.float32, np.float64)
#: A model may also hold its weights and activations in float16 (``--precision fp16``): products in
#: float16 with float32 sums; images, losses and gradients stay in float32 (its ``image_dtype``).
MODEL_DTYPES = (np.float32, np.float64, np.float16)
#: A float16 model computes ``s * activation`` with ``s = 2**-4``: its input multiplied by ``s``, its
#: biases stored times ``s``. Convolutions are linear and ReLU and max/average pooling are positively
#: homogeneous, so every activation is exactly ``s`` times the float32 model's: VGG19's activations
#: reach ~1.7e4 on a 128 px photo (block4_conv2), within a factor 4 of float16's largest value
#: 65504; scaled, the margin is 64x. A power of two: the scaling itself rounds nothing.
FP16_ACTIVATION_SCALE = 2.0 ** -4


def _check_dtype(dtype: Any, allowed: tuple = DTYPES) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in [np.dtype(d) for d in allowed]:
        raise OptionError(f"dtype must be {' or '.join(np.dtype(d).name for d in allowed)}, got {dt}")
    return dt


class Tape:
    """What a forward keeps for its backward: ``(name, kind, cache)`` per layer run, in network order
    (``kind`` is ``"conv"``, ``"maxpool"`` or ``"avgpool"``; a conv's cache is ``(conv cache, ReLU
    cache)``), and ``shapes``, the shape of each output the forward returned. Iterating a tape gives
    its layers; an empty tape (or one a ``release=True`` backward went through) is false."""

    __slots__ = ("layers", "shapes")

    def __init__(self, layers: list | None = None, shapes: dict | None = None):
        self.layers: list = [] if layers is None else layers
        self.shapes: dict[str, tuple[int, ...]] = {} if shapes is None else shapes

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)


class VGG:
    """A VGG16/VGG19 convolutional trunk with weights on one device, in one dtype.

    Build with :meth:`from_h5` (a Keras-layout HDF5 file, by default the shipped VGG19) or
    :meth:`from_params`. Attributes: ``arch``, ``xp`` (numpy or cupy), ``dtype``, ``pooling``,
    ``layer_names`` (all valid output names, network order), ``conv_names``, ``layers`` (the
    :class:`~numpynst.arch.Layer` of each output, network order: kind, index, spacing, pooling
    factor, reach, channels), ``params`` (``name -> (W (3,3,Cin,Cout), b (Cout,))`` on the device),
    ``path`` (file or None).

    ``dtype`` float16 (mixed precision, see :data:`FP16_ACTIVATION_SCALE`): the weights, the
    activations and the backward pass in float16, every product summed in float32 (cuBLAS's float16
    GEMM on CuPy; on NumPy the same arithmetic emulated: float16 operands widened to float32, the
    sum rounded to float16 once). Then ``activation_scale`` is ``s = 2**-4`` (1 otherwise): the
    forward returns ``s`` times the activations, the backward takes gradients with respect to those
    scaled activations and returns ``dL/dx`` in ``image_dtype`` (float32; ``dtype`` otherwise). Its
    first convolution (3 input channels) runs in float32 on the unrounded pixels, forward and back.
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
        self.dtype = _check_dtype(dtype, MODEL_DTYPES)
        half = self.dtype == np.float16
        self.image_dtype = np.dtype(np.float32) if half else self.dtype
        self.activation_scale = FP16_ACTIVATION_SCALE if half else 1.0
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
            bd = to_device(b if not half else np.asarray(to_host(b), np.float64) * self.activation_scale,
                           self.xp, self.dtype)
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
            if half and name == self.conv_names[0]:     # the first layer's float32 twin (see _run)
                self._first32 = (self.xp.ascontiguousarray(to_device(w, self.xp, self.image_dtype)),
                                 to_device(np.asarray(to_host(b), np.float64) * self.activation_scale,
                                           self.xp, self.image_dtype))
        self.layers = layer_table(arch, {n: int(w.shape[3]) for n, (w, _) in self.params.items()})
        self._by_name = {layer.name: layer for layer in self.layers}
        self._tape = Tape()             # the last forward's, for the stateful forward/backward

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

    # ------------------------------------------------------------------ the layer table
    def layer(self, name: str) -> Layer:
        """The :class:`~numpynst.arch.Layer` of output ``name``; :class:`OptionError` if unknown."""
        self._check_names([name])
        return self._by_name[name]

    def deepest(self, names: Iterable[str]) -> Layer:
        """The layer of ``names`` furthest into the network (the one a forward must reach)."""
        names = self._check_names(names)
        if not names:
            raise OptionError("no layer name given")
        return max((self._by_name[n] for n in names), key=lambda layer: layer.index)

    def up_to(self, names: Iterable[str]) -> tuple[Layer, ...]:
        """Every layer from the first to the deepest of ``names``: what a forward to them runs."""
        return self.layers[:self.deepest(names).index + 1]

    def channels(self, name: str) -> int:
        """Number of channels of the output of layer ``name``."""
        return self.layer(name).channels

    def pool_factor(self, names: Iterable[str]) -> int:
        """``2^k``, k the number of pooling layers in front of the deepest of ``names``.

        Pooling drops a remainder row/column (floor mode), and the pixels under it then get no
        gradient from deeper layers: a visible stripe along the bottom/right edge. Images whose
        sides are multiples of this factor have no remainder at any of these layers.
        """
        return self.deepest(names).pool_factor

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
    def forward_tape(self, x: Array, outputs: str | Iterable[str],
                     keep: bool = True) -> tuple[dict[str, Array], Tape | None]:
        """Run the network as deep as the deepest requested layer: ``(activations, tape)``.

        Args:
            x: ``(N, H, W, 3)`` preprocessed input on the model's device (cast to the model's dtype).
            outputs: layer names (or one name) whose activations to return.
            keep: keep what :meth:`backward_tape` needs (default). ``False`` saves memory when only
                activations are wanted (e.g. computing style targets); the tape is then ``None``.
        Returns:
            ``({name: activation (N, H_l, W_l, C_l)}, tape)``. The arrays are also held in the tape:
            do not modify them in place before the backward.
        Raises:
            OptionError: unknown layer name, wrong input shape, or an image too small for the pools.
        """
        return self._run(x, *self._plan_forward(x, outputs), keep)

    def _plan_forward(self, x: Array, outputs: str | Iterable[str]) -> tuple[tuple[Layer, ...], set[str]]:
        """``(layers to run, names to return)`` for a forward of ``x``, after checking both."""
        names = self._check_names([outputs] if isinstance(outputs, str) else outputs)
        if not names:
            raise OptionError("forward: outputs is empty; give at least one layer name")
        xp = self.xp
        if get_xp(x) is not xp:
            raise OptionError(f"forward: x is a {type(x).__module__} array but the model lives on "
                              f"{'numpy' if xp is np else 'cupy'}; move it with numpynst.backend.to_device")
        if getattr(x, "ndim", None) != 4 or x.shape[3] != 3:
            raise OptionError(f"forward: x must have shape (N, H, W, 3), got {getattr(x, 'shape', None)}")
        run = self.up_to(names)
        self._check_size(x.shape[1:3], run)
        return run, set(names)

    def _run(self, x: Array, run: tuple[Layer, ...], wanted: set[str],
             keep: bool) -> tuple[dict[str, Array], Tape | None]:
        half = self.dtype == np.float16
        if not half:
            a = self.xp.asarray(x, dtype=self.dtype)
        else:       # s x, kept in float32 for the first layer (see below)
            a = self.xp.asarray(x, dtype=self.image_dtype) * self.xp.asarray(self.activation_scale, self.image_dtype)
        tape = Tape() if keep else None
        out: dict[str, Array] = {}
        for layer in run:
            if layer.kind == "conv":
                w, b = self.params[layer.name]
                if half and layer.name == self.conv_names[0]:
                    # A float16 model's first layer runs in float32 and rounds its output: float16
                    # would round the input pixels themselves (to 1/8 of a grey level near 255), and
                    # an optimiser's small steps would vanish in that rounding (J would not move).
                    # 3 input channels: ~1% of the network's products.
                    w, b = self._first32
                    a, conv_cache = ops.conv2d_forward(a, w, b, stride=1, pad=1, relu=True)
                    a = a.astype(self.dtype)
                else:
                    # conv + ReLU fused: the ReLU is applied as each band of the output is written
                    a, conv_cache = ops.conv2d_forward(a, w, b, stride=1, pad=1, relu=True)
                cache: Any = (conv_cache, ops.ReluCache(a))
                kind = "conv"
            elif self.pooling == "max":
                a, cache = ops.maxpool_forward(a, 2, 2)
                kind = "maxpool"
            else:
                a, cache = ops.avgpool_forward(a, 2, 2)
                kind = "avgpool"
            if tape is not None:
                tape.layers.append((layer.name, kind, cache))
            if layer.name in wanted:
                out[layer.name] = a
                if tape is not None:
                    tape.shapes[layer.name] = tuple(a.shape)
        return out, tape

    def _check_size(self, hw: tuple[int, int], run: tuple[Layer, ...]) -> None:
        """:class:`OptionError` unless an ``hw`` input is at least 2x2 at every pool of ``run``."""
        for layer in run:
            if layer.kind == "pool":
                h, w = int(hw[0]) // layer.pool_factor, int(hw[1]) // layer.pool_factor   # its input
                if h < 2 or w < 2:
                    raise OptionError(f"the input ({hw[0]}x{hw[1]} px) is only {h}x{w} at {layer.name}, too "
                                      f"small for a 2x2 pool; reaching {run[-1].name} needs "
                                      f"at least {layer.spacing} px per side")

    def backward_tape(self, grads: Mapping[str, Array], tape: Tape | None, release: bool = False) -> Array:
        """``dL/dx`` through ``tape`` (a :meth:`forward_tape`'s), given ``{layer name: dL/d(activation)}``.

        The names must be among the outputs of that forward and each gradient must have its
        activation's shape. Layers deeper than the deepest given gradient are skipped; weight
        gradients are never computed. Returns ``(N, H, W, 3)`` on the model's device.

        ``release=True`` empties the tape, dropping each layer's cache as soon as the backward pass
        is through it, so the deep activations are gone by the time the big full-resolution
        gradients of block 1 exist: the peak memory of an iteration is then set by block 1, not by
        block 1 plus everything above it. A second backward then needs a new forward. (Activations
        the caller still holds, e.g. the dict the forward returned, stay alive until the caller
        drops them.) For the same reason ``release=True`` also takes each gradient out of ``grads``
        once it has been used: pass a dict you do not need afterwards.
        """
        if not tape:
            raise RuntimeError("VGG.backward() needs a forward() with keep_cache=True first")
        if not grads:
            raise OptionError("backward: grads is empty; give {layer name: dL/d(activation)}")
        for name, g in grads.items():
            if name not in tape.shapes:
                raise OptionError(f"backward: layer {name!r} was not an output of the last forward "
                                  f"(outputs: {', '.join(tape.shapes)})")
            if tuple(g.shape) != tape.shapes[name]:
                raise OptionError(f"backward: gradient for {name} has shape {tuple(g.shape)}, the "
                                  f"activation has {tape.shapes[name]}")
        entries = tape.layers
        start = max(i for i, (name, _, _) in enumerate(entries) if name in grads)
        if release:                      # from here on only this frame holds the caches
            tape.layers, tape.shapes = [], {}
        g = None
        owned = False            # is g an intermediate of ours (free to overwrite) or the caller's?
        for i in range(start, -1, -1):
            name, kind, cache = entries[i]
            if release:
                entries[i] = None        # this layer's cache dies when the loop lets go of it
            if name in grads:
                # asarray may hand back the caller's own array: never modify that in place
                given = grads.pop(name) if release else grads[name]
                gl = self.xp.asarray(given, dtype=self.dtype)
                if g is None:
                    g, owned = gl, gl is not given
                else:            # g is an intermediate of ours here (owned): add in place
                    g += gl
                del given, gl
            if kind == "conv":
                conv_cache, relu_cache = cache
                # in place when g is ours: no fresh activation-sized array (page faults) per layer
                g = ops.relu_backward(g, relu_cache, out=g if owned else None)
                g, _, _ = ops.conv2d_backward(g, conv_cache, weight_grads=False)
            elif kind == "maxpool":
                g = ops.maxpool_backward(g, cache)
            else:
                g = ops.avgpool_backward(g, cache)
            owned = True
            cache = conv_cache = relu_cache = None
        if self.activation_scale != 1.0:        # the input was x * s: d/dx = s d/d(input), in float32
            g = g * self.xp.asarray(self.activation_scale, dtype=self.image_dtype)    # (the first layer's dx is)
        return g

    def forward(self, x: Array, outputs: str | Iterable[str], keep_cache: bool = True) -> dict[str, Array]:
        """:meth:`forward_tape` that keeps the tape in the model, for :meth:`backward`.

        ``keep_cache=False`` keeps none (backward is then unavailable); either way the tape of any
        earlier forward is dropped (before this one runs, so the two never coexist in memory).
        Returns ``{name: activation (N, H_l, W_l, C_l)}``.
        """
        run, wanted = self._plan_forward(x, outputs)
        self._tape = Tape()
        out, tape = self._run(x, run, wanted, keep_cache)
        if tape is not None:
            self._tape = tape
        return out

    def backward(self, grads: Mapping[str, Array], release: bool = False) -> Array:
        """:meth:`backward_tape` through the tape of the last :meth:`forward` (``release=True``
        empties it: a second ``backward`` then needs a new ``forward``)."""
        return self.backward_tape(grads, self._tape, release=release)

    def clear(self) -> None:
        """Drop the last forward's tape (frees the activations' memory)."""
        self._tape = Tape()


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

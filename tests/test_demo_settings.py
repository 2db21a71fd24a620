"""``numpynst demo``: its own settings (256 px, a short coarse-to-fine run), on a tiny model."""

from pathlib import Path

from numpynst.cli import build_parser, main
from numpynst.commands.demo import (
    DEMO_ITERATIONS,
    DEMO_SCALES,
    DEMO_SIZE,
)
from numpynst.testing import write_tiny_vgg_h5
from numpynst.image import DEMO_STYLE, SAMPLES
from numpynst.transfer import DEFAULT_BETA


def test_the_demo_runs_coarse_to_fine_with_stylize_s_weights_on_a_painting(tmp_path, capsys):
    args = build_parser().parse_args(["demo"])
    assert (args.size, args.iterations, tuple(args.scales)) == (DEMO_SIZE, DEMO_ITERATIONS, DEMO_SCALES)
    assert DEMO_SCALES[-1] == 1.0 and len(DEMO_SCALES) > 1          # ends at the full size
    assert (args.alpha, args.beta, args.tv_weight, args.weights_mode) == (None, None, None, "calibrated")
    assert SAMPLES[DEMO_STYLE]["kind"] == "style" and "Gogh" in SAMPLES[DEMO_STYLE]["title"]   # a painting
    assert build_parser().parse_args(["demo", "--style-weight", "1"]).beta == 1       # still the user's knob

    weights = write_tiny_vgg_h5(tmp_path / "tiny.h5")
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--size", "32", "--iterations", "2", "--save-every", "1", "--quiet",
                 "--style-layers", "block1_conv1,block2_conv1", "--content-layer", "block2_conv2",
                 "--tol", "0", "--weights", str(weights)]) == 0
    text = capsys.readouterr().out
    assert "2 lbfgs iterations per scale at 0.5, 1 x the size on numpy" in text
    assert f"style weight {DEFAULT_BETA:g}" not in text        # the defaults are not the demo's own
    frames = sorted(p.name for p in Path(str(out / "result.png")[:-4] + "_frames").iterdir())
    # every scale ran its iterations: frames 1 and 2 at half size, then at full size
    assert frames == ["s0.5_00001.png", "s0.5_00002.png", "s1_00001.png", "s1_00002.png"], frames

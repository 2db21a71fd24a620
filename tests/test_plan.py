"""The memory planner (numpynst.plan) and the CLI's --tile / --max-memory / --dry-run.

The peak estimate is checked against the measured peak RSS of a fresh process (VmHWM minus the
RSS after import) for a whole-image and a tiled evaluation on the shipped VGG19, at sizes other
than the two the constants were measured at (256 and 512 px whole).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numpynst import plan
from numpynst.errors import OptionError
from numpynst.image import sample_path
from numpynst.testing import tiny_vgg
from numpynst.transfer import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS
from numpynst.vgg import VGG

NAMES = [DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vgg19():
    return VGG.from_h5()


@pytest.mark.parametrize("text,expected", [("4GB", 4 * 10**9), ("3.5GiB", int(3.5 * 2**30)),
                                           ("800 MB", 8 * 10**8), ("2g", 2 * 10**9), ("1e9", 10**9),
                                           (123456, 123456)])
def test_parse_memory(text, expected):
    assert plan.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["4 parsecs", "", "-1GB", "0", "GB", "nanGB"])
def test_parse_memory_refuses(text):
    with pytest.raises(OptionError, match="--max-memory"):
        plan.parse_memory(text)


def test_activation_floats_match_the_forward(vgg19):
    """The planner's count of layer outputs equals what a forward actually produces (odd size)."""
    model = tiny_vgg()
    hw = (37, 50)
    acts = model.forward(np.zeros((1, *hw, 3)), list(model.layer_names[:model.layer_names.index("block4_conv2") + 1]))
    assert plan.activation_floats(model, ["block4_conv2"], hw) == sum(a.size for a in acts.values())


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_flops_and_floats_follow_the_layer_table(arch):
    """Per-crop sums equal the single-crop counts summed, and the floats the forward's, on both nets."""
    model = tiny_vgg(arch)
    names = ["block4_conv1", "block1_conv1"]
    acts = model.forward(np.zeros((1, 41, 30, 3)), [layer.name for layer in model.up_to(names)])
    assert plan.activation_floats(model, names, (41, 30)) == sum(a.size for a in acts.values())
    ys, xs = [37, 20], [30, 17, 9]
    assert plan._sum_over_crops(model, names, ys, xs) == sum(plan.forward_flops(model, names, (y, x))
                                                             for y in ys for x in xs)


def test_whole_when_it_fits_tiles_when_not(vgg19):
    hw = (1024, 1024)
    whole = plan.estimate(vgg19, NAMES, DEFAULT_CONTENT_LAYER, hw, None)
    assert plan.choose(vgg19, NAMES, DEFAULT_CONTENT_LAYER, hw, whole.peak).tile is None
    tiled = plan.choose(vgg19, NAMES, DEFAULT_CONTENT_LAYER, hw, int(whole.peak * 0.8))
    assert tiled.tile is not None and tiled.peak <= whole.peak * 0.8
    assert tiled.tile[0] % 16 == 0 and tiled.tile[1] % 16 == 0 and min(tiled.tile) >= 80
    assert tiled.overhead > 1.0 and tiled.seconds > whole.seconds


def test_too_small_budget_names_the_smallest_that_works(vgg19):
    hw = (2048, 2048)
    with pytest.raises(OptionError) as err:
        plan.choose(vgg19, NAMES, DEFAULT_CONTENT_LAYER, hw, 10**9)
    msg = str(err.value)
    assert msg.startswith("--max-memory") and "\n" not in msg
    smallest = float(msg.rsplit("about ", 1)[1].rstrip("GB"))
    assert plan.choose(vgg19, NAMES, DEFAULT_CONTENT_LAYER, hw, int(smallest * 1e9)).tile is not None
    with pytest.raises(OptionError):
        plan.choose(vgg19, NAMES, DEFAULT_CONTENT_LAYER, hw, int((smallest - 0.2) * 1e9))


@pytest.mark.parametrize("tile,message", [(100, "multiple of 16"), (64, "at least the halo 80"),
                                          (-16, "smallest valid value is 80")])
def test_check_tile(vgg19, tile, message):
    with pytest.raises(OptionError, match=message):
        plan.check_tile(vgg19, NAMES, tile)
    assert plan.check_tile(vgg19, NAMES, 96) == 96


def test_default_budget_is_a_share_of_memavailable():
    with open("/proc/meminfo") as f:
        avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    assert abs(plan.default_budget(np) - plan.DEFAULT_SHARE * avail) < 0.1 * avail


MEASURE = r"""
import json, sys
import numpy as np
def rss():
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so a child of a big pytest process
    # would start with its parent's peak; the high-water mark of this process's own memory map does not.
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
import numpynst
from numpynst import plan
from numpynst.tiled import TiledObjective
from numpynst.transfer import Objective, DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS
from numpynst.vgg import VGG
base = rss()
size, tile = json.loads(sys.argv[1])
model = VGG.from_h5()
rng = np.random.default_rng(0)
c, s = (rng.normal(0, 50, (1, size, size, 3)).astype(np.float32) for _ in range(2))
obj = Objective(model, c, s) if tile is None else TiledObjective(model, c, s, tile=tile)
obj.value_and_grad(c)
est = plan.estimate(model, [DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS], DEFAULT_CONTENT_LAYER,
                    (size, size), None if tile is None else (tile, tile), optimizer=None)
print(json.dumps([rss() - base, est.peak]))
"""


@pytest.mark.parametrize("size,tile", [(320, None), (448, 224)], ids=["whole-320", "tiled-448"])
def test_estimate_within_25_percent_of_measured_peak(size, tile):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", MEASURE, json.dumps([size, tile])], capture_output=True,
                         text=True, check=True, cwd=ROOT, env=env)
    measured, estimated = json.loads(out.stdout.strip().splitlines()[-1])
    assert abs(estimated - measured) <= 0.25 * measured, (measured, estimated)


# ---------------------------------------------------------------------------- the CLI
def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "numpynst", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def _pair():
    return sample_path("chelsea"), sample_path("ihc")


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    c, s = _pair()
    out = tmp_path / "out.png"
    r = _cli("stylize", c, s, "-o", out, "--size", 4096, "--scales", 0.25, 0.5, 1, "--max-memory", "12GB",
             "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "memory budget 11.18 GiB (--max-memory)" in lines[0]
    rows = [line.split() for line in lines[2:5]]
    assert [row[1] for row in rows] == ["1024x688", "2048x1360", "4096x2720"]
    assert rows[0][2:4] == ["whole", "image"] and rows[2][2] == "tiles"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,message", [
    (["--tile", "100"], "--tile 100: must be a multiple of 16"),
    (["--tile", "32"], "at least the halo 80; the smallest valid value is 80"),
    (["--max-memory", "1GB"], "--max-memory 1GB is too small"),
    (["--max-memory", "lots"], "--max-memory must be a positive size such as 4GB, 3.5GiB or 800MB, got 'lots'"),
    (["--scales", "2"], "--scales must be a number in [0, 1], got 2.0"),
])
@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_bad_print_options_are_one_line_exit_2(tmp_path, args, message, dry):
    c, s = _pair()
    out = tmp_path / "out.png"
    r = _cli("stylize", c, s, "-o", out, "--size", 2048, *args, *(["--dry-run"] if dry else []))
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "\n" not in err and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []

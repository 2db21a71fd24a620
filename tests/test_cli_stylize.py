"""``numpynst stylize`` / ``demo`` end to end on a tiny model: exit codes, files written, nothing
overwritten, one-line errors for bad input."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from numpynst.cli import main
from numpynst.testing import write_tiny_vgg_h5

FAST = ["--iterations", "4", "--quiet", "--style-layers", "block1_conv1,block2_conv1",
        "--content-layer", "block2_conv2", "--tol", "0"]


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    for name, (h, w) in {"photo.png": (24, 32), "art.jpg": (20, 20), "art2.png": (28, 22)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    weights = write_tiny_vgg_h5(tmp_path / "tiny.h5")
    return tmp_path, ["--weights", str(weights)]


def _cli(*args):
    """Run the real console entry point in a subprocess; returns (code, stdout, stderr)."""
    env = dict(os.environ, MPLBACKEND="Agg")
    p = subprocess.run([sys.executable, "-m", "numpynst", *map(str, args)], capture_output=True, text=True, env=env)
    return p.returncode, p.stdout, p.stderr


def _assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numpynst: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_stylize_writes_result_frames_and_plot(files, capsys):
    d, w = files
    out = d / "out.png"
    code = main(["stylize", str(d / "photo.png"), str(d / "art.jpg"), str(d / "art2.png"), "-o", str(out),
                 "--style-blend", "2", "1", "--save-every", "2", "--plot", "--preserve-color", *FAST, *w])
    assert code == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (24, 32, 3)
    assert sorted(p.name for p in (d / "out_frames").iterdir()) == ["00002.png", "00004.png"]
    assert (d / "out_plot.png").stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out
    assert not [p for p in d.iterdir() if ".tmp" in p.name or p.name.startswith(".")]


def test_existing_output_is_not_overwritten(files):
    d, w = files
    out = d / "keep.png"
    out.write_bytes(b"precious")
    code, _, err = _cli("stylize", d / "photo.png", d / "art.jpg", "-o", out, *FAST, *w)
    _assert_one_line_error(code, err, str(out), "--overwrite")
    assert out.read_bytes() == b"precious"
    assert main(["stylize", str(d / "photo.png"), str(d / "art.jpg"), "-o", str(out), "--overwrite", *FAST, *w]) == 0
    assert out.read_bytes() != b"precious"


def test_output_may_never_be_an_input(files):
    d, w = files
    before = (d / "photo.png").read_bytes()
    code, _, err = _cli("stylize", d / "photo.png", d / "art.jpg", "-o", d / "photo.png", "--overwrite", *FAST, *w)
    _assert_one_line_error(code, err, "is the input")
    assert (d / "photo.png").read_bytes() == before


@pytest.mark.parametrize("make, fragments", [
    (lambda d: d / "missing.png", ["missing.png"]),
    (lambda d: (d / "notimage.png").write_text("hello") and d / "notimage.png", ["notimage.png"]),
    (lambda d: (d / "trunc.png").write_bytes((d / "photo.png").read_bytes()[:60]) and d / "trunc.png", ["trunc.png"]),
])
def test_bad_input_images_give_one_line_errors(files, make, fragments):
    d, w = files
    bad = make(d)
    code, _, err = _cli("stylize", bad, d / "art.jpg", "-o", d / "o.png", *FAST, *w)
    _assert_one_line_error(code, err, *fragments)
    assert not (d / "o.png").exists()


@pytest.mark.parametrize("extra, fragment", [
    (["--size", "0"], "size"),
    (["--iterations", "-1"], "--iterations"),
    (["--beta", "-2"], "beta"),
    (["--style-layers", "block1_conv1:abc"], "--style-layers"),
    (["--content-layer", "block9_conv9"], "block9_conv9"),
    (["--style-blend", "1", "2"], "--style-blend has 2 weight(s) for 1 style"),
    (["--scales", "1", "0.5"], "scales"),
    (["--init", "nowhere.png"], "--init"),
    (["--optimizer", "lbfgs", "--lr", "0.1"], "lr does not apply"),
    (["--optimizer", "adam", "--lr", "-1"], "lr"),
])
def test_bad_options_give_one_line_errors(files, extra, fragment):
    d, w = files
    code, _, err = _cli("stylize", d / "photo.png", d / "art.jpg", "-o", d / "o.png", *FAST, *w, *extra)
    _assert_one_line_error(code, err, fragment)
    assert not (d / "o.png").exists()


def test_bad_weights_file_is_one_line_error(files):
    d, _ = files
    (d / "bad.h5").write_text("not hdf5")
    code, _, err = _cli("stylize", d / "photo.png", d / "art.jpg", "-o", d / "o.png", *FAST, "--weights", d / "bad.h5")
    _assert_one_line_error(code, err, "bad.h5")


def test_unknown_output_type_and_missing_directory(files):
    d, w = files
    code, _, err = _cli("stylize", d / "photo.png", d / "art.jpg", "-o", d / "o.xyz", *FAST, *w)
    _assert_one_line_error(code, err, "unknown image type")
    code, _, err = _cli("stylize", d / "photo.png", d / "art.jpg", "-o", d / "nodir" / "o.png", *FAST, *w)
    _assert_one_line_error(code, err, "does not exist")


def test_demo_runs_and_says_where_the_result_is(files, capsys):
    d, w = files
    out = d / "demo"
    assert main(["demo", "-o", str(out), "--size", "32", *FAST, *w]) == 0
    text = capsys.readouterr().out
    assert str((out / "result.png").resolve()) in text
    assert np.asarray(Image.open(out / "result.png")).shape[2] == 3
    assert (out / "result_plot.png").exists()


def test_ctrl_c_saves_the_best_image_so_far(files):
    """A real SIGINT in the middle of the loop: exit 130, and the output holds a finished image."""
    import signal
    import time
    d, w = files
    out = d / "interrupted.png"
    args = [sys.executable, "-m", "numpynst", "stylize", str(d / "photo.png"), str(d / "art.jpg"), "-o", str(out),
            "--iterations", "100000", "--tol", "0", "--save-every", "1", "--quiet", *w]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, MPLBACKEND="Agg"))
    frames = d / "interrupted_frames"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (frames.exists() and len(list(frames.glob("*.png"))) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted: saved the best image so far" in stdout
    assert np.asarray(Image.open(out)).shape == (24, 32, 3)

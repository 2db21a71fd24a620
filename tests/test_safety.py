"""Nothing lost, ever: hostile cases for stylize/demo/inspect/weights, image files and the Python API.

Each test drives a real mechanism: a file-size limit set with ``resource.setrlimit(RLIMIT_FSIZE)``
in a child process, a real FIFO (each such test runs in a subprocess with a timeout, so a
regression shows as a failure, not a hung suite), a real symlink created by code running in the
stylize callback while the run is in progress, SIGTERM sent to a real process. The property
checked is always the same: a complete file or a one-line error, and no file touched that the
tool did not create or was not allowed to replace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import numpynst
from numpynst import transfer
from numpynst.cli import main
from numpynst.errors import ImageError, OptionError
from numpynst.files import name_max
from numpynst.image import as_rgb, load_image, save_image
from numpynst.testing import tiny_vgg, write_tiny_vgg_h5

FAST = ["--iterations", "3", "--quiet", "--style-layers", "block1_conv1", "--content-layer",
        "block2_conv2", "--tol", "0"]
TIMEOUT = 120          # a child that has not finished by then is blocked: the test fails


@pytest.fixture
def d(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "art.png")
    write_tiny_vgg_h5(tmp_path / "tiny.h5")
    return tmp_path


@pytest.fixture
def cli(capsys, monkeypatch):
    """``numpynst ...`` in this process (cheap: no interpreter start-up); (code, stdout, stderr)."""
    def run(*args, cwd):
        monkeypatch.chdir(cwd)
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:        # argparse's own one-line usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err
    return run


def _run(*args, cwd, preexec_fn=None, timeout=TIMEOUT):
    """``numpynst ...`` in a child process: for file-size limits, FIFOs (a hang is a timeout)."""
    p = subprocess.run([sys.executable, "-m", "numpynst", *map(str, args)], capture_output=True,
                       text=True, cwd=cwd, env=dict(os.environ, MPLBACKEND="Agg"),
                       preexec_fn=preexec_fn, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def _one_line(code, err, *fragments, status=2):
    assert code == status, err
    assert "Traceback" not in err and "Warning" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numpynst: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def _no_temporaries(folder: Path):
    assert [p.name for p in folder.iterdir() if p.name.startswith(".nst-")] == []


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.is_symlink()}


# ---------------------------------------------------------------------------------------------
# truncation under a file-size limit (a full disk behaves the same): an error, never a cut file
# ---------------------------------------------------------------------------------------------

def _limit_fsize(limit):
    def apply():
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_save_image_under_a_file_size_limit_fails_cleanly_in_every_format(tmp_path):
    """Pillow's JPEG, BMP and TIFF encoders ignore the short write (the file is cut at the limit
    and save() returns normally); reading the temporary back must catch it, for every format."""
    script = (
        "import sys, numpy as np\n"
        "from numpynst.image import save_image\n"
        "from numpynst.errors import ImageError\n"
        "a = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)\n"
        "for ext in ('jpg', 'bmp', 'tif', 'png', 'webp'):\n"
        "    try:\n"
        "        save_image(f'{sys.argv[1]}/out.{ext}', a)\n"
        "        print(ext, 'written')\n"
        "    except ImageError as e:\n"
        "        print(ext, 'error', str(e).replace(chr(10), ' '))\n")
    p = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                       preexec_fn=_limit_fsize(4000), timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    lines = dict(line.split(" ", 1) for line in p.stdout.strip().splitlines())
    assert set(lines) == {"jpg", "bmp", "tif", "png", "webp"}
    for ext, outcome in lines.items():
        assert outcome.startswith("error cannot save image") and f"out.{ext}" in outcome, (ext, outcome)
    assert os.listdir(tmp_path) == []          # no cut file under the name, no temporary either


def test_stylize_to_jpeg_under_a_file_size_limit_is_a_one_line_error(d):
    code, out, err = _run("stylize", "photo.png", "art.png", "-o", "out.jpg", *FAST, "--weights", "tiny.h5",
                          cwd=d, preexec_fn=_limit_fsize(1500))
    _one_line(code, err, "out.jpg", "file-size limit")
    assert "wrote" not in out
    assert not (d / "out.jpg").exists()
    _no_temporaries(d)


# ---------------------------------------------------------------------------------------------
# inputs that are not regular files: refused at once, never opened (a FIFO would block forever)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["content", "--init", "--weights", "inspect", "weights info"])
def test_fifo_inputs_are_refused_without_blocking(d, where):
    os.mkfifo(d / "pipe.png")
    base = ["stylize", "photo.png", "art.png", "-o", "o.png", *FAST, "--weights", "tiny.h5"]
    args = {"content": ["stylize", "pipe.png", "art.png", "-o", "o.png", *FAST, "--weights", "tiny.h5"],
            "--init": [*base, "--init", "pipe.png"],
            "--weights": [*base, "--weights", "pipe.png"],
            "inspect": ["inspect", "pipe.png", "-o", "m.png", "--weights", "tiny.h5"],
            "weights info": ["weights", "info", "pipe.png"]}[where]
    t0 = time.monotonic()
    code, _, err = _run(*args, cwd=d)                 # subprocess.run's timeout guards a hang
    line = _one_line(code, err, "pipe.png", "named pipe (FIFO)")
    if where != "weights info":
        assert ("image" in line or "--init" in line or "--weights" in line)
    assert time.monotonic() - t0 < TIMEOUT
    assert not (d / "o.png").exists() and not (d / "m.png").exists()


def test_load_image_refuses_a_device(tmp_path):
    with pytest.raises(ImageError, match="a device, not a regular file"):
        load_image("/dev/zero")


# ---------------------------------------------------------------------------------------------
# decompression bombs: the header's pixel count is checked whatever --size asks for
# ---------------------------------------------------------------------------------------------

def test_small_png_declaring_a_huge_picture_is_refused_with_any_size(cli, d):
    im = Image.new("L", (9000, 9000))          # ~80 kB on disk, 81 MP declared
    im.save(d / "bomb.png", optimize=True)
    assert (d / "bomb.png").stat().st_size < 400_000
    code, _, err = cli("stylize", "bomb.png", "art.png", "-o", "o.png", "--size", "32", *FAST,
                        "--weights", "tiny.h5", cwd=d)
    _one_line(code, err, "bomb.png", "9000x9000")


# ---------------------------------------------------------------------------------------------
# derived outputs (--plot, --save-every) and --init are checked like the output
# ---------------------------------------------------------------------------------------------

def test_inputs_named_like_derived_outputs_are_never_overwritten(cli, d):
    (d / "res_plot.png").write_bytes((d / "art.png").read_bytes())
    frames = d / "res_frames"
    frames.mkdir()
    (frames / "00001.png").write_bytes((d / "photo.png").read_bytes())
    before = _snapshot(d) | {"f": (frames / "00001.png").read_bytes()}
    w = ["--weights", "tiny.h5"]
    cases = [
        (["photo.png", "res_plot.png", "-o", "res.png", "--plot", "--overwrite"], "is the input"),
        (["res_frames/00001.png", "art.png", "-o", "res.png", "--save-every", "1", "--overwrite"],
         "holds the input"),
        (["photo.png", "art.png", "-o", "res.png", "--init", "res.png"], "no such file"),
    ]
    for args, fragment in cases:
        code, _, err = cli("stylize", *args, *FAST, *w, cwd=d)
        _one_line(code, err, fragment)
    (d / "init.png").write_bytes((d / "photo.png").read_bytes())
    code, _, err = cli("stylize", "photo.png", "art.png", "-o", "init.png", "--init", "init.png",
                        "--overwrite", *FAST, *w, cwd=d)
    _one_line(code, err, "is the input", "--init")
    assert _snapshot(d) | {"f": (frames / "00001.png").read_bytes()} == before | {
        "init.png": (d / "photo.png").read_bytes()}
    assert not (d / "res.png").exists()


def test_existing_plot_and_frames_need_overwrite_and_only_ours_are_replaced(cli, d):
    w = ["--weights", "tiny.h5"]
    (d / "r_plot.png").write_bytes(b"user's plot")
    code, _, err = cli("stylize", "photo.png", "art.png", "-o", "r.png", "--plot", *FAST, *w, cwd=d)
    _one_line(code, err, "r_plot.png", "--overwrite")
    assert (d / "r_plot.png").read_bytes() == b"user's plot" and not (d / "r.png").exists()

    frames = d / "r_frames"
    frames.mkdir()
    (frames / "00002.png").write_bytes(b"old frame")
    (frames / "notes.txt").write_bytes(b"user's notes")
    code, _, err = cli("stylize", "photo.png", "art.png", "-o", "r.png", "--save-every", "1", *FAST, *w, cwd=d)
    _one_line(code, err, "r_frames", "--overwrite")
    assert (frames / "00002.png").read_bytes() == b"old frame"

    code, out, err = cli("stylize", "photo.png", "art.png", "-o", "r.png", "--save-every", "1", "--plot",
                          "--overwrite", *FAST, *w, cwd=d)
    assert code == 0, err
    assert (frames / "notes.txt").read_bytes() == b"user's notes"      # not ours: untouched
    assert sorted(p.name for p in frames.iterdir()) == ["00001.png", "00002.png", "00003.png", "notes.txt"]
    assert np.asarray(Image.open(frames / "00002.png")).shape == (24, 32, 3)
    assert Image.open(d / "r_plot.png").size[0] > 100
    _no_temporaries(d)


def test_frames_folder_that_is_a_file_is_refused_before_thecli(cli, d):
    (d / "q_frames").write_bytes(b"a file")
    code, out, err = cli("stylize", "photo.png", "art.png", "-o", "q.png", "--save-every", "1", *FAST,
                          "--weights", "tiny.h5", cwd=d)
    _one_line(code, err, "q_frames", "not a folder")
    assert not (d / "q.png").exists() and (d / "q_frames").read_bytes() == b"a file"


def test_inspect_refuses_an_existing_output_without_overwrite(cli, d):
    (d / "maps.png").write_bytes(b"keep me")
    code, _, err = cli("inspect", "photo.png", "-o", "maps.png", "--weights", "tiny.h5", cwd=d)
    _one_line(code, err, "maps.png", "--overwrite")
    assert (d / "maps.png").read_bytes() == b"keep me"


# ---------------------------------------------------------------------------------------------
# time of check / time of use: what appears at an output path during the run is never replaced
# ---------------------------------------------------------------------------------------------

def _race(monkeypatch, make):
    """Run ``make()`` from inside the stylize callback, at the second progress point: the run is
    under way, every start-up check has passed, nothing has been written yet."""
    real = transfer.stylize
    calls = []

    def wrapped(*args, callback=None, **kw):
        def cb(p):
            calls.append(p.iteration)
            if len(calls) == 2:
                make()
            return None if callback is None else callback(p)
        return real(*args, callback=cb, **kw)

    monkeypatch.setattr(transfer, "stylize", wrapped)
    return calls


@pytest.mark.parametrize("overwrite", [False, True])
def test_symlink_to_an_input_created_during_the_run_is_not_written_through(d, monkeypatch, capsys, overwrite):
    photo = (d / "photo.png").read_bytes()
    out, plot = d / "res.png", d / "res_plot.png"

    def plant():
        out.symlink_to(d / "photo.png")          # the input would receive the picture
        plot.symlink_to(d / "art.png")

    calls = _race(monkeypatch, plant)
    args = ["stylize", str(d / "photo.png"), str(d / "art.png"), "-o", str(out), "--plot", *FAST,
            "--weights", str(d / "tiny.h5")] + (["--overwrite"] if overwrite else [])
    code = main(args)
    err = capsys.readouterr().err
    assert len(calls) >= 2
    assert code == 1, err
    assert (d / "photo.png").read_bytes() == photo and out.is_symlink() and plot.is_symlink()
    assert os.readlink(out) == str(d / "photo.png")
    # the picture is not lost: it went to a fresh name beside the output, and the user is told
    assert "res-1.png" in err and "res_plot.png" in err and "Traceback" not in err
    assert np.asarray(Image.open(d / "res-1.png")).shape == (24, 32, 3)
    _no_temporaries(d)


def test_file_created_at_the_output_during_the_run_is_not_replaced(d, monkeypatch, capsys):
    out = d / "res.png"
    calls = _race(monkeypatch, lambda: out.write_bytes(b"someone else's file"))
    code = main(["stylize", str(d / "photo.png"), str(d / "art.png"), "-o", str(out), *FAST,
                 "--weights", str(d / "tiny.h5")])
    err = capsys.readouterr().err
    assert len(calls) >= 2 and code == 1
    assert out.read_bytes() == b"someone else's file"
    assert "appeared" in err and "res-1.png" in err and len(err.strip().splitlines()) == 1
    assert np.asarray(Image.open(d / "res-1.png")).shape == (24, 32, 3)


# ---------------------------------------------------------------------------------------------
# names and folders: checked before the run, so nothing fails only at the end
# ---------------------------------------------------------------------------------------------

def test_longest_valid_output_name_works_with_plot_and_frames(cli, d):
    stem = "x" * (name_max(d) - len("_plot.png"))      # OUT_plot.png is the longest name written
    name = stem + ".png"
    code, out, err = cli("stylize", "photo.png", "art.png", "-o", name, "--plot", "--save-every", "1",
                          *FAST, "--weights", "tiny.h5", cwd=d)
    assert code == 0, err
    assert (d / name).is_file() and (d / (stem + "_plot.png")).is_file()
    _no_temporaries(d)


def test_246_character_output_name_is_written(cli, d):
    name = "n" * 242 + ".png"
    code, _, err = cli("stylize", "photo.png", "art.png", "-o", name, *FAST, "--weights", "tiny.h5", cwd=d)
    assert code == 0, err
    assert np.asarray(Image.open(d / name)).shape == (24, 32, 3)


@pytest.mark.parametrize("which", ["-o", "content", "--init", "--weights"])
def test_over_long_names_are_one_line_errors_naming_the_argument(cli, d, which):
    long = "L" * 300 + ".png"
    base = {"content": "photo.png", "-o": "o.png", "--init": "content", "--weights": "tiny.h5"}
    base[which] = long
    code, out, err = cli("stylize", base["content"], "art.png", "-o", base["-o"], *FAST,
                          "--init", base["--init"], "--weights", base["--weights"], cwd=d)
    label = {"-o": "--output", "content": "content image", "--init": "--init", "--weights": "--weights"}[which]
    _one_line(code, err, label, "bytes long, more than this filesystem's limit")


def test_an_output_name_ending_with_a_slash_is_refused(cli, d):
    code, _, err = cli("stylize", "photo.png", "art.png", "-o", "res.png/", *FAST, "--weights", "tiny.h5", cwd=d)
    _one_line(code, err, "res.png/", "not a file name")
    assert not (d / "res.png").exists()


def test_a_file_name_with_a_newline_still_gives_one_line(cli, d):
    code, _, err = cli("stylize", "no\nsuch.png", "art.png", "-o", "o.png", *FAST, "--weights", "tiny.h5", cwd=d)
    _one_line(code, err, "no\\nsuch.png: no such file")


@pytest.mark.parametrize("command", ["stylize", "demo"])
def test_output_under_a_regular_file_is_a_one_line_error(cli, d, command):
    (d / "somefile").write_bytes(b"x")
    args = (["stylize", "photo.png", "art.png", "-o", "somefile/sub/out.png"] if command == "stylize"
            else ["demo", "-o", "somefile/sub"])
    code, _, err = cli(*args, *FAST, "--weights", "tiny.h5", cwd=d)
    _one_line(code, err, "somefile is not a directory")
    assert (d / "somefile").read_bytes() == b"x"


# ---------------------------------------------------------------------------------------------
# numbers that used to end in a traceback (or a crash after the picture was saved)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, fragment", [
    (["--iterations", "1e11"], "--iterations"),
    (["--iterations", str(10 ** 11)], "--iterations must be an integer in 0..1000000"),
    (["--save-every", str(10 ** 30)], "--save-every"),
    (["--seed", "-1"], "--seed"),
    (["--alpha", "0", "--beta", "0", "--tv-weight", "0"], "all 0"),
    (["--beta", "1e308"], "--beta"),
    (["--alpha", "nan"], "--alpha"),
    (["--tv-weight", "inf"], "--tv-weight"),
    (["--beta", "-1"], "--beta"),
    (["--scales", "nan", "1"], "--scales"),
    (["--size", "8"], "--size must be an integer in 16..16384"),
    (["--size", str(10 ** 20)], "--size"),
])
def test_hostile_numbers_are_one_line_errors_before_anything_is_written(cli, d, extra, fragment):
    code, _, err = cli("stylize", "photo.png", "art.png", "-o", "o.png", *FAST, "--weights", "tiny.h5",
                        *extra, cwd=d)
    _one_line(code, err, fragment)
    assert not (d / "o.png").exists()


def test_out_of_memory_is_one_line_and_writes_nothing(cli, d, monkeypatch):
    def no_memory(*args, **kw):
        raise MemoryError                 # what NumPy raises when an allocation is refused
    monkeypatch.setattr(transfer, "stylize", no_memory)
    code, _, err = cli("stylize", "photo.png", "art.png", "-o", "o.png", *FAST, "--weights", "tiny.h5", cwd=d)
    _one_line(code, err, "out of memory", status=1)
    assert not (d / "o.png").exists()
    _no_temporaries(d)


# ---------------------------------------------------------------------------------------------
# signals: SIGTERM behaves like Ctrl-C (best image saved), exit 143
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("signum, status, name", [(signal.SIGTERM, 143, "SIGTERM"),
                                                  (signal.SIGHUP, 129, "SIGHUP")])
def test_sigterm_saves_the_best_image_and_exits_143(d, signum, status, name):
    out = d / "term.png"
    proc = subprocess.Popen([sys.executable, "-m", "numpynst", "stylize", "photo.png", "art.png", "-o", str(out),
                             "--iterations", "100000", "--tol", "0", "--save-every", "1", "--quiet",
                             "--weights", "tiny.h5"], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, MPLBACKEND="Agg"))
    frames = d / "term_frames"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (frames.exists() and len(list(frames.glob("*.png"))) >= 3):
        time.sleep(0.05)
    os.kill(proc.pid, signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    assert f"terminated ({name}): saved the best image so far" in stdout
    assert np.asarray(Image.open(out)).shape == (24, 32, 3)
    _no_temporaries(d)


# ---------------------------------------------------------------------------------------------
# the Python API: arrays by one stated rule, numpy integers wherever an int is taken
# ---------------------------------------------------------------------------------------------

GOOD = np.random.default_rng(1).integers(0, 256, (24, 32, 3))


@pytest.mark.parametrize("arr, fragment", [
    (GOOD / 255.0, "multiply it by 255"),                        # a 0..1 float image: not black
    (GOOD.astype(bool), "dtype bool"),
    (GOOD.astype(np.int64) + 200, "0..255"),
    (GOOD.astype(np.complex128), "dtype complex128"),
    (np.where(GOOD > 250, np.nan, GOOD.astype(float)), "NaN"),
    (np.zeros((0, 5, 3), np.uint8), "no pixels"),
    (np.zeros((5, 0, 3)), "no pixels"),
])
def test_stylize_refuses_arrays_it_cannot_take_faithfully(arr, fragment):
    model = tiny_vgg(dtype=np.float32)
    with pytest.raises(OptionError) as err:
        numpynst.stylize(arr, GOOD.astype(np.uint8), model=model, iterations=1, content_layer="block2_conv2")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("content") and fragment in msg, msg
    assert "alpha/beta" not in msg


def test_accepted_arrays_follow_the_stated_rule():
    u8 = GOOD.astype(np.uint8)
    for arr in (GOOD, GOOD.astype(np.int16), GOOD.astype(np.float32), GOOD.astype(np.float64) + 0.3):
        np.testing.assert_array_equal(as_rgb(arr, "content"), u8)
    np.testing.assert_array_equal(as_rgb(np.zeros((2, 2, 3)), "content"), np.zeros((2, 2, 3), np.uint8))


def test_numpy_integers_are_accepted_where_ints_are(tmp_path):
    model = tiny_vgg(dtype=np.float32)
    r = numpynst.stylize(GOOD.astype(np.uint8), GOOD.astype(np.uint8), model=model, size=np.int64(32),
                         iterations=np.int32(2), seed=np.uint8(3), init="noise", content_layer="block2_conv2",
                         style_layers={"block1_conv1": 1.0})
    assert r.image.shape == (24, 32, 3)
    p = save_image(tmp_path / "a.jpg", r.image, quality=np.int64(90))
    assert load_image(p, size=np.int64(16), max_pixels=np.int64(10 ** 6)).shape == (12, 16, 3)


def test_numpy_floats_are_accepted_where_numbers_are():
    model = tiny_vgg(dtype=np.float32)
    u8 = GOOD.astype(np.uint8)
    r = numpynst.stylize(u8, u8, model=model, iterations=np.int64(2), style_scale=np.float32(1.0),
                         tol=np.float64(0.0), alpha=np.float32(1.0), beta=np.int64(1),
                         style_layers={"block1_conv1": np.float32(1.0)}, content_layer="block2_conv2")
    assert r.image.shape == (24, 32, 3) and r.iterations == 2


def test_stylize_api_refuses_a_negative_seed_and_too_many_iterations():
    model = tiny_vgg(dtype=np.float32)
    u8 = GOOD.astype(np.uint8)
    with pytest.raises(OptionError, match="seed"):
        numpynst.stylize(u8, u8, model=model, iterations=1, seed=-1, init="noise", content_layer="block2_conv2")
    with pytest.raises(OptionError, match="iterations"):
        numpynst.stylize(u8, u8, model=model, iterations=10 ** 11, content_layer="block2_conv2")

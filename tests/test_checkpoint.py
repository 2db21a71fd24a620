"""Checkpoints: a run killed at iteration k and continued ends with the uninterrupted run's picture,
bit for bit (NumPy, same thread count); the optimizers' states round-trip; another run's checkpoint,
a damaged one or a foreign file is refused in one line and left alone; the file is removed when
the picture is written and kept when the run is interrupted.

The kill is simulated in process by raising from the progress callback (after a checkpoint was
written at the previous logging point), and for real in a subprocess with SIGKILL.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from numpynst import transfer
from numpynst.checkpoint import Checkpoint, checkpoint_path, options_record
from numpynst.cli import main
from numpynst.errors import OptionError
from numpynst.optim import LBFGS, Adam, GradientDescent, make_optimizer, minimize
from numpynst.options import FIELDS, StylizeOptions, option
from numpynst.testing import write_tiny_vgg_h5
from numpynst.vgg import VGG


class Killed(Exception):
    """Stands for SIGKILL in process: nothing after it runs (no save, no cleanup of ours)."""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(d / "c.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / "s.png")
    write_tiny_vgg_h5(d / "tiny.h5")
    return d


@pytest.fixture(scope="module")
def model(files):
    return VGG.from_h5(files / "tiny.h5")


def _kill_at(k, scale=None):
    def callback(p):
        if p.iteration == k and (scale is None or p.scale == scale):
            raise Killed(f"killed at iteration {k}")
    return callback


RUNS = {
    "lbfgs": dict(optimizer="lbfgs", iterations=12),
    "adam": dict(optimizer="adam", iterations=12),
    "gd": dict(optimizer="gd", iterations=12),
    "lbfgs noise init": dict(optimizer="lbfgs", iterations=12, init="noise", seed=3),
    "scales, killed in the first": dict(optimizer="lbfgs", iterations=8, scales=[0.5, 1.0]),
    "scales, killed in the second": dict(optimizer="adam", iterations=8, scales=[0.5, 1.0]),
    "tiles": dict(optimizer="lbfgs", iterations=8, tile=16, content_layer="block2_conv2",
                  style_layers="block1_conv1;block2_conv1"),
}
KILL = {"scales, killed in the first": (5, 0.5), "scales, killed in the second": (3, 1.0)}


@pytest.mark.parametrize("case", list(RUNS))
def test_a_killed_and_continued_run_ends_with_the_uninterrupted_picture_bit_for_bit(case, files, model, tmp_path):
    kw = dict(RUNS[case], weights=files / "tiny.h5", tol=None)
    whole = transfer.stylize(files / "c.png", files / "s.png", model=model, **kw)
    ck = tmp_path / "o.png.checkpoint.npz"
    k, scale = KILL.get(case, (7, None))
    with pytest.raises(Killed):
        transfer.stylize(files / "c.png", files / "s.png", model=model, checkpoint=ck, checkpoint_every=0,
                         callback=_kill_at(k, scale), **kw)
    assert ck.exists()                     # the state after step k - 1 (the last logging point)
    resumed = transfer.stylize(files / "c.png", files / "s.png", model=model, checkpoint=ck,
                               checkpoint_every=0, **kw)
    assert not ck.exists()                 # complete: removed
    assert resumed.image_float.tobytes() == whole.image_float.tobytes()
    assert resumed.image.tobytes() == whole.image.tobytes()
    for key in whole.history:
        assert np.array_equal(resumed.history[key], whole.history[key]), key
    assert resumed.iterations == whole.iterations and resumed.stopped == whole.stopped


def test_a_run_killed_twice_still_ends_the_same(files, model, tmp_path):
    kw = dict(optimizer="lbfgs", iterations=14, weights=files / "tiny.h5", tol=None, scales=[0.5, 1.0])
    whole = transfer.stylize(files / "c.png", files / "s.png", model=model, **kw)
    ck = tmp_path / "ck.npz"
    for k, scale in ((9, 0.5), (4, 1.0)):
        with pytest.raises(Killed):
            transfer.stylize(files / "c.png", files / "s.png", model=model, checkpoint=ck, checkpoint_every=0,
                             callback=_kill_at(k, scale), **kw)
    resumed = transfer.stylize(files / "c.png", files / "s.png", model=model, checkpoint=ck, **kw)
    assert resumed.image_float.tobytes() == whole.image_float.tobytes()


# ---------------------------------------------------------------------------------------------
# the optimizers' state and minimize's resume, on a function with a known gradient
# ---------------------------------------------------------------------------------------------

def _rosen(x):
    """Rosenbrock in n dimensions, with its gradient and one extra value (as stylize's parts)."""
    a, b = x[:-1], x[1:]
    f = np.sum(100.0 * (b - a * a) ** 2 + (1 - a) ** 2)
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * (b - a * a) - 2.0 * (1 - a)
    g[1:] += 200.0 * (b - a * a)
    return f, g, np.array([np.sum(x * x)])


@pytest.mark.parametrize("name", ["lbfgs", "adam", "gd"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_minimize_resumed_from_any_step_equals_the_whole_run(name, dtype):
    x0 = np.linspace(-1.5, 1.5, 30).astype(dtype)
    opt = lambda: make_optimizer(name, **({"lr": 1e-4} if name == "gd" else {"lr": 0.05} if name == "adam" else {}))  # noqa
    whole = minimize(_rosen, x0, opt(), 40, log_every=1)
    states = []
    minimize(_rosen, x0, opt(), 40, log_every=1, checkpoint=states.append, checkpoint_every=0)
    assert [s.step for s in states] == list(range(1, 40))       # every logging point but the last
    for s in states[::7]:
        again = minimize(_rosen, None, opt(), 40, log_every=1, resume=s)
        assert again.x.tobytes() == whole.x.tobytes() and again.best_x.tobytes() == whole.best_x.tobytes()
        assert again.history.tobytes() == whole.history.tobytes() and again.iterations == 40
        assert again.x.dtype == dtype


def test_state_dicts_round_trip_and_refuse_another_optimizer():
    x = np.linspace(0, 1, 9)
    for opt in (LBFGS(history=3), Adam(lr=0.1), GradientDescent(lr=0.01)):
        f, g, _ = _rosen(x)
        for _ in range(4):
            x2, f, g = opt.step(lambda z: _rosen(z)[:2], x, f, g)
        state = opt.state_dict()
        twin = type(opt)(**({"history": 3} if isinstance(opt, LBFGS) else {"lr": opt.lr}))
        twin.load_state(state)
        for key, value in state.items():
            got = twin.state_dict()[key]
            assert (np.array_equal(got, value) and np.asarray(got).dtype == np.asarray(value).dtype
                    if isinstance(value, np.ndarray) else got == value), key
    lb = LBFGS().state_dict()
    with pytest.raises(ValueError, match="cannot continue 'adam'"):
        Adam().load_state(lb)
    partial = {"name": "lbfgs", "S": np.zeros((10, 3))}
    with pytest.raises(ValueError, match="incomplete"):
        LBFGS().load_state(partial)


# ---------------------------------------------------------------------------------------------
# identity: another run's checkpoint is refused; a foreign file is never replaced
# ---------------------------------------------------------------------------------------------

def test_every_option_that_shapes_the_picture_is_in_the_identity():
    record = options_record(StylizeOptions().validate())
    assert set(record) == {n for n in FIELDS if option(n).picture}
    assert {"checkpoint_every", "no_checkpoint"}.isdisjoint(record)
    assert {"iterations", "beta", "style_layers", "scales", "tile", "optimizer", "seed"} <= set(record)


def _killed_checkpoint(files, model, ck, **kw):
    kw = {"optimizer": "lbfgs", "iterations": 6, "weights": files / "tiny.h5", **kw}
    with pytest.raises(Killed):
        transfer.stylize(files / "c.png", files / "s.png", model=model, checkpoint=ck, checkpoint_every=0,
                         callback=_kill_at(3), **kw)
    return kw


@pytest.mark.parametrize("change, expected", [
    ({"iterations": 7}, "option iterations 6 there, 7 now"),
    ({"beta": 2.0}, "option beta"),
    ({"optimizer": "adam"}, "option optimizer lbfgs there, adam now"),
    ({"style": "c.png"}, "the style image #1 differs"),
    ({"content": "s.png"}, "the content image differs"),
])
def test_a_checkpoint_of_another_run_is_refused_in_one_line_and_left_alone(change, expected, files, model,
                                                                           tmp_path):
    ck = tmp_path / "ck.npz"
    kw = _killed_checkpoint(files, model, ck)
    before = ck.read_bytes()
    content, style = files / change.pop("content", "c.png"), files / change.pop("style", "s.png")
    with pytest.raises(OptionError) as err:
        transfer.stylize(content, style, model=model, checkpoint=ck, **{**kw, **change})
    text = str(err.value)
    assert "\n" not in text and "belongs to another run" in text and expected in text, text
    assert ck.read_bytes() == before


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not a zip", b"hello"])
def test_a_file_that_is_no_checkpoint_is_refused_and_never_replaced(content, files, model, tmp_path):
    ck = tmp_path / "ck.npz"
    ck.write_bytes(content)
    with pytest.raises(OptionError, match="not a readable numpynst checkpoint.*left alone"):
        transfer.stylize(files / "c.png", files / "s.png", model=model, checkpoint=ck, iterations=2,
                         weights=files / "tiny.h5", checkpoint_every=0)
    assert ck.read_bytes() == content
    np.savez(ck, x=np.zeros(3))            # a valid npz, but someone else's
    with pytest.raises(OptionError, match="not a readable numpynst checkpoint"):
        transfer.stylize(files / "c.png", files / "s.png", model=model, checkpoint=ck, iterations=2,
                         weights=files / "tiny.h5", checkpoint_every=0)


def test_a_file_appearing_at_the_path_during_the_run_is_left_alone(files, model, tmp_path):
    ck = tmp_path / "ck.npz"
    notes = []
    checkpoint = Checkpoint(ck, every=0, log=notes.append)

    def intruder(p):
        if p.iteration == 3:
            ck.unlink()
            ck.write_bytes(b"mine")
    transfer.stylize(files / "c.png", files / "s.png", model=model, checkpoint=checkpoint, iterations=6,
                     weights=files / "tiny.h5", callback=intruder, tol=None)
    assert ck.read_bytes() == b"mine"
    assert len(notes) == 1 and "not written" in notes[0] and "left alone" in notes[0], notes
    checkpoint.remove()                    # not ours: stays
    assert ck.read_bytes() == b"mine"


def test_no_checkpoint_writes_none_and_the_plan_decides_by_default(files, model, tmp_path):
    ck = tmp_path / "ck.npz"
    transfer.stylize(files / "c.png", files / "s.png", model=model, checkpoint=Checkpoint(ck, enabled=False),
                     iterations=3, weights=files / "tiny.h5", callback=lambda p: None)
    assert not ck.exists()
    c = Checkpoint(ck)                     # every=None: a tiny run is planned far below 300 s
    transfer.stylize(files / "c.png", files / "s.png", model=model, checkpoint=c, iterations=3,
                     weights=files / "tiny.h5")
    assert c.active is False and c.writes == 0
    with pytest.raises(OptionError, match="cannot be combined"):
        StylizeOptions(checkpoint_every=5, no_checkpoint=True).validate()


# ---------------------------------------------------------------------------------------------
# the command line: SIGKILL for real, then the same command again
# ---------------------------------------------------------------------------------------------

def _cli_args(files, out, *extra):
    return ["stylize", str(files / "c.png"), str(files / "s.png"), "-o", str(out), "--weights",
            str(files / "tiny.h5"), "--iterations", "60", "--tol", "0", "--quiet", *extra]


def test_sigkill_then_the_same_command_gives_the_uninterrupted_picture(files, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), os.getcwd()) if p)}
    cmd = [sys.executable, "-m", "numpynst"]
    ref = tmp_path / "ref.png"
    subprocess.run(cmd + _cli_args(files, ref, "--no-checkpoint"), env=env, check=True, capture_output=True)
    out = tmp_path / "out.png"
    ck = checkpoint_path(out)
    proc = subprocess.Popen(cmd + _cli_args(files, out, "--checkpoint-every", "0"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not ck.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)                        # somewhere inside the run
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        pytest.fail(f"the run ended before the kill (exit {proc.returncode}): make it longer")
    assert ck.exists() and not out.exists()
    done = subprocess.run(cmd + _cli_args(files, out, "--checkpoint-every", "0"), env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert "continuing from checkpoint" in done.stderr
    assert not ck.exists()
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(ref)))


def test_ctrl_c_keeps_the_checkpoint_and_says_how_to_continue(files, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o.png"
    stylize = transfer.stylize

    def interrupted(*a, callback=None, **k):
        def cb(p):
            if p.iteration == 4:
                raise KeyboardInterrupt
        return stylize(*a, callback=cb, **k)
    monkeypatch.setattr(transfer, "stylize", interrupted)
    code = main(_cli_args(files, out, "--checkpoint-every", "0"))
    err = capsys.readouterr()
    assert code == 130 and out.exists() and checkpoint_path(out).exists()
    assert "run the same command with --overwrite to continue" in err.out + err.err
    monkeypatch.setattr(transfer, "stylize", stylize)
    assert main(_cli_args(files, out, "--checkpoint-every", "0", "--overwrite")) == 0
    assert "continuing from checkpoint" in capsys.readouterr().err
    assert not checkpoint_path(out).exists()


def test_cli_refuses_a_checkpoint_path_that_is_a_link_or_an_input(files, tmp_path, capsys):
    out = tmp_path / "o.png"
    for target, expected in ((files / "c.png", "is the input"), (tmp_path / "elsewhere.npz", "symbolic link")):
        os.symlink(target, checkpoint_path(out))
        assert main(_cli_args(files, out)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("numpynst: error: checkpoint ") and expected in err, err
        assert not out.exists() and not target.exists() or target == files / "c.png"
        os.unlink(checkpoint_path(out))


@pytest.mark.parametrize("optimizer, vectors", [("lbfgs", 2 * 10 + 3), ("adam", 5), ("gd", 3)])
def test_the_checkpoint_size_is_the_documented_number_of_image_vectors(optimizer, vectors, files, model,
                                                                       tmp_path):
    """docs/checkpoints.md: (2m + 3) image-sized vectors for L-BFGS (m = 10), 5 for Adam, 3 for gd;
    and its figures for 1024 and 4096 px follow from the formula."""
    ck = tmp_path / "ck.npz"
    _killed_checkpoint(files, model, ck, optimizer=optimizer)
    n = 32 * 48 * 3 * 4                                  # bytes of one float32 image (32x48, RGB)
    size = ck.stat().st_size
    assert vectors * n <= size <= vectors * n + 8192, (size, vectors * n)   # + headers, history, metadata
    assert round(23 * 3 * 1024 ** 2 * 4 / 1e9, 2) == 0.29 and round(23 * 3 * 4096 ** 2 * 4 / 1e9, 1) == 4.6


def test_the_numbers_in_docs_checkpoints_md_are_the_codes():
    from pathlib import Path
    from numpynst.options import DEFAULT_CHECKPOINT_SECONDS
    text = (Path(__file__).resolve().parents[1] / "docs" / "checkpoints.md").read_text()
    assert f"a checkpoint every {DEFAULT_CHECKPOINT_SECONDS:g} s" in text
    gb = lambda side: 23 * 3 * side ** 2 * 4 / 1e9          # noqa: E731  (2m + 3 vectors, m = 10)
    assert f"{gb(1024):.2f} GB at 1024 px square, {gb(4096):.1f} GB at 4096 px" in text

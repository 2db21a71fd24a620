"""numpynst batch on hostile input: nothing lost, nothing blocks, one line and exit 2 instead of a traceback.

Everything here fails before a cluster would start (or needs none), so these tests cost seconds; the
ones that need jobs to run (SIGTERM, a decompression bomb in a job, a contact sheet under a file-size
limit) are in tests/test_batch.py beside its shared cluster.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from numpynst import batch, cli
from numpynst.batch import outdir as od
from numpynst.batch.jobs import Job, prepare_jobs
from numpynst.batch.options import MAX_ITERATIONS
from numpynst.batch.worker import execute_job, verify_output
from numpynst.errors import ManifestError, OptionError
from numpynst.testing import write_tiny_vgg_h5

LONG = "x" * 300                    # longer than any filesystem's NAME_MAX (255)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("safety")
    rng = np.random.default_rng(3)
    for name in ("c1", "s1", "s2"):
        Image.fromarray(rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)).save(d / f"{name}.png")
    write_tiny_vgg_h5(d / "tiny.h5")
    return d


def _csv(path, header, *rows):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@contextlib.contextmanager
def no_hang(seconds=20):
    """Fail (instead of hanging the suite) if the block blocks, as an open() of a FIFO would."""
    def fire(*_):
        raise TimeoutError(f"blocked for {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _one_line_exit_2(argv, capsys, *expected):
    """Run the CLI; assert exit 2 and a single ``numpynst: error:`` line containing ``expected``."""
    capsys.readouterr()
    with no_hang():
        code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("numpynst: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


# ------------------------------------------------------------------------------ 1. OUTDIR
@pytest.mark.parametrize("name", ["summary.csv", "contact_sheet.png"])
def test_an_input_named_like_a_report_file_in_outdir_is_refused(name, files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    victim = out / name
    victim.write_bytes((files / "s1.png").read_bytes())        # the user's picture, under that name
    before = victim.read_bytes()
    manifest = _csv(tmp_path / "m.csv", "content,style,weights", f"{files}/c1.png,{victim},{files}/tiny.h5")
    err = _one_line_exit_2(["batch", str(manifest), "-o", str(out), "--quiet"], capsys,
                           "row 1 (line 2), column 'style'", f"input is OUTDIR/{name}", "which this batch writes")
    assert victim.read_bytes() == before and sorted(os.listdir(out)) == [name], err


def test_a_hard_link_to_an_input_under_a_jobs_output_name_is_refused(files, tmp_path):
    c = tmp_path / "c.png"
    c.write_bytes((files / "c1.png").read_bytes())
    job, = prepare_jobs([Job(str(c), (str(files / "s1.png"),), {"weights": str(files / "tiny.h5")})])
    out = tmp_path / "out"
    out.mkdir()
    os.link(c, out / job.output)                                # the same inode under the job's name
    with pytest.raises(ManifestError, match=r"job #1, column 'content': input .*c\.png is .*which this batch writes"):
        batch.run([job], out, progress=False)
    os.unlink(out / job.sidecar) if (out / job.sidecar).exists() else None
    (out / job.output).unlink()
    os.symlink(c, out / job.sidecar)                            # a link at a name the batch writes
    with pytest.raises(OptionError, match="is a symbolic link, and the batch writes a file of that name"):
        batch.run([job], out, progress=False)


def test_the_manifest_itself_in_outdir_is_refused(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    manifest = _csv(out / "summary.csv", "content,style,weights",
                    f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5")
    before = manifest.read_bytes()
    _one_line_exit_2(["batch", str(manifest), "-o", str(out), "--quiet"], capsys,
                     f"{manifest} is this batch's own summary.csv, which this batch writes")
    assert manifest.read_bytes() == before


def test_a_report_file_the_runner_did_not_write_is_not_replaced(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").write_text("my,own,table\n1,2,3\n")
    manifest = _csv(tmp_path / "m.csv", "content,style,weights", f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5")
    _one_line_exit_2(["batch", str(manifest), "-o", str(out), "--quiet"], capsys,
                     "summary.csv exists and was not written by numpynst batch")
    assert (out / "summary.csv").read_text() == "my,own,table\n1,2,3\n"
    # what the runner writes is recognised as its own
    from numpynst.batch.report import SUMMARY_COLUMNS, report_is_ours, write_summary
    write_summary(out / "summary.csv", [])
    assert report_is_ours(out / "summary.csv")
    assert (out / "summary.csv").read_text().splitlines()[0] == ",".join(SUMMARY_COLUMNS)
    Image.new("RGB", (4, 4)).save(out / "contact_sheet.png")
    assert not report_is_ours(out / "contact_sheet.png")


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_only_the_runners_own_abandoned_temporaries_are_removed(tmp_path):
    import socket
    out = tmp_path / "out"
    out.mkdir()
    # the user's files that match every pattern the runner ever used, and look-alike folders
    lookalikes = [out / ".photo.abc123.tmp.png", out / ".summary.x1.tmp.csv", out / ".nst-0123456789ab.tmp.png",
                  out / ".numpynst-batch-notes"]
    for p in lookalikes:
        p.write_text("mine")
    forged = out / ".numpynst-batch-unmarked"                  # no marker: not provably ours
    forged.mkdir()
    (forged / "data.png").write_text("mine")
    alive = out / ".numpynst-batch-alive"                      # marked, but its process still runs
    alive.mkdir()
    (alive / od.OWNER_FILE).write_text(json.dumps({"tool": od.OWNER_TOOL, "host": socket.gethostname(),
                                                   "pid": os.getpid()}))
    other_host = out / ".numpynst-batch-elsewhere"             # marked on another machine: can't tell
    other_host.mkdir()
    (other_host / od.OWNER_FILE).write_text(json.dumps({"tool": od.OWNER_TOOL, "host": "elsewhere.invalid",
                                                        "pid": _dead_pid()}))
    fifo_marker = out / ".numpynst-batch-fifo"                 # a FIFO as the marker must not block
    fifo_marker.mkdir()
    os.mkfifo(fifo_marker / od.OWNER_FILE)
    with od.Scratch(out) as abandoned:                         # a real run's folder, then "killed"
        (abandoned.path / ".nst-aaaa.tmp.png").write_text("half")
        marker = json.loads((abandoned.path / od.OWNER_FILE).read_text())
        marker["pid"] = _dead_pid()
        (abandoned.path / od.OWNER_FILE).write_text(json.dumps(marker))
        with no_hang():
            assert od.remove_stale(out) == 1
        assert not abandoned.path.exists()
    for p in lookalikes:
        assert p.read_text() == "mine"
    assert (forged / "data.png").exists() and (alive / od.OWNER_FILE).exists()
    assert (other_host / od.OWNER_FILE).exists() and (fifo_marker / od.OWNER_FILE).exists()
    with od.Scratch(out) as mine:                              # this run's own folder goes at the end
        (mine.path / "x.png").write_text("tmp")
    assert not mine.path.exists()


def test_publish_puts_the_sidecar_first_and_an_image_alone_is_not_done(files, tmp_path, monkeypatch):
    job, = prepare_jobs([Job(str(files / "c1.png"), (str(files / "s1.png"),),
                             {"weights": str(files / "tiny.h5"), "iterations": 2})])
    out = tmp_path / "out"
    out.mkdir()
    real_move, moved = od.move_into, []

    def move_then_die(src, dest):                              # killed between the two renames
        if moved:
            raise KeyboardInterrupt
        moved.append(Path(src).name)
        return real_move(src, dest)
    monkeypatch.setattr(od, "move_into", move_then_die)
    with pytest.raises(KeyboardInterrupt):
        execute_job(job.spec(), str(out))
    assert moved == [job.sidecar]                              # the sidecar went first
    assert (out / job.sidecar).exists() and not (out / job.output).exists()
    assert verify_output(out, job.spec()) is None              # a sidecar without its image: not done
    assert [p.name for p in out.iterdir()] == [job.sidecar]    # the private folder went with the interrupt
    monkeypatch.setattr(od, "move_into", real_move)
    row = execute_job(job.spec(), str(out))
    assert row["status"] == "done" and verify_output(out, job.spec())["digest"] == job.digest
    (out / job.sidecar).unlink()
    assert verify_output(out, job.spec()) is None              # an image without its sidecar: not done


# ------------------------------------------------------------------------------ 2. cells that cannot run
BAD_CELLS = {
    "lr with lbfgs": ("lr", "5", "lr does not apply to optimizer lbfgs"),
    "scales out of order": ("scales", "1;0.5", "expected increasing scales in (0, 1]"),
    "scale zero": ("scales", "0;1", "expected increasing scales in (0, 1]"),
    "scale above one": ("scales", "0.5;2", "expected a number in [0, 1], got '2'"),
    "iterations 1e20": ("iterations", "1e20", f"expected an integer in 0..{MAX_ITERATIONS}, got '1e20'"),
    "iterations over the maximum": ("iterations", str(MAX_ITERATIONS + 1), f"in 0..{MAX_ITERATIONS}"),
    "negative weight": ("beta", "-1", "expected a number in [0, 1e+15], got '-1'"),
    "nan weight": ("alpha", "nan", "expected a number in [0, 1e+15], got 'nan'"),
    "inf weight": ("tv_weight", "inf", "expected a number in [0, 1e+15], got 'inf'"),
    "overflowing weight": ("beta", "1e999", "expected a number in [0, 1e+15], got '1e999'"),
    "zero lr": ("lr", "0", "expected a number > 0"),
    "unknown optimizer": ("optimizer", "sgd", "expected one of"),
    "unknown init": ("init", "sideways", "expected one of content, noise, style or an image file"),
    "size too small": ("size", "8", "expected an integer in 16..16384 or 'original', got '8'"),
    "size too large": ("size", "20000", "expected an integer in 16..16384"),
    "numpy-looking size": ("size", "np.int64(32)", "expected an integer or 'original', got 'np.int64(32)'"),
    "fractional size": ("size", "32.5", "expected an integer or 'original', got '32.5'"),
    "blend with zero sum": ("style_blend", "0;0", "expected weights >= 0 with a positive sum"),
    "blend count": ("style_blend", "0.5;0.3;0.2", "3 weight(s) for 1 style image(s)"),
    "style bigger than any image": ("style_scale", "8", "size 4096 x style_scale 8 makes the style image 32768 px"),
    "negative layer weight": ("style_layers", "block1_conv1:-1", "expected a number >= 0"),
}


@pytest.mark.parametrize("case", list(BAD_CELLS))
def test_a_cell_that_cannot_run_is_refused_before_anything_runs(case, files, tmp_path, capsys):
    column, value, expected = BAD_CELLS[case]
    extra = ",size" if column == "style_scale" else ""            # the style side is size x style_scale
    size = ",4096" if extra else ""
    manifest = _csv(tmp_path / "m.csv", f"content,style,weights{extra},{column}",
                    f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5{size},",         # row 1: the default, fine
                    f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5{size},{value}")
    out = tmp_path / "out"
    _one_line_exit_2(["batch", str(manifest), "-o", str(out), "--quiet"], capsys,
                     f"{manifest}: row 2 (line 3), column {column!r}: ", expected)
    assert not out.exists()


def test_all_three_weights_zero_is_refused(files, tmp_path):
    manifest = _csv(tmp_path / "m.csv", "content,style,alpha,beta,tv_weight", "c1.png,s1.png,0,0,0")
    (tmp_path / "c1.png").write_bytes((files / "c1.png").read_bytes())
    (tmp_path / "s1.png").write_bytes((files / "s1.png").read_bytes())
    with pytest.raises(ManifestError, match=r"row 1 \(line 2\), column 'alpha': alpha, beta and tv_weight are all 0"):
        batch.read_manifest(manifest)


def test_json_values_from_hostile_rows_and_numpy_values_from_python(files, tmp_path):
    base = {"content": str(files / "c1.png"), "style": str(files / "s1.png")}
    for extra, expected in (({"iterations": 1e20}, "expected an integer in 0..1000000, got 1e+20"),
                            ({"beta": 10 ** 400}, "expected a number in [0, 1e+15], got 1000000"),
                            ({"preserve_color": [True] * 10_000}, "expected true or false, got [True, True"),
                            ({"style_layers": [[1]]}, "column 'style_layers': expected layers such as"),
                            ({"seed": -1}, "expected an integer in 0..18446744073709551615, got -1")):
        m = tmp_path / "m.jsonl"
        m.write_text(json.dumps({**base, **extra}) + "\n")
        with pytest.raises(ManifestError) as err:
            batch.read_manifest(m)
        assert expected in str(err.value) and len(str(err.value)) < 400, str(err.value)
    odd = tmp_path / "a\u2028b\x0cc.png"                       # line separators inside a JSON string
    odd.write_bytes((files / "c1.png").read_bytes())
    m.write_text(json.dumps({**base, "content": str(odd)}, ensure_ascii=False) + "\r\n")
    assert batch.read_manifest(m)[0].content == str(odd)
    m.write_text('{"content": "c1.png", "style": "s1.png", "seed": ' + "9" * 5000 + "}\n")
    with pytest.raises(ManifestError, match=r"row 1 \(line 1\): not valid JSON \(Exceeds the limit"):
        batch.read_manifest(m)
    # NumPy scalars are numbers of the right kind, not "wrong types that look right"
    job, = prepare_jobs([Job(str(files / "c1.png"), (str(files / "s1.png"),),
                             {"size": np.int64(32), "beta": np.float32(0.5), "preserve_color": np.bool_(True),
                              "iterations": np.float64(3.0)})])
    assert job.options == {"size": 32, "beta": 0.5, "preserve_color": True, "iterations": 3}
    assert all(type(v) in (int, float, bool) for v in job.options.values())


# ------------------------------------------------------------------------------ 3. one line, never a traceback
def test_overlong_names_are_one_line(files, tmp_path, capsys):
    manifest = _csv(tmp_path / "m.csv", "content,style,weights", f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5")
    _one_line_exit_2(["batch", str(manifest), "-o", str(tmp_path / LONG), "--quiet"], capsys, "--outdir", LONG[:50])
    _one_line_exit_2(["batch", str(tmp_path / (LONG + ".csv")), "-o", str(tmp_path / "o"), "--quiet"], capsys,
                     "manifest", "file name is 304 bytes long")
    bad = _csv(tmp_path / "m2.csv", "content,style", f"{LONG}.png,{files}/s1.png")
    _one_line_exit_2(["batch", str(bad), "-o", str(tmp_path / "o"), "--quiet"], capsys,
                     "row 1 (line 2), column 'content': cannot read", "long")
    _one_line_exit_2(["batch", "--grid", str(tmp_path / LONG), str(files), "-o", str(tmp_path / "o"), "--quiet"],
                     capsys, "contents folder", "cannot list it")
    assert not (tmp_path / "o").exists()


def test_csv_field_over_the_limit_and_json_nested_100000_deep(tmp_path, capsys):
    import csv
    big = _csv(tmp_path / "big.csv", "content,style", "a.png," + "b" * (csv.field_size_limit() + 10))
    _one_line_exit_2(["batch", str(big), "-o", str(tmp_path / "o"), "--quiet"], capsys,
                     "big.csv: line 2: not valid CSV (a cell longer than")
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"content": ' + "[" * 100_000 + "]" * 100_000 + ', "style": "s.png"}\n')
    _one_line_exit_2(["batch", str(deep), "-o", str(tmp_path / "o"), "--quiet"], capsys,
                     "deep.jsonl: row 1 (line 1): not a manifest row (JSON nested too deeply)")
    not_text = tmp_path / "video.csv"
    not_text.write_bytes(b"content,style\n\xff\xfe\x00binary")
    _one_line_exit_2(["batch", str(not_text), "-o", str(tmp_path / "o"), "--quiet"], capsys,
                     "video.csv: line 2 is not UTF-8 text")


@pytest.mark.parametrize("address", ["not a url", "tcp://", "http://localhost:8786", "tcp://host:99999",
                                     "tcp://host:" + "9" * 5000, "localhost"])
def test_a_scheduler_address_that_is_not_one(address, files, tmp_path, capsys):
    manifest = _csv(tmp_path / "m.csv", "content,style", f"{files}/c1.png,{files}/s1.png")
    _one_line_exit_2(["batch", str(manifest), "-o", str(tmp_path / "o"), "--scheduler", address, "--quiet"],
                     capsys, "--scheduler", "expected a Dask scheduler address such as tcp://HOST:8786")
    assert not (tmp_path / "o").exists()


def test_outdir_under_a_regular_file_or_not_writable(files, tmp_path, capsys):
    manifest = _csv(tmp_path / "m.csv", "content,style", f"{files}/c1.png,{files}/s1.png")
    (tmp_path / "somefile").write_text("not a folder")
    _one_line_exit_2(["batch", str(manifest), "-o", str(tmp_path / "somefile" / "sub"), "--quiet"], capsys,
                     "--outdir", "somefile/sub")
    _one_line_exit_2(["batch", str(manifest), "-o", str(tmp_path / "somefile"), "--quiet"], capsys,
                     "exists and is not a directory")
    assert (tmp_path / "somefile").read_text() == "not a folder"
    _one_line_exit_2(["batch", str(manifest), "-o", "", "--quiet"], capsys, "--outdir is empty")
    _one_line_exit_2(["batch", str(manifest), "-o", str(tmp_path / "o"), "--retries", "1000000000", "--quiet"],
                     capsys, "--retries must be an integer in 0..100")
    if os.geteuid() != 0:                                       # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        _one_line_exit_2(["batch", str(manifest), "-o", str(ro), "--quiet"], capsys, "no permission to write")


def test_fifos_and_devices_are_refused_without_blocking(files, tmp_path, capsys):
    fifo = tmp_path / "jobs.csv"
    os.mkfifo(fifo)
    _one_line_exit_2(["batch", str(fifo), "-o", str(tmp_path / "o"), "--quiet"], capsys,
                     "manifest", "FIFO", "not a regular file")
    pipe_input = tmp_path / "c.png"
    os.mkfifo(pipe_input)
    for column, row in (("content", f"{pipe_input},{files}/s1.png,"),
                        ("style", f"{files}/c1.png,{pipe_input},"),
                        ("init", f"{files}/c1.png,{files}/s1.png,{pipe_input}"),
                        ("weights", f"{files}/c1.png,{files}/s1.png,/dev/zero")):
        header = "content,style," + ("weights" if column == "weights" else "init")
        manifest = _csv(tmp_path / "m.csv", header, row)
        _one_line_exit_2(["batch", str(manifest), "-o", str(tmp_path / "o"), "--quiet"], capsys,
                         f"row 1 (line 2), column {column!r}", "not a regular file")
    _one_line_exit_2(["batch", "/dev/zero", "-o", str(tmp_path / "o"), "--quiet"], capsys, "not a regular file")
    assert not (tmp_path / "o").exists()


def test_control_characters_in_a_name_keep_the_error_on_one_line(files, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f'content,style\n"{files}/no\nsuch\x1b[2J.png",{files}/s1.png\n')
    err = _one_line_exit_2(["batch", str(manifest), "-o", str(tmp_path / "o"), "--quiet"], capsys,
                           "column 'content': cannot read", "no\\nsuch\\x1b[2J.png: no such file")
    assert "\x1b" not in err


def test_more_workers_than_the_machine_can_hold_is_refused_up_front(files, tmp_path, capsys):
    manifest = _csv(tmp_path / "m.csv", "content,style", f"{files}/c1.png,{files}/s1.png")
    _one_line_exit_2(["batch", str(manifest), "-o", str(tmp_path / "o"), "--workers", "1000000", "--quiet"],
                     capsys, "--workers 1000000: more than 4 processes per core")
    assert not (tmp_path / "o").exists()


def test_weights_that_are_no_vgg_or_lack_a_layer_are_refused_up_front(files, tmp_path):
    (tmp_path / "notes.h5").write_text("not HDF5 at all")
    write_tiny_vgg_h5(tmp_path / "vgg16.h5", arch="vgg16")
    base = f"{files}/c1.png,{files}/s1.png"
    for header, cell, expected in (
            ("weights", f"{tmp_path}/notes.h5", "column 'weights': weights file .*notes.h5 is not a readable HDF5"),
            ("weights,content_layer", f"{tmp_path}/vgg16.h5,block4_conv4",
             "column 'content_layer': block4_conv4 is not a layer of VGG16"),
            ("weights,style_layers", f"{tmp_path}/vgg16.h5,block1_conv1;block5_conv4",
             "column 'style_layers': block5_conv4 is not a layer of VGG16")):
        manifest = _csv(tmp_path / "m.csv", f"content,style,{header}", f"{base},{files}/tiny.h5" + "," * header.count(","),
                        f"{base},{cell}")
        with pytest.raises(ManifestError, match=r"m.csv: row 2 \(line 3\), " + expected):
            batch.read_manifest(manifest)


@pytest.fixture
def default_signals():
    """SIGINT, SIGTERM, SIGHUP with their default actions, as in a terminal, for one test: a suite run
    under ``nohup`` (or in the background) starts with some ignored, and the guard rightly leaves an
    ignored signal alone."""
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
                signal.SIGHUP: signal.SIG_DFL}
    saved = {s: signal.signal(s, h) for s, h in defaults.items()}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_a_signal_raises_once_and_only_where_the_batch_can_stop(default_signals, monkeypatch):
    from numpynst.batch.interrupts import InterruptGuard, Interrupted
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    with InterruptGuard() as guard:
        os.kill(os.getpid(), signal.SIGHUP)                      # outside raising(): recorded only
        assert guard.signum == signal.SIGHUP
        with pytest.raises(Interrupted) as exc:
            with guard.raising():                                # ... and raised on entering it
                pass
        assert exc.value.signum == signal.SIGHUP and guard.exit_status == 129
    with InterruptGuard() as guard:
        with pytest.raises(Interrupted) as exc:
            with guard.raising():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):                            # the handler runs between bytecodes
                    pass
        assert exc.value.signum == signal.SIGTERM and guard.exit_status == 143
        os.kill(os.getpid(), signal.SIGTERM)                     # the second one: ignored, cleanup goes on
        os.kill(os.getpid(), signal.SIGINT)
        assert guard.signum == signal.SIGTERM
    assert {s: signal.getsignal(s) for s in before} == before    # the caller's handlers are back
    monkeypatch.setattr(signal, "getsignal", lambda s: signal.SIG_IGN)   # as under nohup: left alone
    with InterruptGuard() as guard:
        assert not guard._saved


def test_a_resumed_batch_removes_only_its_own_leftovers(files, tmp_path):
    job, = prepare_jobs([Job(str(files / "c1.png"), (str(files / "s1.png"),),
                             {"weights": str(files / "tiny.h5"), "iterations": 2}, name="one")])
    out = tmp_path / "out"
    out.mkdir()
    assert execute_job(job.spec(), str(out))["status"] == "done"
    mine = [out / ".one.abc.tmp.png", out / ".summary.x.tmp.csv", out / ".numpynst-batch-x.png"]
    for p in mine:                                               # the user's files in every old pattern
        p.write_text("mine")
    with od.Scratch(out) as killed:                              # a run killed with SIGKILL
        (killed.path / job.output).write_text("half")
        marker = json.loads((killed.path / od.OWNER_FILE).read_text())
        (killed.path / od.OWNER_FILE).write_text(json.dumps({**marker, "pid": _dead_pid()}))
        res = batch.run([job], out, progress=False, contact_sheet=False)      # all done: no cluster
        assert not killed.path.exists()
    assert [r.status for r in res] == ["skipped"] and res.written == [out / "summary.csv"]
    assert all(p.read_text() == "mine" for p in mine)
    assert sorted(p.name for p in out.iterdir()) == sorted([job.output, job.sidecar, "summary.csv",
                                                            *(p.name for p in mine)])


def test_an_outdir_too_deep_for_the_results_names_is_refused_before_the_run(files, tmp_path):
    job, = prepare_jobs([Job(str(files / "c1.png"), (str(files / "s1.png"),), {"weights": str(files / "tiny.h5")})])
    deep = tmp_path
    while len(os.fsencode(str(deep))) < 4096 - 40:               # PATH_MAX: room for OUTDIR and its private
        # folder (+25), not for a result in it (+24 more)
        deep = deep / ("d" * min(200, 4096 - 40 - len(os.fsencode(str(deep))) - 1))
    deep.mkdir(parents=True)
    with pytest.raises(OptionError, match="cannot write the results there .*(File name too long|too long)"):
        batch.run([job], deep, progress=False)
    assert os.listdir(deep) == []                                # the private folder went too


def test_the_keeper_replaces_local_workers_that_did_not_come_back(monkeypatch):
    """A nanny does not restart a worker killed while it was starting it (dask/distributed#7312):
    the batch replaces a local worker missing for REVIVE_SECONDS, and leaves other clusters alone."""
    import numpynst.batch as b

    class Client:
        workers = {"tcp://a": {"name": 0}}

        def nthreads(self):
            return {a: 1 for a in self.workers}

        def scheduler_info(self):
            return {"workers": self.workers}

    class Cluster:
        def __init__(self):
            self.worker_spec = {0: {}, 1: {}}
            self.scaled = []

        def scale(self, n):
            self.scaled.append(n)
            self.worker_spec[2] = {}           # SpecCluster adds a spec under a new name

    lines = []
    cluster = Cluster()
    keeper = b._Keeper(Client(), cluster, lines.append)
    clock = [100.0]
    monkeypatch.setattr(b.time, "monotonic", lambda: clock[0])
    assert keeper.check() == 1 and cluster.scaled == []          # missing since now: a restart may be on its way
    clock[0] += b.REVIVE_SECONDS - 1
    assert keeper.check() == 1 and cluster.scaled == []
    clock[0] += 2
    keeper.check()
    assert cluster.scaled == [2] and sorted(cluster.worker_spec) == [0, 2] and keeper.revived == 1
    assert lines == ["dask: 1 worker(s) died and did not come back; started new ones"]
    other = b._Keeper(Client(), None, lines.append)             # --scheduler: not ours to change
    clock[0] += 1000
    assert other.check() == 1 and other.check() == 1 and len(lines) == 1

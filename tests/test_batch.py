"""numpynst batch: manifests, identity, a real 2-worker LocalCluster, resume, worker death, bad input.

The jobs are real :func:`numpynst.transfer.stylize` runs with a tiny random VGG on 24x24 images and
3 iterations, so the Dask machinery is what costs time here (one cluster, shared by the module).
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from numpynst import batch, cli
from numpynst.batch.cluster import plan_local
from numpynst.batch.jobs import Job, job_digest, prepare_jobs
from numpynst.batch.report import SUMMARY_COLUMNS, grid_layout
from numpynst.batch.worker import execute_job, model_loads
from numpynst.errors import BackendError, ManifestError, OptionError
from numpynst.testing import write_tiny_vgg_h5

distributed = pytest.importorskip("distributed")


def _write_png(path, rng, h=24, w=24):
    Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(7)
    write_tiny_vgg_h5(d / "tiny.h5")
    for name in ("c1", "c2", "s1", "s2"):
        _write_png(d / f"{name}.png", rng)
    (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing an image decoder wants")
    return d


@pytest.fixture(scope="module")
def client():
    from numpynst.batch.cluster import keep_blas_env, local_cluster
    with keep_blas_env():            # a nanny replacing a killed worker rewrites them in this process
        cluster = local_cluster(n_workers=2, blas_threads=2, retries=2, dashboard=False)
        c = distributed.Client(cluster)
        yield c
        c.close()
        cluster.close()


def _manifest(path, header, *rows):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


# ------------------------------------------------------------------------------ manifests, identity
MANIFEST_ERRORS = {
    "missing column": ("content,iterations", ["c1.png,3"], "header (line 1), column 'style': missing required"),
    "unknown option": ("content,style,iters", ["c1.png,s1.png,3"], "column 'iters': unknown column"),
    "bad value type": ("content,style,iterations", ["c1.png,s1.png,3", "c2.png,s1.png,ten"],
                       "row 2 (line 3), column 'iterations': expected an integer, got 'ten'"),
    "bad choice": ("content,style,optimizer", ["c1.png,s1.png,sgd"],
                   "row 1 (line 2), column 'optimizer': expected one of gd, adam, lbfgs"),
    "duplicate output": ("content,style,seed", ["c1.png,s1.png,1", "c2.png,s1.png,1", "c1.png,s1.png,1"],
                         "row 3 (line 4): duplicate output"),
    "missing file": ("content,style", ["c1.png,s1.png", "c1.png,nope.png"],
                     "row 2 (line 3), column 'style': cannot read "),
}


@pytest.mark.parametrize("case", list(MANIFEST_ERRORS))
def test_manifest_error_names_file_row_and_column_before_anything_runs(case, files, tmp_path, capsys):
    header, rows, expected = MANIFEST_ERRORS[case]
    manifest = _manifest(files / f"m_{case.replace(' ', '_')}.csv", header, *rows)
    with pytest.raises(ManifestError) as err:
        batch.read_manifest(manifest)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(manifest)) and expected in msg, msg
    out = tmp_path / "out"
    assert cli.main(["batch", str(manifest), "-o", str(out), "--quiet"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.strip() == f"numpynst: error: {msg}" and "Traceback" not in stderr
    assert not out.exists()                                   # nothing ran, nothing was created


def test_jsonl_manifest_lists_and_defaults(files):
    manifest = files / "jobs.jsonl"
    manifest.write_text(
        "# a comment\n"
        + json.dumps({"content": "c1.png", "style": ["s1.png", "s2.png"], "style_blend": [0.7, 0.3],
                      "style_layers": {"block1_conv1": 0.5, "block2_conv1": 1}, "name": "blend"}) + "\n\n"
        + json.dumps({"content": "c2.png", "style": "s1.png", "preserve_color": "yes", "iterations": 5}) + "\n")
    jobs = batch.read_manifest(manifest, defaults={"iterations": "4", "weights": str(files / "tiny.h5")})
    a, b = jobs
    assert a.styles == (str(files / "s1.png"), str(files / "s2.png")) and a.name == "blend"
    assert a.options["style_blend"] == [0.7, 0.3] and a.options["style_layers"] == {"block1_conv1": 0.5,
                                                                                    "block2_conv1": 1.0}
    assert a.options["iterations"] == 4 and b.options["iterations"] == 5     # a row beats the default
    assert b.options["preserve_color"] is True and b.options["weights"] == str(files / "tiny.h5")
    with pytest.raises(ManifestError, match=r"jobs.jsonl: row 1 \(line 1\), column 'seed': expected an integer"):
        manifest.write_text(json.dumps({"content": "c1.png", "style": "s1.png", "seed": "x"}) + "\n")
        batch.read_manifest(manifest)


def test_identity_is_file_content_and_effective_options(files, tmp_path):
    c1, s1 = str(files / "c1.png"), [str(files / "s1.png")]
    base = job_digest(c1, s1, {"iterations": 3})
    copy = tmp_path / "renamed.png"
    copy.write_bytes((files / "c1.png").read_bytes())
    assert job_digest(str(copy), s1, {"iterations": 3}) == base               # a path is not an identity
    img = np.array(Image.open(files / "c1.png"))
    img[0, 0, 0] ^= 1
    Image.fromarray(img).save(copy)
    assert job_digest(str(copy), s1, {"iterations": 3}) != base               # one bit of one pixel is
    assert job_digest(c1, s1, {"iterations": 4}) != base
    from numpynst.transfer import DEFAULT_ITERATIONS
    assert job_digest(c1, s1, {}) == job_digest(c1, s1, {"iterations": DEFAULT_ITERATIONS})
    # same inputs and options under two names are two outputs; under one name, a duplicate
    jobs = prepare_jobs([Job(c1, tuple(s1), {"iterations": 3}, name="a"), Job(c1, tuple(s1), {"iterations": 3})])
    assert jobs[0].digest == jobs[1].digest and jobs[0].output != jobs[1].output
    same = tmp_path / "same.png"
    same.write_bytes((files / "c1.png").read_bytes())
    with pytest.raises(ManifestError, match="job #2: duplicate output x-.*same name, inputs and options as job #1"):
        prepare_jobs([Job(c1, tuple(s1), {}, name="x"), Job(str(same), tuple(s1), {}, name="x")])


def test_grid_is_the_cross_product_and_lays_out_as_a_table(files, tmp_path):
    contents, styles = tmp_path / "c", tmp_path / "s"
    contents.mkdir(), styles.mkdir()
    for d, names in ((contents, ("a", "b")), (styles, ("x", "y"))):
        for n in names:
            (d / f"{n}.png").write_bytes((files / "c1.png").read_bytes() if n in "ax" else
                                         (files / "s2.png").read_bytes())
    (contents / "notes.txt").write_text("not an image")
    jobs = batch.grid_jobs(contents, styles, iterations=[2, 3], beta=1e-3)
    assert len(jobs) == 2 * 2 * 2 and len({j.output for j in jobs}) == 8
    combos = {(Path(j.content).stem, Path(j.styles[0]).stem, j.options["iterations"]) for j in jobs}
    assert combos == {(c, s, i) for c in "ab" for s in "xy" for i in (2, 3)}
    assert all(j.options["beta"] == 1e-3 for j in jobs)
    rows, cols, cells = grid_layout(jobs)
    assert len(rows) == 2 and len(cols) == 4 and len(set(cells.values())) == 8
    with pytest.raises(OptionError, match="grid option iters: unknown option"):
        batch.grid_jobs(contents, styles, iters=[1])
    with pytest.raises(OptionError, match=r"grid option size: expected an integer in 16..16384 or 'original', got 8"):
        batch.grid_jobs(contents, styles, size=[8])
    with pytest.raises(OptionError, match="styles folder .*: no images"):
        batch.grid_jobs(contents, tmp_path)


def test_local_cluster_plan_never_oversubscribes():
    for cores in (1, 2, 3, 8, 64):
        for workers in (None, 1, 2, 3, cores):
            n, blas = plan_local(workers, cores=cores, memory=1 << 40)
            assert blas == max(1, cores // n)
            assert n * blas <= max(cores, n)          # only more workers than cores can exceed it
    assert plan_local(None, cores=8, memory=4 << 30) == (2, 4)                # memory caps the workers
    with pytest.raises(OptionError, match="--workers must be an integer >= 1"):
        plan_local(0, cores=2)


def test_import_numpynst_does_not_load_dask():
    code = "import sys, numpynst, numpynst.batch; print('distributed' in sys.modules or 'dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_dask_is_a_clear_error(monkeypatch):
    from numpynst.batch.cluster import require_dask
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(BackendError, match=r"numpynst batch needs dask\[distributed\]: pip install 'numpynst\[batch\]'"):
        require_dask()


# ------------------------------------------------------------------------------ on a real cluster
def test_workers_get_the_blas_thread_count(client):
    env = client.run(lambda: {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                              "MKL_NUM_THREADS")})
    assert len(env) == 2 and all(set(v.values()) == {"2"} for v in env.values())
    # one job per one-thread worker at a time: a job that kills its worker takes no queued job with it
    assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.WORKER_SATURATION) == 1.0


def _stat(path):
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_batch_runs_each_job_once_and_resumes_only_what_is_missing(client, files, tmp_path, capsys):
    manifest = _manifest(files / "ok.csv", "content,style,iterations,weights,beta,init",
                         "c1.png,s1.png,3,tiny.h5,,", "c2.png,s1.png;s2.png,3,tiny.h5,0.01,",
                         "c1.png,s2.png,3,tiny.h5,,noise")
    jobs = batch.read_manifest(manifest)
    out = tmp_path / "out"
    res = batch.run(jobs, out, client=client, progress=False)
    assert [r.status for r in res] == ["done"] * 3 and all(r.error == "" for r in res)
    for job, r in zip(jobs, res):
        assert r.output == job.output and r.iterations == 3 and np.isfinite(r.J_final)
        assert np.asarray(Image.open(out / r.output)).shape == (24, 24, 3)
        assert json.loads((out / job.sidecar).read_text())["digest"] == job.digest
    with open(out / "summary.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == SUMMARY_COLUMNS and [t["status"] for t in table] == ["done"] * 3
    assert [t["output"] for t in table] == [j.output for j in jobs]
    assert Image.open(out / "contact_sheet.png").size[0] > 100
    from numpynst.batch.report import report_is_ours
    assert report_is_ours(out / "contact_sheet.png") and report_is_ours(out / "summary.csv")   # replaced on resume
    # the model was read once per worker process, not once per job
    loads = client.run(model_loads)
    assert all(sum(v.values()) <= 1 for v in loads.values()), loads

    before = [_stat(out / j.output) for j in jobs]
    (out / jobs[1].output).unlink()                                     # lost
    data = (out / jobs[2].output).read_bytes()
    (out / jobs[2].output).write_bytes(data[: len(data) // 2])          # truncated: fails verification
    res = batch.run(jobs, out, client=client, progress=False)
    assert [r.status for r in res] == ["skipped", "done", "done"]
    assert _stat(out / jobs[0].output) == before[0]                     # not rewritten
    assert (out / jobs[2].output).read_bytes() != data[: len(data) // 2]

    # the CLI against the same (already running) cluster: everything verified, nothing runs
    capsys.readouterr()
    assert cli.main(["batch", str(manifest), "-o", str(out), "--scheduler", client.scheduler.address,
                     "--quiet"]) == 0
    assert "3 jobs: 3 skipped" in capsys.readouterr().out
    assert not list(out.glob(".*.tmp.*")) and _no_private_folders(out) and _every_image_has_its_record(out)


def _kill_once_task(spec, outdir, backend):
    """Test-only task: the job named 'victim' kills its own worker process the first time it runs."""
    marker = Path(outdir).parent / "kill-once"
    if spec["name"] == "victim" and marker.exists():
        (Path(outdir).parent / "killed-pid").write_text(str(os.getpid()))
        marker.unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    return execute_job(spec, outdir, backend)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_dead_worker_is_replaced_and_retried_and_a_bad_input_fails_alone(client, files, tmp_path):
    weights = {"iterations": 3, "weights": str(files / "tiny.h5")}
    jobs = [Job(str(files / "c1.png"), (str(files / "s1.png"),), weights, name="victim"),
            Job(str(files / "bad.png"), (str(files / "s1.png"),), weights, name="corrupt"),
            Job(str(files / "c2.png"), (str(files / "s2.png"),), weights, name="fine")]
    (tmp_path / "kill-once").touch()
    res = batch.run(jobs, tmp_path / "out", client=client, progress=False, task=_kill_once_task)
    assert not (tmp_path / "kill-once").exists()                       # the victim did die once
    killed = int((tmp_path / "killed-pid").read_text())
    assert [r.status for r in res] == ["done", "failed", "done"], res
    sidecar = json.loads((tmp_path / "out" / f"{res[0].output[:-4]}.json").read_text())
    assert sidecar["pid"] != killed                                     # finished by another process
    assert "cannot read image" in res[1].error and "bad.png" in res[1].error and not res[1].output
    assert len(client.scheduler_info()["workers"]) >= 1


def test_gpu_without_dask_cuda_is_a_clear_error(files, tmp_path, capsys):
    import importlib.util
    if importlib.util.find_spec("dask_cuda") is not None:
        pytest.skip("dask-cuda is installed")
    manifest = _manifest(files / "gpu.csv", "content,style,weights", "c1.png,s1.png,tiny.h5")
    assert cli.main(["batch", str(manifest), "-o", str(tmp_path / "out"), "--gpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "numpynst: error: --gpu needs dask-cuda" in err and "Traceback" not in err


def _interrupt_a_batch(files, tmp_path, kill):
    """Run `numpynst batch` on a quick and an endless job in a subprocess (its own process group, like a
    terminal's job); once the quick one is done, ``kill(pid)``. Returns (exit status, output, OUTDIR)."""
    import time
    manifest = _manifest(files / "long.csv", "content,style,weights,iterations,tol,name",
                         "c1.png,s1.png,tiny.h5,2,0,quick", "c2.png,s2.png,tiny.h5,1000000,0,endless")
    out = tmp_path / "out"
    def as_in_a_terminal():         # a suite run in the background or under nohup has them ignored
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
    proc = subprocess.Popen([sys.executable, "-m", "numpynst", "batch", str(manifest), "-o", str(out),
                             "--workers", "1", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, preexec_fn=as_in_a_terminal)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("quick-*.png")):                    # the quick job is done
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.1)
        time.sleep(0.5)                                             # the endless job is running
        kill(proc.pid)
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in output and "2 jobs: 1 done, 1 cancelled" in output, output
    return proc.returncode, output, out


def _summary_rows(out):
    with open(out / "summary.csv", newline="") as fh:
        return [(r["job"], r["status"], r["error"]) for r in csv.DictReader(fh)]


@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT")
def test_ctrl_c_cancels_closes_and_summarizes(files, tmp_path):
    code, output, out = _interrupt_a_batch(files, tmp_path, lambda pid: os.killpg(pid, signal.SIGINT))  # Ctrl-C
    assert code == 130, output
    assert _summary_rows(out) == [("quick", "done", ""), ("endless", "cancelled", "interrupted (Ctrl-C)")]
    assert not list(out.glob("endless-*")) and not list(out.glob(".*.tmp.*")) and _no_private_folders(out)


def _always_kill_task(spec, outdir, backend):
    """Test-only task: the job named 'doomed' kills its worker process every time it runs."""
    if spec["name"] == "doomed":
        with open(Path(outdir).parent / "deaths", "a") as fh:
            fh.write(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)
    return execute_job(spec, outdir, backend)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_retries_are_bounded_by_allowed_failures(client, files, tmp_path):
    opts = {"iterations": 2, "weights": str(files / "tiny.h5")}
    jobs = [Job(str(files / "c1.png"), (str(files / "s1.png"),), opts, name="doomed"),
            Job(str(files / "c2.png"), (str(files / "s1.png"),), opts, name="fine")]
    res = batch.run(jobs, tmp_path / "out", client=client, progress=False, task=_always_kill_task)
    assert [r.status for r in res] == ["failed", "done"], [r.error for r in res]     # 'fine' never shares a
    # worker with 'doomed' (worker-saturation 1.0), so its deaths are not counted against it
    assert "KilledWorker" in res[0].error and "allowed-failures" in res[0].error
    deaths = (tmp_path / "deaths").read_text().split()
    assert len(deaths) == 2 + 1 and len(set(deaths)) == 3          # allowed-failures=2: 3 tries, 3 processes


# ------------------------------------------------------------------------------ nothing lost (issue 17)
def _no_private_folders(out):
    return not list(Path(out).glob(".numpynst-batch-*"))


def _every_image_has_its_record(out):
    for img in Path(out).glob("*.png"):
        if img.name != "contact_sheet.png":
            record = json.loads(img.with_suffix(".json").read_text())
            assert record["image"] == img.name, record
    return True


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_writes_the_summary_and_leaves_no_image_without_its_sidecar(files, tmp_path):
    code, output, out = _interrupt_a_batch(files, tmp_path, lambda pid: os.kill(pid, signal.SIGTERM))  # `kill PID`
    assert code == 143, output
    assert _summary_rows(out) == [("quick", "done", ""), ("endless", "cancelled", "interrupted (SIGTERM)")]
    assert _every_image_has_its_record(out) and not list(out.glob("endless-*")) and _no_private_folders(out)


def _png_declaring(path, width, height):
    """A ~100-byte PNG whose header declares width x height RGB pixels (a decompression bomb's shape)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_a_size_cell_does_not_let_a_decompression_bomb_through(client, files, tmp_path):
    bomb = _png_declaring(tmp_path / "bomb.png", 9000, 9000)
    opts = {"iterations": 2, "weights": str(files / "tiny.h5"), "size": 32}
    jobs = [Job(str(bomb), (str(files / "s1.png"),), opts, name="bomb-content"),
            Job(str(files / "c1.png"), (str(bomb),), opts, name="bomb-style"),
            Job(str(files / "c1.png"), (str(files / "s1.png"),), opts, name="fine")]
    res = batch.run(jobs, tmp_path / "out", client=client, progress=False)
    assert [r.status for r in res] == ["failed", "failed", "done"], res
    for r in res[:2]:             # refused from the header, before decoding 81 million pixels
        assert "9000x9000" in r.error and "more than the limit" in r.error and "bomb.png" in r.error, r.error
    assert _no_private_folders(tmp_path / "out")


@pytest.mark.skipif(sys.platform == "win32", reason="resource.setrlimit")
def test_a_contact_sheet_that_cannot_be_written_costs_only_itself(client, files, tmp_path):
    import resource
    opts = {"iterations": 2, "weights": str(files / "tiny.h5")}
    jobs = [Job(str(files / "c1.png"), (str(files / "s1.png"),), opts, name="one")]
    out = tmp_path / "out"
    assert batch.run(jobs, out, client=client, progress=False)[0].status == "done"
    sheet = (out / "contact_sheet.png").stat().st_size
    limit = 8 << 10
    assert sheet > limit and (out / "summary.csv").stat().st_size < limit / 2      # the test's premise
    (out / "contact_sheet.png").unlink()
    (out / "summary.csv").unlink()
    manifest = _manifest(tmp_path / "m.csv", "content,style,weights,iterations,name",
                         f"{files}/c1.png,{files}/s1.png,{files}/tiny.h5,2,one")

    def small_files():                                            # a real file-size limit, as a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    proc = subprocess.run([sys.executable, "-m", "numpynst", "batch", str(manifest), "-o", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output                           # documented: a report file is missing
    assert f"could not write {out / 'contact_sheet.png'}: File too large; the summary is written" in output
    assert "Traceback" not in output and "1 jobs: 1 skipped" in output, output
    with open(out / "summary.csv", newline="") as fh:
        assert [r["status"] for r in csv.DictReader(fh)] == ["skipped"]
    assert not (out / "contact_sheet.png").exists() and _no_private_folders(out)


def test_a_cluster_without_workers_fails_the_jobs_instead_of_waiting_for_ever(files, tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "NO_WORKERS_SECONDS", 0.5)
    monkeypatch.setattr(batch, "WORKER_CHECK_SECONDS", 0.2)
    lines = []
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty, \
            distributed.Client(empty) as c:
        job = Job(str(files / "c1.png"), (str(files / "s1.png"),), {"weights": str(files / "tiny.h5")})
        res = batch.run([job], tmp_path / "out", client=c, progress=False, log=lines.append)
    assert [r.status for r in res] == ["failed"] and "had no worker for 0.5 s" in res[0].error, res
    assert any("no worker is connected" in line for line in lines), lines
    with open(tmp_path / "out" / "summary.csv", newline="") as fh:
        assert [r["status"] for r in csv.DictReader(fh)] == ["failed"]


def test_a_result_computed_again_after_its_worker_died_is_not_a_failure(files):
    """as_completed may hand back a future whose finished result was lost with its worker (a neighbour
    killed it) and is being computed again: its status is "pending" then, and its row must be waited
    for, not read as an error."""
    from numpynst.batch import _collect
    job, = prepare_jobs([Job(str(files / "c1.png"), (str(files / "s1.png"),), {"iterations": 2})])

    class Recomputed:                   # what a distributed.Future looks like at that moment
        status = "pending"

        def result(self, timeout=None):
            return {"job": job.name, "status": "done", "J_final": 1.5, "output": job.output}

        def exception(self):
            return None
    r = _collect(job, Recomputed(), 2, distributed)
    assert (r.status, r.J_final, r.output, r.error) == ("done", 1.5, job.output, "")


def test_a_batch_with_failed_jobs_says_so_in_one_stderr_line_and_exits_1(client, files, tmp_path, capsys,
                                                                          monkeypatch):
    # two kinds of failure (a decompression bomb refused from its header, an unreadable image body):
    # whatever the reason, one line on stderr with the count and where the reasons are, exit 1
    bomb = _png_declaring(tmp_path / "bomb.png", 9000, 9000)
    manifest = _manifest(tmp_path / "m.csv", "content,style,size,iterations,weights",
                         f"{bomb},{files}/s1.png,32,2,{files}/tiny.h5",
                         f"{files}/c1.png,{files}/s1.png,32,2,{files}/tiny.h5",
                         f"{files}/c2.png,{_png_declaring(tmp_path / 'broken.png', 8, 8)},32,2,{files}/tiny.h5")
    run = batch.run
    monkeypatch.setattr(batch, "run", lambda *a, **k: run(*a, **{**k, "client": client, "workers": None}))
    capsys.readouterr()
    code = cli.main(["batch", str(manifest), "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("numpynst batch: 2 of 3 jobs failed; the reasons are in the 'error' column of "), err
    assert err[0].endswith(str(tmp_path / "out" / "summary.csv")) and len(err[0]) < 200, err
    rows = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert [r["status"] for r in rows] == ["failed", "done", "failed"] and all(r["error"] for r in rows[::2])
    # the run's lines on stdout stay as they were; a batch without failures prints nothing on stderr
    (tmp_path / "m2.csv").write_text(f"content,style,size,iterations,weights\n"
                                     f"{files}/c1.png,{files}/s1.png,32,2,{files}/tiny.h5\n")
    assert cli.main(["batch", str(tmp_path / "m2.csv"), "-o", str(tmp_path / "out2"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_finished_job_run_again_returns_its_verified_output_without_computing(files, tmp_path, monkeypatch):
    """Dask runs a finished job again when its result died with its worker: the second run must
    find the verified output and neither compute nor write anything (exactly once)."""
    from numpynst import transfer
    from numpynst.batch import worker
    job, = prepare_jobs([Job(str(files / "c1.png"), (str(files / "s1.png"),),
                             {"iterations": 2, "weights": str(files / "tiny.h5")})])
    out = tmp_path / "out"
    out.mkdir()
    first = execute_job(job.spec(), str(out))
    assert first["status"] == "done"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    calls = []
    monkeypatch.setattr(transfer, "stylize", lambda *a, **k: calls.append("stylize"))
    monkeypatch.setattr(worker, "publish", lambda *a, **k: calls.append("publish"))
    again = execute_job(job.spec(), str(out))
    assert calls == [] and again["status"] == "done" and again["J_final"] == first["J_final"]
    assert again["iterations"] == first["iterations"] and again["output"] == job.output
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == before
    (out / job.output).write_bytes(b"tampered")             # an output that does not verify: run again
    monkeypatch.undo()
    assert execute_job(job.spec(), str(out))["status"] == "done"
    assert worker.verify_output(out, job.spec()) is not None


def test_two_runs_of_one_job_at_once_publish_it_once(files, tmp_path):
    """A job the scheduler runs twice at once (it gave up on a slow worker that still runs it): the
    job's lock makes the second wait, then find the verified output; no second publication."""
    import threading
    from numpynst import transfer
    from numpynst.batch import worker
    job, = prepare_jobs([Job(str(files / "c1.png"), (str(files / "s1.png"),),
                             {"iterations": 2, "weights": str(files / "tiny.h5")})])
    out = tmp_path / "out"
    (out / "scratch").mkdir(parents=True)
    spec = {**job.spec(), "scratch": str(out / "scratch")}
    published, entered = [], threading.Event()
    real_publish, real_stylize = worker.publish, transfer.stylize

    def slow_stylize(*a, **k):
        entered.set()
        time.sleep(0.5)                      # the second run starts meanwhile
        return real_stylize(*a, **k)
    transfer.stylize = slow_stylize
    worker.publish = lambda *a, **k: (published.append(1), real_publish(*a, **k))
    try:
        rows = []
        first = threading.Thread(target=lambda: rows.append(execute_job(spec, str(out))))
        first.start()
        entered.wait(10)
        rows.append(execute_job(spec, str(out)))
        first.join()
    finally:
        worker.publish, transfer.stylize = real_publish, real_stylize
    assert [r["status"] for r in rows] == ["done", "done"] and len(published) == 1
    assert worker.verify_output(out, job.spec()) is not None

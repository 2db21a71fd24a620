"""numpynst.video: warping and its backward, the temporal cost and its gradient, occlusion weights,
video in/out with every refusal of the issue, and ``numpynst video`` end to end on a tiny model.

The array tests (warp, temporal cost, weights) need neither PyAV nor OpenCV; the others need the
``video`` extra, which the ``test`` extra installs.
"""

from __future__ import annotations

import os
import signal
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from numpynst.gradcheck import check_directional, numerical_gradient, rel_error
from numpynst.video.flow import consistency_weights, disocclusion, motion_boundary
from numpynst.video.temporal import TemporalObjective, temporal_cost
from numpynst.video.warp import inside, plan, warp, warp_backward, warp_naive

try:
    import av
    import cv2  # noqa: F401
    HAVE_VIDEO = True
except ImportError:          # the test extra installs both; a bare install may lack them
    HAVE_VIDEO = False
needs_video = pytest.mark.skipif(not HAVE_VIDEO, reason='PyAV/OpenCV missing: pip install "numpynst[video]"')


# ----------------------------------------------------------------------------- warping
def _flow(rng, h=7, w=9, scale=2.5):
    return rng.uniform(-scale, scale, size=(h, w, 2))


def test_warp_matches_the_loop(rng):
    img, flow = rng.standard_normal((7, 9, 3)), _flow(rng)
    assert rel_error(warp(img, flow), warp_naive(img, flow)) < 1e-14


def test_warp_by_whole_pixels_is_a_shift(rng):
    img = rng.standard_normal((6, 8, 2))
    flow = np.zeros((6, 8, 2))
    flow[..., 0], flow[..., 1] = 2.0, -1.0           # read 2 to the right, 1 up
    out = warp(img, flow)
    np.testing.assert_array_equal(out[1:, :-2], img[:-1, 2:])
    assert inside(flow)[1:, :-2].all() and not inside(flow)[0].any() and not inside(flow)[:, -2:].any()
    np.testing.assert_array_equal(warp(img, np.zeros((6, 8, 2))), img)


def test_warp_half_pixel_is_the_mean_of_neighbours(rng):
    img = rng.standard_normal((5, 6, 1))
    flow = np.zeros((5, 6, 2))
    flow[..., 0] = 0.5
    np.testing.assert_allclose(warp(img, flow)[:, :-1], 0.5 * (img[:, :-1] + img[:, 1:]), rtol=0, atol=1e-15)


def test_warp_backward_central_differences(rng):
    img, flow = rng.standard_normal((6, 7, 3)), _flow(rng, 6, 7)
    dout = rng.standard_normal((6, 7, 3))
    p = plan(flow)
    numeric = numerical_gradient(lambda x: np.sum(dout * warp(x, p)), img.copy())
    analytic = warp_backward(dout, p)
    assert rel_error(analytic, numeric) < 1e-7


def test_warp_backward_is_the_adjoint_with_repeated_sources(rng):
    # every pixel reads near one point: many outputs share sources (duplicate indices in the scatter)
    h, w = 6, 6
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    flow = np.stack([2.3 - jj, 2.6 - ii], axis=-1).astype(np.float64)
    a, b = rng.standard_normal((1, h, w, 2)), rng.standard_normal((1, h, w, 2))
    lhs = np.sum(warp(a, flow) * b)
    rhs = np.sum(a * warp_backward(b, flow))
    assert abs(lhs - rhs) < 1e-12 * max(1.0, abs(lhs))
    # the four weights of every output sum to 1, so the total mass sent back equals the total in
    assert np.isclose(warp_backward(b, flow).sum(), b.sum())


def test_warp_runs_on_xp(xp, rng):
    img, flow = rng.standard_normal((5, 6, 3)), _flow(rng, 5, 6)
    out = warp(xp.asarray(img), xp.asarray(flow))
    back = warp_backward(xp.asarray(img), xp.asarray(flow))
    assert type(out) is type(xp.asarray(img)) and type(back) is type(out)
    assert rel_error(np.asarray(out.get() if hasattr(out, "get") else out), warp(img, flow)) < 1e-14


# ----------------------------------------------------------------------------- temporal cost
def test_temporal_cost_central_differences(rng):
    x, target = rng.standard_normal((1, 5, 6, 3)), rng.standard_normal((1, 5, 6, 3))
    w = (rng.uniform(size=(5, 6)) > 0.3).astype(np.float64)
    J, g = temporal_cost(x, target, w)
    numeric = numerical_gradient(lambda z: temporal_cost(z, target, w)[0], x.copy())
    assert rel_error(g, numeric) < 1e-7
    # the definition, written out: sum_c w (x - t)^2 / D
    assert np.isclose(float(J), np.sum(w[None, :, :, None] * (x - target) ** 2) / x.size, rtol=1e-14)


def test_temporal_cost_zero_where_it_should_be(rng):
    x = rng.standard_normal((4, 5, 3))
    J, g = temporal_cost(x, x.copy(), np.ones((4, 5)))
    assert float(J) == 0 and not g.any()
    J, g = temporal_cost(x, x + 1.0, np.zeros((4, 5)))
    assert float(J) == 0 and not g.any()
    with pytest.raises(ValueError, match="weights shape"):
        temporal_cost(x, x, np.ones((5, 4)))


def test_temporal_objective_gradient_on_a_tiny_vgg(xp, model, rng):
    from numpynst.objective import Objective
    content = xp.asarray(rng.uniform(-60, 60, size=(1, 16, 16, 3)))
    style = xp.asarray(rng.uniform(-60, 60, size=(1, 16, 16, 3)))
    base = Objective(model, content, style, style_layers={"block1_conv1": 1.0, "block2_conv1": 1.0})
    target = xp.asarray(rng.uniform(-60, 60, size=(1, 16, 16, 3)))
    w = xp.asarray((rng.uniform(size=(16, 16)) > 0.2).astype(np.float64))
    obj = TemporalObjective(base, target, w, gamma=3.0, scale=7.0)
    x = xp.asarray(rng.uniform(-60, 60, size=(1, 16, 16, 3)))
    J, g = obj.value_and_grad(x)
    assert check_directional(lambda z: obj.value_and_grad(z)[0], x, g, n_dirs=3, h=1e-4) < 1e-6
    # J is the base J plus gamma / scale times the cost
    jt, _ = temporal_cost(x, target, w)
    assert abs(float(J) - float(base.value_and_grad(x)[0]) - 3.0 / 7.0 * float(jt)) < 1e-9 * abs(float(J))


# ----------------------------------------------------------------------------- occlusion weights
def test_consistent_translation_has_weight_one_inside():
    h, w = 12, 14
    back = np.zeros((h, w, 2))
    back[..., 0] = -1.5                   # frame t's pixel came from 1.5 px to the left
    fwd = -back
    c = consistency_weights(back, fwd)
    assert c[:, 2:].all()                 # consistent, no boundary, source inside
    assert not c[:, :1].any()             # the source is off the left edge


def test_disagreeing_flows_are_occlusions():
    back = np.zeros((8, 8, 2))
    back[..., 0] = 2.0
    fwd = np.zeros((8, 8, 2))             # the forward flow does not bring the point back
    assert disocclusion(back, fwd).all()
    assert not disocclusion(back, -back).any()


def test_motion_boundary_at_a_step_in_the_flow():
    back = np.zeros((8, 10, 2))
    back[:, 5:, 0] = 3.0                  # the right half moves, the left does not
    mb = motion_boundary(back)
    assert mb[:, 4:6].all() and not mb[:, :3].any() and not mb[:, 7:].any()


# ----------------------------------------------------------------------------- clips made here
def make_clip(path, n=8, w=32, h=24, fps=25, audio=False, vfr=False, codec="libx264"):
    """n frames of a bright square moving right over a gradient, written with PyAV."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        a = out.add_stream("aac", rate=8000) if audio else None
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = np.linspace(0, 200, w, dtype=np.uint8)[None]
            img[8:16, 2 + 2 * i:10 + 2 * i] = 255
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            if vfr:
                fr.pts, fr.time_base = (i * 40 + (60 if i > 3 else 0)), Fraction(1, 1000)
            for p in vs.encode(fr):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if a is not None:
            samples = int(8000 * n / fps)
            af = av.AudioFrame.from_ndarray((np.sin(np.arange(samples) / 5) * 3000).astype(np.int16)[None],
                                            format="s16", layout="mono")
            af.sample_rate = 8000
            for p in a.encode(af):
                out.mux(p)
            for p in a.encode():
                out.mux(p)
    return Path(path)


def count_frames(path):
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0)), c.streams.video[0].average_rate, [s.type for s in c.streams]


@pytest.fixture(scope="module")
def clipdir(tmp_path_factory):
    if not HAVE_VIDEO:
        pytest.skip('PyAV/OpenCV missing: pip install "numpynst[video]"')
    from numpynst.image import save_image
    from numpynst.testing import write_tiny_vgg_h5
    d = tmp_path_factory.mktemp("clips")
    make_clip(d / "clip.mp4", audio=True)
    style = np.random.default_rng(0).integers(0, 255, size=(24, 24, 3), dtype=np.uint8)
    save_image(d / "style.png", style)
    write_tiny_vgg_h5(d / "tiny.h5")
    return d


def _args(clipdir, *more):
    return ["--size", "32", "--iterations", "2", "--weights", str(clipdir / "tiny.h5"), "--quiet", *more]


@needs_video
def test_flow_recovers_a_known_shift():
    from numpynst.video.flow import compute_flow
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.uniform(0, 255, size=(64, 80)).astype(np.float32), (0, 0), 3)
    base = (255 * (base - base.min()) / np.ptp(base)).astype(np.uint8)
    a = np.repeat(base[:, 4:76, None], 3, axis=2)
    b = np.repeat(base[:, 1:73, None], 3, axis=2)         # b is a moved 3 px to the right
    for method in ("dis", "farneback"):
        f = compute_flow(a, b, method)
        assert f.shape == (64, 72, 2) and f.dtype == np.float32
        assert abs(np.median(f[16:-16, 16:-16, 0]) - 3.0) < 0.3 and abs(np.median(f[16:-16, 16:-16, 1])) < 0.3


@needs_video
def test_open_source_reads_the_clip(clipdir):
    from numpynst.video.io import iter_frames, open_source, parse_range
    s = open_source(clipdir / "clip.mp4")
    assert (s.n_frames, s.fps, s.width, s.height, s.audio) == (8, 25, 32, 24, True)
    frames = list(iter_frames(s, 2, 5))
    assert [i for i, _ in frames] == [2, 3, 4] and frames[0][1].shape == (24, 32, 3)
    assert parse_range("2:", 8) == (2, 8) and parse_range(":3", 8) == (0, 3)


@needs_video
def test_cli_video_end_to_end_resume_and_folder(clipdir, tmp_path, capsys):
    from numpynst.cli import main
    out = tmp_path / "out.mp4"
    assert main(["video", str(clipdir / "clip.mp4"), str(clipdir / "style.png"), "-o", str(out),
                 *_args(clipdir)]) == 0
    n, rate, kinds = count_frames(out)
    assert (n, rate, sorted(kinds)) == (8, 25, ["audio", "video"])
    frames = sorted(p.name for p in (tmp_path / "out_frames").iterdir())
    assert frames == [f"{i:05d}.png" for i in range(8)]
    # the same command again: every frame kept by its digest, the video rewritten with --overwrite
    assert main(["video", str(clipdir / "clip.mp4"), str(clipdir / "style.png"), "-o", str(out),
                 *_args(clipdir, "--overwrite")]) == 0
    assert "8 kept" in capsys.readouterr().out
    # into a folder, a range, independent frames
    folder = tmp_path / "frames_out"
    assert main(["video", str(clipdir / "clip.mp4"), str(clipdir / "style.png"), "-o", str(folder),
                 "--frames", "2:5", "--independent", *_args(clipdir)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["00002.png", "00003.png", "00004.png"]
    # a folder of frames as input
    assert main(["video", str(folder), str(clipdir / "style.png"), "-o", str(tmp_path / "b.webm"),
                 "--fps", "12", *_args(clipdir)]) == 0
    n, rate, _ = count_frames(tmp_path / "b.webm")
    assert (n, rate) == (3, 12)


@needs_video
def test_temporal_terms_change_the_frames(clipdir, tmp_path):
    from numpynst.video import stylize_video
    common = dict(size=32, iterations=3, weights=str(clipdir / "tiny.h5"), log=None, frames="0:3")
    a = stylize_video(clipdir / "clip.mp4", str(clipdir / "style.png"), tmp_path / "a", **common)
    b = stylize_video(clipdir / "clip.mp4", str(clipdir / "style.png"), tmp_path / "b", independent=True, **common)
    assert a.stopped == b.stopped == "done" and a.done == b.done == [0, 1, 2]
    from numpynst.image import load_image
    same0 = np.array_equal(load_image(tmp_path / "a/00000.png"), load_image(tmp_path / "b/00000.png"))
    diff2 = np.abs(load_image(tmp_path / "a/00002.png").astype(int) - load_image(tmp_path / "b/00002.png")).max()
    assert same0 and diff2 > 0            # frame 0 has no predecessor; later ones start from it


def _interrupt_at(monkeypatch, frame_no, action):
    """Make the frame loop's transfer.run call ``action()`` when it reaches its ``frame_no``-th call."""
    from numpynst import transfer
    real, calls = transfer.run, [0]

    def run(*a, **k):
        calls[0] += 1
        if calls[0] == frame_no:
            action()
        return real(*a, **k)
    monkeypatch.setattr(transfer, "run", run)


@needs_video
@pytest.mark.parametrize("how, code", [("sigint", 130), ("sigterm", 143)])
def test_interrupt_keeps_frames_and_a_playable_partial_video(clipdir, tmp_path, monkeypatch, how, code):
    from numpynst.cli import main

    def stop():
        if how == "sigint":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)      # the CLI turns it into KeyboardInterrupt
    _interrupt_at(monkeypatch, 4, stop)
    out = tmp_path / "out.mp4"
    cmd = ["video", str(clipdir / "clip.mp4"), str(clipdir / "style.png"), "-o", str(out), *_args(clipdir)]
    assert main(cmd) == code
    assert not out.exists()
    assert sorted(p.name for p in (tmp_path / "out_frames").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    n, rate, _ = count_frames(tmp_path / "out.partial.mp4")
    assert (n, rate) == (3, 25)
    monkeypatch.undo()
    assert main(cmd) == 0
    assert count_frames(out)[0] == 8 and not (tmp_path / "out.partial.mp4").exists()


@needs_video
def test_full_disk_keeps_the_frames_done_and_resumes(clipdir, tmp_path, monkeypatch, capsys):
    from numpynst.cli import main
    from numpynst.errors import ImageError
    from numpynst.image import save
    real, calls = save.save_image, [0]

    def full(path, *a, **k):
        calls[0] += 1
        if calls[0] == 3:
            raise ImageError(f"cannot save image {path}: No space left on device")
        return real(path, *a, **k)
    monkeypatch.setattr("numpynst.image.save_image", full)
    out = tmp_path / "o"
    cmd = ["video", str(clipdir / "clip.mp4"), str(clipdir / "style.png"), "-o", str(out), *_args(clipdir)]
    assert main(cmd) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "re-run resumes" in err
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png"]
    monkeypatch.undo()
    assert main(cmd) == 0
    assert "2 kept" in capsys.readouterr().out


def _refused(capsys, argv, *words):
    from numpynst.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


@needs_video
def test_bad_inputs_are_one_line_errors(clipdir, tmp_path, capsys, monkeypatch):
    style = str(clipdir / "style.png")
    # corrupt, truncated, zero frames
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 50)
    _refused(capsys, ["video", str(tmp_path / "junk.mp4"), style, "-o", str(tmp_path / "o1.mp4"), *_args(clipdir)],
             "junk.mp4", "corrupt")
    data = (clipdir / "clip.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:len(data) // 2])
    _refused(capsys, ["video", str(tmp_path / "cut.mp4"), style, "-o", str(tmp_path / "o2.mp4"), *_args(clipdir)],
             "cut.mp4")
    make_clip(tmp_path / "stream.mkv", n=40, codec="mpeg4")      # a streaming container: frames decode
    data = (tmp_path / "stream.mkv").read_bytes()                  # up to the cut, then the file ends
    (tmp_path / "cut.mkv").write_bytes(data[:int(len(data) * 0.6)])
    _refused(capsys, ["video", str(tmp_path / "cut.mkv"), style, "-o", str(tmp_path / "o3.mp4"), *_args(clipdir)],
             "cut.mkv", "truncated", "1.60 s")
    from numpynst.image import save_image
    (tmp_path / "mixed").mkdir()
    save_image(tmp_path / "mixed" / "a_001.png", np.zeros((8, 8, 3), np.uint8))
    save_image(tmp_path / "mixed" / "b_001.png", np.zeros((8, 8, 3), np.uint8))
    _refused(capsys, ["video", str(tmp_path / "mixed"), style, "-o", str(tmp_path / "o10"), *_args(clipdir)],
             "mixes several frame name patterns")
    (tmp_path / "sizes").mkdir()
    save_image(tmp_path / "sizes" / "001.png", np.zeros((8, 8, 3), np.uint8))
    save_image(tmp_path / "sizes" / "002.png", np.zeros((8, 9, 3), np.uint8))
    _refused(capsys, ["video", str(tmp_path / "sizes"), style, "-o", str(tmp_path / "o11"), *_args(clipdir)],
             "002.png is 9x8", "one size")
    (tmp_path / "empty").mkdir()
    _refused(capsys, ["video", str(tmp_path / "empty"), style, "-o", str(tmp_path / "o4.mp4"), *_args(clipdir)],
             "zero frames")
    # variable frame rate
    make_clip(tmp_path / "vfr.mp4", vfr=True)
    _refused(capsys, ["video", str(tmp_path / "vfr.mp4"), style, "-o", str(tmp_path / "o5.mp4"), *_args(clipdir)],
             "variable frame rate")
    # huge: too many frames or too many pixels, refused before decoding
    import numpynst.video.io as vio
    monkeypatch.setattr(vio, "MAX_FRAMES", 5)
    _refused(capsys, ["video", str(clipdir / "clip.mp4"), style, "-o", str(tmp_path / "o6.mp4"), *_args(clipdir)],
             "8 frames selected", "--frames")
    monkeypatch.setattr(vio, "MAX_FRAMES", 90_000)
    monkeypatch.setattr(vio, "MAX_SOURCE_PIXELS", 100)
    _refused(capsys, ["video", str(clipdir / "clip.mp4"), style, "-o", str(tmp_path / "o7.mp4"), *_args(clipdir)],
             "32x24")
    monkeypatch.undo()
    # the output is an input; an image as output; an existing video; a bad range
    _refused(capsys, ["video", str(clipdir / "clip.mp4"), style, "-o", str(clipdir / "clip.mp4"), *_args(clipdir)],
             "refusing to overwrite an input")
    _refused(capsys, ["video", str(clipdir), style, "-o", str(clipdir), *_args(clipdir)])
    _refused(capsys, ["video", str(clipdir / "clip.mp4"), style, "-o", str(tmp_path / "o.png"), *_args(clipdir)],
             "one picture cannot hold a clip")
    (tmp_path / "exists.mp4").write_bytes(b"x")
    _refused(capsys, ["video", str(clipdir / "clip.mp4"), style, "-o", str(tmp_path / "exists.mp4"), *_args(clipdir)],
             "exists")
    _refused(capsys, ["video", str(clipdir / "clip.mp4"), style, "-o", str(tmp_path / "o8.mp4"), "--frames", "9:",
                      *_args(clipdir)], "only 8 frame")
    _refused(capsys, ["video", str(clipdir / "clip.mp4"), style, "-o", str(tmp_path / "o9.mp4"), "--frames", "x",
                      *_args(clipdir)], "--frames")
    _refused(capsys, ["video", str(clipdir / "clip.mp4"), style, "-o", str(tmp_path / "o9.mp4"),
                      "--temporal-weight", "-1", *_args(clipdir)], "--temporal-weight")
    assert not any(p.name.startswith("o") for p in tmp_path.iterdir())      # nothing written


@needs_video
def test_frames_of_another_run_are_not_reused(clipdir, tmp_path, capsys):
    from numpynst.cli import main
    from numpynst.image import save_image
    out = tmp_path / "f"
    out.mkdir()
    save_image(out / "00001.png", np.zeros((24, 32, 3), np.uint8))
    cmd = ["video", str(clipdir / "clip.mp4"), str(clipdir / "style.png"), "-o", str(out), "--frames", "0:2",
           *_args(clipdir)]
    _refused(capsys, cmd, "1 frame(s) of another run", "--overwrite")
    assert main(cmd + ["--overwrite"]) == 0
    assert main(cmd[:-len(_args(clipdir))] + _args(clipdir) + ["--style-weight", "2"]) == 2   # other options


def test_missing_extra_is_one_line(monkeypatch):
    from numpynst.errors import VideoError
    from numpynst.video.flow import require_cv2
    from numpynst.video.io import require_av
    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(sys.modules, "cv2", None)
    for need, name in ((require_av, "PyAV"), (require_cv2, "OpenCV")):
        with pytest.raises(VideoError, match=name) as e:
            need()
        assert 'pip install "numpynst[video]"' in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- Dask
def _kill_once_chunk(spec):
    """Test-only chunk task: the chunk starting at frame 4 writes its first frame, then kills its worker
    process (the first time only); the retry must keep that frame and finish the chunk."""
    from numpynst.video.chunks import chunk_task
    marker = Path(spec["frames_dir"]).parent / "kill-once"
    if spec["start"] == 4 and marker.exists():
        chunk_task({**spec, "stop": spec["start"] + 1})
        (marker.parent / "killed-pid").write_text(str(os.getpid()))
        marker.unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    return chunk_task(spec)


@needs_video
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_chunks_on_a_local_dask_cluster_survive_a_killed_worker(clipdir, tmp_path):
    distributed = pytest.importorskip("distributed")
    from numpynst.batch.cluster import keep_blas_env, local_cluster
    from numpynst.video import stylize_video
    from numpynst.video.chunks import plan_chunks
    assert plan_chunks(0, 10, 4, 2) == [(0, 0, 4), (2, 4, 8), (6, 8, 10)]
    (tmp_path / "kill-once").touch()
    with keep_blas_env():
        cluster = local_cluster(n_workers=2, blas_threads=1, retries=2, dashboard=False)
        client = distributed.Client(cluster)
        try:
            r = stylize_video(clipdir / "clip.mp4", str(clipdir / "style.png"), tmp_path / "out.mp4", size=32,
                              iterations=2, weights=str(clipdir / "tiny.h5"), log=None, client=client,
                              chunk=4, overlap=1, task=_kill_once_chunk)
        finally:
            client.close()
            cluster.close()
    assert not (tmp_path / "kill-once").exists()            # the worker did die once
    assert r.stopped == "done" and r.done == list(range(8)) and r.kept == 1, r
    assert count_frames(tmp_path / "out.mp4")[0] == 8
    names = sorted(p.name for p in (tmp_path / "out_frames").iterdir())
    assert names == sorted([f"{i:05d}.png" for i in range(8)] + ["00003.w.png"])
    assert set(r.temporal_error) == set(range(1, 8))       # the seam frame 4 measured against frame 3
    # the same clip again, sequentially: every frame is kept (the chunks wrote them with the same digests
    # except frame 4, which followed a warm-up frame instead of the final frame 3)
    again = stylize_video(clipdir / "clip.mp4", str(clipdir / "style.png"), tmp_path / "out.mp4", size=32,
                          iterations=2, weights=str(clipdir / "tiny.h5"), log=None, overwrite=True)
    assert again.kept == 4 and again.stylized == 4


def test_the_default_temporal_weight_follows_the_style_weight():
    from numpynst.objective import DEFAULT_BETA
    from numpynst.video.run import DEFAULT_TEMPORAL_WEIGHT, check_temporal_weight
    per = DEFAULT_TEMPORAL_WEIGHT["calibrated"]
    assert check_temporal_weight(None, "calibrated") == per * DEFAULT_BETA
    assert check_temporal_weight(None, "calibrated", 3.0) == 3 * per
    assert check_temporal_weight(None, "calibrated", 0.0) == 0.0          # no style: nothing to keep steady
    assert check_temporal_weight(None, "raw", 50.0) == DEFAULT_TEMPORAL_WEIGHT["raw"]     # raw: a plain gamma
    assert check_temporal_weight(7, "calibrated", 3.0) == 7.0               # a given gamma is taken as is


@needs_video
def test_video_frames_run_at_full_size_only_unless_scales_are_given(clipdir, tmp_path, monkeypatch):
    # each frame starts from the last one's result, warped: a coarse-to-fine default would throw it away
    from numpynst import transfer
    from numpynst.video import stylize_video
    seen, real = [], transfer.prepare
    monkeypatch.setattr(transfer, "prepare", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    common = dict(iterations=1, weights=str(clipdir / "tiny.h5"), log=None, frames="0:2", independent=True)
    stylize_video(clipdir / "clip.mp4", str(clipdir / "style.png"), tmp_path / "a", size=256, **common)
    assert [p.content.shape[1] for p in seen] == [256, 256]        # stylize would go 0.5, 1 at this size
    assert [p.scales for p in seen] == [[1.0], [1.0]]
    seen.clear()
    stylize_video(clipdir / "clip.mp4", str(clipdir / "style.png"), tmp_path / "b", size=32, scales=[0.5, 1.0], **common)
    assert [p.scales for p in seen] == [[0.5, 1.0], [0.5, 1.0]]

"""Weights: the shipped file, reading both Keras naming styles, every kind of bad file, the
download with resume and checksum, and the ``weights`` / ``inspect`` commands."""

import hashlib
import http.server
import re
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

import numpynst.weights as W
from numpynst.cli import main
from numpynst.errors import OptionError, WeightsError
from numpynst.gradcheck import rel_error
from numpynst.testing import tiny_params, write_tiny_vgg_h5
from numpynst.vgg import VGG, conv_layer_names

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "weights" / "vgg19_notop_f16.h5"


# ------------------------------------------------------------------------- the shipped file
@pytest.fixture(scope="module")
def shipped():
    return W.read_vgg_weights(W.default_weights_path())


def test_default_path_is_the_shipped_file(shipped):
    assert W.default_weights_path().resolve() == SHIPPED.resolve()
    assert shipped.arch == "vgg19"


def test_shipped_file_has_the_vgg19_conv_layers(shipped):
    widths = [64, 64, 128, 128] + [256] * 4 + [512] * 8
    assert list(shipped.params) == list(conv_layer_names("vgg19"))
    cin = 3
    for (w, b), c in zip(shipped.params.values(), widths):
        assert w.shape == (3, 3, cin, c) and b.shape == (c,)
        assert w.dtype == np.float32 and b.dtype == np.float32
        cin = c
    # 20,024,384: the parameter count Keras reports for VGG19(include_top=False)
    assert sum(w.size + b.size for w, b in shipped.params.values()) == 20_024_384


def test_shipped_file_sha256_is_the_one_in_the_readme():
    readme = (ROOT / "weights" / "README.md").read_text(encoding="utf-8")
    m = re.search(r"sha256[^0-9a-f]*([0-9a-f]{64})", readme)
    assert m, "weights/README.md does not state the sha256"
    assert hashlib.sha256(SHIPPED.read_bytes()).hexdigest() == m.group(1)
    assert SHIPPED.stat().st_size <= 35 * 2 ** 20


def test_shipped_file_matches_published_values_of_the_official_keras_file(shipped):
    """Layout check against the official file (values printed by an independent HDF5 reader).

    A spatially flipped or transposed kernel, or swapped input/output channels, is off by ~0.3-0.7;
    8-bit quantization (centroids ~0.003 apart in this layer) and float16 leave < 0.005.
    """
    w, b = shipped.params["block1_conv1"]
    official_w00 = [0.341195, 0.339992, -0.0448442, 0.232159, 0.0897821, -0.303314,
                    -0.0726092, -0.246675, -0.336833]           # kernel[:, :, 0, 0], row-major
    official_b = [0.7301776, 0.06493629, 0.03428847, 0.8260386, 0.2578029, 0.54867655,
                  -0.012438543, 0.34789944, 0.5510871, 0.06297145]
    assert np.abs(w[:, :, 0, 0].ravel() - official_w00).max() < 5e-3
    assert abs(w[0, 0, 1, 0] - 0.464184) < 5e-3
    assert np.abs(b[:10] - official_b).max() < 1e-3           # biases: float16 rounding only


def test_shipped_file_is_a_keras_notop_file():
    with h5py.File(SHIPPED, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names[0] == "input_1" and names[-1] == "block5_pool" and len(names) == 22
        for n in names:
            wn = [v.decode() for v in f[n].attrs["weight_names"]]
            assert wn == ([f"{n}_W_1:0", f"{n}_b_1:0"] if "conv" in n else [])
            for d in wn:
                assert f[n][d].dtype == np.float16 and f[n][d].compression == "gzip"


# ------------------------------------------------------------------------- reading
def _write_keras2(path, params, nested=True, model_weights=False, dense=False):
    """A Keras 2 style file: <layer>/<layer>/kernel:0 (or <layer>/kernel:0)."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if model_weights else f
        for name, (w, b) in params.items():
            g = root.create_group(name)
            g2 = g.create_group(name) if nested else g
            g2["kernel:0"] = w
            g2["bias:0"] = b
        if dense:
            g = root.create_group("fc1")
            g["fc1_W_1:0"] = np.ones((10, 4))
            g["fc1_b_1:0"] = np.ones(4)
    return path


@pytest.mark.parametrize("style", ["keras1", "keras2", "keras2-flat", "model_weights", "with-dense"])
@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_reads_both_naming_styles_and_detects_arch(tmp_path, style, arch):
    params = tiny_params(arch, seed=3)
    path = tmp_path / "w.h5"
    if style == "keras1":
        write_tiny_vgg_h5(path, arch, seed=3, dtype=np.float64)
    else:
        _write_keras2(path, params, nested=style != "keras2-flat", model_weights=style == "model_weights",
                      dense=style == "with-dense")
    got = W.read_vgg_weights(path)
    assert got.arch == arch and got.path == path
    assert list(got.params) == list(conv_layer_names(arch))
    for name, (w, b) in params.items():
        assert np.array_equal(got.params[name][0], w.astype(np.float32))
        assert np.array_equal(got.params[name][1], b.astype(np.float32))


def test_from_h5_gives_the_same_network_as_from_params(tmp_path):
    from numpynst.testing import tiny_vgg
    path = write_tiny_vgg_h5(tmp_path / "tiny.h5", "vgg16", seed=9, dtype=np.float64)
    a = VGG.from_h5(path, dtype=np.float64)
    b = tiny_vgg("vgg16", seed=9)
    x = np.random.default_rng(0).standard_normal((1, 16, 16, 3))
    assert a.arch == "vgg16" and a.path == path
    # read_vgg_weights hands out float32 (the contract), so agreement is to float32 precision
    assert rel_error(a.forward(x, "block5_conv3")["block5_conv3"], b.forward(x, "block5_conv3")["block5_conv3"]) < 1e-6


def _tiny_file(tmp_path, arch="vgg19"):
    return write_tiny_vgg_h5(tmp_path / "bad.h5", arch, seed=0, dtype=np.float32)


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)
    return path


def _replace(f, layer, which, value):
    name = f"{layer}_{which}_1:0"
    del f[layer][name]
    f[layer][name] = value


BAD_CASES = {
    "missing layer": (lambda f: f.__delitem__("block5_conv4"), "block5_conv4", "missing"),
    "extra layer": (lambda f: f.copy("block5_conv4", "block6_conv1"), "block6_conv1", "unexpected"),
    "extra conv in a block": (lambda f: f.copy("block3_conv4", "block3_conv5"), "block3_conv5", "unexpected"),
    "kernel 5x5": (lambda f: _replace(f, "block2_conv2", "W", np.ones((5, 5, 6, 6), "f4")), "block2_conv2",
                   r"\(3, 3, C_in, C_out\)"),
    "chain broken": (lambda f: _replace(f, "block3_conv1", "W", np.ones((3, 3, 5, 8), "f4")), "block3_conv1",
                     "C_in=5.*block2_conv2's 6 output channels"),
    "first layer not RGB": (lambda f: _replace(f, "block1_conv1", "W", np.ones((3, 3, 1, 4), "f4")),
                            "block1_conv1", "3 .BGR. input channels"),
    "channels-first kernel": (lambda f: _replace(f, "block1_conv1", "W", np.ones((4, 3, 3, 3), "f4")),
                              "block1_conv1", "channels-first"),
    "bias shape": (lambda f: _replace(f, "block4_conv2", "b", np.ones(7, "f4")), "block4_conv2", "bias has shape"),
    "nan": (lambda f: _replace(f, "block3_conv2", "W", np.full((3, 3, 8, 8), np.nan, "f4")), "block3_conv2", "NaN"),
    "inf bias": (lambda f: _replace(f, "block5_conv1", "b", np.array([1, np.inf] * 4, "f4")), "block5_conv1", "inf"),
    "integer data": (lambda f: _replace(f, "block1_conv2", "W", np.ones((3, 3, 4, 4), "i4")), "block1_conv2",
                     "dtype int32"),
    "bias missing": (lambda f: f["block2_conv1"].__delitem__("block2_conv1_b_1:0"), "block2_conv1",
                     "expected one kernel"),
    "layer is a dataset": (lambda f: (f.__delitem__("block1_conv2"), f.create_dataset("block1_conv2", data=[1])),
                           "block1_conv2", "expected a group"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_files_raise_weights_error_naming_file_and_layer(tmp_path, case):
    edit, layer, what = BAD_CASES[case]
    path = _edit(_tiny_file(tmp_path), edit)
    with pytest.raises(WeightsError) as info:
        W.read_vgg_weights(path)
    msg = str(info.value)
    assert str(path) in msg and layer in msg and "\n" not in msg
    assert re.search(what, msg), msg


def _declare_huge(f):
    # a dataset declaring 3*3*4*10^12 float32 (~144 TB), chunked so the tiny file holds none of it
    del f["block2_conv1"]["block2_conv1_W_1:0"]
    f["block2_conv1"].create_dataset("block2_conv1_W_1:0", shape=(3, 3, 4, 10 ** 12), dtype="f4",
                                     chunks=(3, 3, 4, 1000))


def _corrupt_first_chunk(path, layer="block5_conv4"):
    with h5py.File(path, "r") as f:
        info = f[layer][f"{layer}_W_1:0"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    for i in range(info.byte_offset, info.byte_offset + info.size):
        data[i] = (data[i] * 7 + 13) & 255          # the gzip stream no longer inflates
    path.write_bytes(bytes(data))
    return path


HOSTILE = {
    "terabytes declared": (lambda p: _edit(p, _declare_huge), "block2_conv1", "C_out=1000000000000"),
    "wider than VGG": (lambda p: _edit(p, lambda f: (f["block5_conv1"].__delitem__("block5_conv1_W_1:0"),
                                                      f["block5_conv1"].create_dataset(
                                                          "block5_conv1_W_1:0", shape=(3, 3, 8, 10 ** 9),
                                                          dtype="f8", chunks=(3, 3, 8, 100)))),
                       "block5_conv1", "at most 512 channels"),
    "dangling soft link": (lambda p: _edit(p, lambda f: f["block3_conv1"].__setitem__(
        "extra", h5py.SoftLink("/nowhere"))), "block3_conv1/extra", "soft link to /nowhere"),
    "layer is a soft link": (lambda p: _edit(p, lambda f: (f.__delitem__("block1_conv2"), f.__setitem__(
        "block1_conv2", h5py.SoftLink("/block1_conv1")))), "block1_conv2", "soft link"),
    "external link to a missing file": (lambda p: _edit(p, lambda f: f["block4_conv1"].__setitem__(
        "x", h5py.ExternalLink("/missing/file.h5", "/a"))), "block4_conv1/x", "external link"),
    "hard-link cycle": (lambda p: _edit(p, lambda f: f["block1_conv1"].__setitem__("loop", f["block1_conv1"])),
                        "", "nested deeper"),
    "corrupt chunk": (_corrupt_first_chunk, "block5_conv4", "damaged data"),
    "string data": (lambda p: _edit(p, lambda f: _replace(f, "block2_conv2", "b", np.array([b"x"] * 6))),
                    "block2_conv2", r"bias has dtype \|S1, expected floating point"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_files_are_refused_before_any_data_is_read(tmp_path, case, monkeypatch):
    make, where, what = HOSTILE[case]
    path = make(_tiny_file(tmp_path))
    if case != "corrupt chunk":        # nothing may be read before the structure is accepted
        monkeypatch.setattr(W, "_read_dataset", lambda *a: pytest.fail("data read before the checks"))
    with pytest.raises(WeightsError) as info:
        W.read_vgg_weights(path)
    msg = str(info.value)
    assert str(path) in msg and where in msg and "\n" not in msg and re.search(what, msg), msg


def test_weights_info_on_a_hostile_file_is_one_line_exit_2(tmp_path):
    path = _edit(_tiny_file(tmp_path), _declare_huge)
    proc = subprocess.run([sys.executable, "-m", "numpynst", "weights", "info", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "block2_conv1" in proc.stderr


def test_missing_not_hdf5_and_empty_files(tmp_path):
    with pytest.raises(WeightsError, match=r"/nope\.h5 does not exist.*weights fetch vgg19"):
        W.read_vgg_weights(tmp_path / "nope.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(WeightsError, match=f"{re.escape(str(text))} is not a readable HDF5 file"):
        W.read_vgg_weights(text)
    with pytest.raises(WeightsError, match="is a directory"):
        W.read_vgg_weights(tmp_path)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f["something"] = [1, 2]
    with pytest.raises(WeightsError, match="holds no VGG conv layers.*something"):
        W.read_vgg_weights(empty)


def test_writer_refuses_incomplete_params(tmp_path):
    params = tiny_params("vgg19")
    del params["block4_conv4"]
    with pytest.raises(OptionError, match="exactly the conv layers"):
        W.write_vgg_h5(tmp_path / "x.h5", params)
    assert not list(tmp_path.iterdir())


def test_weights_info_lists_layers(tmp_path):
    path = write_tiny_vgg_h5(tmp_path / "t.h5", "vgg16", widths=(2, 3, 4, 5, 6))
    text = W.weights_info(path)
    assert "vgg16" in text and "13 conv layers" in text
    assert re.search(r"block5_conv3\s+\(3, 3, 6, 6\)\s+\(6,\)\s+float32\s+330", text)   # 9*6*6 + 6
    assert f"{path.stat().st_size:,} bytes" in text
    assert hashlib.sha256(path.read_bytes()).hexdigest() in text


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMPYNST_HOME", str(tmp_path / "h"))
    assert W.cache_dir() == tmp_path / "h"
    monkeypatch.delenv("NUMPYNST_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert W.cache_dir() == tmp_path / ".cache" / "numpynst"


# ------------------------------------------------------------------------- download
class _Server:
    """A local HTTP server for one file, supporting Range; can cut a response short or ignore Range."""

    def __init__(self, data: bytes):
        self.data, self.cut, self.ignore_range, self.ranges = data, False, False, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(server.data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(server.data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
                else:
                    self.send_response(200)
                body = server.data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut:                     # send half, then drop the connection
                    server.cut = False
                    self.wfile.write(body[:len(body) // 2])
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/vgg19.h5"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    srv = _Server(data)
    monkeypatch.setitem(W.OFFICIAL_FILES, "vgg19",
                        W.OfficialFile(srv.url, "vgg19.h5", "md5", hashlib.md5(data).hexdigest()))
    yield srv
    srv.close()


def test_fetch_downloads_checks_and_does_not_repeat(server, tmp_path):
    path = W.fetch("vgg19", dest=tmp_path, progress=False)
    assert path == tmp_path / "vgg19.h5" and path.read_bytes() == server.data
    assert not (tmp_path / "vgg19.h5.part").exists() and server.ranges == [None]
    assert W.fetch("vgg19", dest=tmp_path, progress=False) == path
    assert len(server.ranges) == 1                        # already there and verified: no request


def test_fetch_never_replaces_a_foreign_file_or_writes_through_a_link(server, tmp_path):
    (tmp_path / "vgg19.h5").write_bytes(b"my own file")
    with pytest.raises(WeightsError, match="is not the published vgg19 file"):
        W.fetch("vgg19", dest=tmp_path, progress=False)
    assert (tmp_path / "vgg19.h5").read_bytes() == b"my own file" and server.ranges == []
    other = tmp_path / "other"
    other.mkdir()
    (other / "victim").write_bytes(b"keep")
    (other / "vgg19.h5.part").symlink_to(other / "victim")
    with pytest.raises(WeightsError, match="not a regular file"):
        W.fetch("vgg19", dest=other, progress=False)
    assert (other / "victim").read_bytes() == b"keep"


def test_fetch_goes_to_cache_dir_by_default(server, tmp_path, monkeypatch):
    monkeypatch.setenv("NUMPYNST_HOME", str(tmp_path / "home"))
    assert W.fetch("vgg19", progress=False) == tmp_path / "home" / "vgg19.h5"


def test_fetch_resumes_a_partial_file(server, tmp_path):
    (tmp_path / "vgg19.h5.part").write_bytes(server.data[:123_456])
    path = W.fetch("vgg19", dest=tmp_path, progress=False)
    assert server.ranges == ["bytes=123456-"]
    assert path.read_bytes() == server.data


def test_fetch_interrupted_then_resumed(server, tmp_path):
    server.cut = True
    with pytest.raises(WeightsError, match=r"could not download .*run the command again to resume"):
        W.fetch("vgg19", dest=tmp_path, progress=False)
    part = tmp_path / "vgg19.h5.part"
    assert part.stat().st_size == 150_000 and not (tmp_path / "vgg19.h5").exists()
    path = W.fetch("vgg19", dest=tmp_path, progress=False)
    assert server.ranges == [None, "bytes=150000-"] and path.read_bytes() == server.data


def test_fetch_when_server_ignores_range(server, tmp_path):
    server.ignore_range = True
    (tmp_path / "vgg19.h5.part").write_bytes(b"garbage" * 1000)
    assert W.fetch("vgg19", dest=tmp_path, progress=False).read_bytes() == server.data


def test_fetch_hash_mismatch(server, tmp_path, monkeypatch):
    spec = W.OFFICIAL_FILES["vgg19"]
    monkeypatch.setitem(W.OFFICIAL_FILES, "vgg19", spec._replace(digest="0" * 32))
    with pytest.raises(WeightsError, match=f"md5 is {hashlib.md5(server.data).hexdigest()}, not the published 0+"):
        W.fetch("vgg19", dest=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []                # neither the file nor a .part is left


def test_fetch_offline_says_how_to_place_the_file_by_hand(tmp_path, monkeypatch):
    srv = _Server(b"")
    url = srv.url
    srv.close()                                           # nothing listens there any more
    monkeypatch.setitem(W.OFFICIAL_FILES, "vgg16", W.OfficialFile(url, "v16.h5", "md5", "0" * 32))
    with pytest.raises(WeightsError) as info:
        W.fetch("vgg16", dest=tmp_path, progress=False, timeout=5)
    msg = str(info.value)
    assert f"download {url} by hand and save it as {tmp_path / 'v16.h5'}" in msg and "\n" not in msg
    with pytest.raises(OptionError, match="vgg16, vgg19|vgg19, vgg16"):
        W.fetch("vgg11", dest=tmp_path)


def test_official_urls_and_hashes_are_keras_ones():
    for arch, md5 in (("vgg19", "253f8cb515780f3b799900260a226db6"), ("vgg16", "6d6bbae143d832006294945121d1f1fc")):
        spec = W.OFFICIAL_FILES[arch]
        assert spec.url == ("https://github.com/fchollet/deep-learning-models/releases/download/v0.1/"
                            f"{arch}_weights_tf_dim_ordering_tf_kernels_notop.h5")
        assert (spec.algo, spec.digest) == ("md5", md5)


# ------------------------------------------------------------------------- CLI
def test_cli_weights_info_and_path(capsys):
    assert main(["weights", "info"]) == 0
    out = capsys.readouterr().out
    assert "vgg19 (16 conv layers, 20,024,384 parameters)" in out and "block5_conv4" in out
    assert main(["weights", "path"]) == 0
    assert Path(capsys.readouterr().out.strip()).resolve() == SHIPPED.resolve()


def test_cli_weights_info_missing_file_is_one_line_exit_2():
    proc = subprocess.run([sys.executable, "-m", "numpynst", "weights", "info", "/nonexistent"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("numpynst: error: weights file /nonexistent does not exist")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_cli_inspect(tmp_path, capsys):
    from PIL import Image
    img = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(img)
    weights = write_tiny_vgg_h5(tmp_path / "tiny.h5")
    out = tmp_path / "maps.png"
    assert main(["inspect", str(img), "--layer", "block2_conv1", "-o", str(out), "--channels", "5",
                 "--size", "32", "--weights", str(weights)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp left
    capsys.readouterr()
    assert main(["inspect", str(img), "-o", str(img), "--weights", str(weights)]) == 2
    assert "is the input image" in capsys.readouterr().err
    assert main(["inspect", str(img), "--layer", "block9_conv1", "-o", str(out), "--overwrite",
                 "--weights", str(weights)]) == 2
    assert "valid names" in capsys.readouterr().err
    # an existing figure is replaced only with --overwrite
    before = out.read_bytes()
    assert main(["inspect", str(img), "-o", str(out), "--weights", str(weights)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    for ext in ("svg", "pdf", "jpg"):
        assert main(["inspect", str(img), "--layer", "block1_conv1", "-o", str(tmp_path / f"m.{ext}"),
                     "--channels", "2", "--size", "16", "--weights", str(weights)]) == 0
    assert (tmp_path / "m.svg").read_text().rstrip().endswith("</svg>")
    assert (tmp_path / "m.pdf").read_bytes()[:5] == b"%PDF-"
    assert (tmp_path / "m.jpg").read_bytes()[-2:] == b"\xff\xd9"

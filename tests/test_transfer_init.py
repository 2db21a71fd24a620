"""``stylize(init=...)`` with an image given as an array, as the docstring allows ("an image
(path or array) resized to the content"): it used to fail in ``_start`` by comparing the array
with the name ``"noise"``."""

import numpy as np
import pytest

from numpynst.errors import OptionError
from numpynst.image import load_image, save_image
from numpynst.testing import tiny_vgg
from numpynst.transfer import stylize

LAYERS = {"block1_conv1": 0.5, "block2_conv1": 0.5}


@pytest.fixture(scope="module")
def model():
    return tiny_vgg(dtype=np.float64)


def _img(rng, h, w):
    return rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)


def _run(model, content, style, init, **kw):
    return stylize(content, style, model=model, iterations=3, style_layers=LAYERS, tol=None, init=init, **kw)


def test_init_array_is_the_same_start_as_the_same_image_from_a_file(model, tmp_path):
    rng = np.random.default_rng(5)
    content, style, start = _img(rng, 16, 24), _img(rng, 20, 20), _img(rng, 16, 24)
    path = tmp_path / "start.png"
    save_image(path, start)
    assert np.array_equal(load_image(path), start)          # PNG keeps uint8 exactly
    from_array, from_file = _run(model, content, style, start), _run(model, content, style, str(path))
    assert from_array.history["J"] == from_file.history["J"]
    assert np.array_equal(from_array.image, from_file.image)
    # and it is that image the run starts from, not the content
    assert from_array.history["J"][0] != _run(model, content, style, "content").history["J"][0]


def test_init_array_equal_to_the_content_starts_where_init_content_does(model):
    rng = np.random.default_rng(6)
    content, style = _img(rng, 16, 24), _img(rng, 20, 20)
    a = _run(model, content, style, content.copy())
    b = _run(model, content, style, "content")
    assert a.history["J"][0] == b.history["J"][0]


def test_init_array_of_another_size_and_float_values_is_resized_to_the_content(model):
    rng = np.random.default_rng(7)
    content, style = _img(rng, 16, 24), _img(rng, 20, 20)
    small = _img(rng, 8, 12)
    res = _run(model, content, style, small.astype(np.float32), scales=[0.5, 1.0])
    assert res.image.shape == content.shape
    assert np.isfinite(res.history["J"]).all()
    same = _run(model, content, style, small, scales=[0.5, 1.0])    # the float array's values are whole
    assert res.history["J"] == same.history["J"]


def test_init_array_of_a_wrong_shape_is_an_option_error(model):
    rng = np.random.default_rng(8)
    with pytest.raises(OptionError, match=r"init must be an image path or an \(H, W, 3\) RGB array"):
        _run(model, _img(rng, 16, 16), _img(rng, 16, 16), np.zeros((16, 16)))

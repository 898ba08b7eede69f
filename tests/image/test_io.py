"""Reading line images: every Pillow mode the wild brings (16-bit, palette, RGBA, CMYK JPEG, EXIF rotation,
light-on-dark), sizes from headers without decoding, the normalisation to ink 1 / paper 0 at a fixed height,
and broken files (truncated, zero width, one pixel, not an image, missing, a folder) as errors naming them."""
import numpy as np
import pytest
import torch

import ctcrnn  # noqa: F401  (registries)
from ctcrnn.image.io import (
    ImageError,
    LineConfig,
    ink_map,
    line_size,
    line_spec,
    prepare_line,
    read_grey,
    read_line,
    scaled_width,
)
from ctcrnn.registry import READERS
from tests.fixtures.image import render_text, write_odd_images


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    return write_odd_images(tmp_path_factory.mktemp("odd"))


@pytest.mark.parametrize("name, tolerance", [("grey", 0.0), ("grey16", 0.0), ("palette", 0.0), ("rgba", 0.0),
                                              ("cmyk", 2 / 255), ("rgb_jpeg", 2 / 255), ("exif_rotated", 2 / 255)])
def test_every_mode_reads_as_the_same_upright_grey_line(odd, name, tolerance):
    path = odd["paths"][name]
    grey = read_grey(path)
    expected = odd["grey"] / 255.0
    assert grey.shape == expected.shape  # EXIF orientation 6 turned the stored (W, H) pixels back upright
    assert np.abs(grey - expected).max() <= tolerance + 1e-12
    assert line_size(path) == (expected.shape[1], expected.shape[0])  # from the header alone, rotation included


def test_sixteen_bit_levels_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    levels = np.array([[0, 1000, 30000, 65535]] * 3, dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / "ramp16.png")
    np.testing.assert_allclose(read_grey(tmp_path / "ramp16.png"), levels / 65535.0)


def test_light_on_dark_lines_give_the_same_ink(odd):
    config = LineConfig(height=32)
    dark_on_light = read_line(odd["paths"]["grey"], config)
    light_on_dark = read_line(odd["paths"]["inverted"], config)
    torch.testing.assert_close(light_on_dark, dark_on_light, atol=1e-6, rtol=0)
    # Forcing the wrong polarity reads paper as ink: the majority of the line is then "written".
    forced = read_line(odd["paths"]["inverted"], LineConfig(height=32, polarity="dark", stretch_contrast=False))
    assert float((forced > 0.5).float().mean()) > 0.5 > float((dark_on_light > 0.5).float().mean())


def test_normalised_line_has_paper_zero_ink_one_and_the_model_layout():
    grey = render_text("Hello", height=40) / 255.0 * 0.5 + 0.3  # a faded scan: paper 0.8, ink 0.3
    line = prepare_line(grey, LineConfig(height=32))
    assert line.shape == (32, scaled_width(grey.shape[1], grey.shape[0], 32))
    assert float(line.median()) == 0.0 and float(line.max()) == pytest.approx(1.0)
    x = read_line_from_array(grey, 32)
    assert x.shape == (line.shape[1], 1, 32) and x.dtype == torch.float32  # (W, 1, H): width is time
    assert torch.equal(x[:, 0, :], line.t())
    assert torch.equal(ink_map(np.ones((5, 9)), LineConfig()), torch.zeros(5, 9))  # blank: nothing to stretch


def read_line_from_array(grey, height):
    from ctcrnn.image.io import as_steps
    return as_steps(prepare_line(grey, LineConfig(height=height)))


@pytest.mark.parametrize("name, message", [
    ("truncated", "is truncated or corrupt"),
    ("zero_width", "cannot be read as an image"),
    ("one_pixel", "is 1 x 1 pixels: too small"),
    ("not_an_image", "cannot be read as an image"),
])
def test_broken_files_are_errors_naming_the_file(odd, name, message):
    path = odd["paths"][name]
    with pytest.raises(ImageError, match=message) as info:
        read_line(path, LineConfig())
    assert str(path) in str(info.value)


def test_missing_file_and_folder_are_errors_naming_them(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        line_size(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="is a directory"):
        read_grey(tmp_path)


def test_headers_give_sizes_without_decoding(odd):
    # A truncated file still has its header: its size is known for batching, its pixels fail when read.
    assert line_size(odd["paths"]["truncated"]) == line_size(odd["paths"]["grey"])
    with pytest.raises(ImageError, match="too small"):
        line_size(odd["paths"]["one_pixel"])


def test_registered_reader_reads_with_the_checkpoint_spec(odd):
    spec = line_spec(LineConfig(height=24))
    x = READERS.get("image")(odd["paths"]["grey"], spec)
    assert torch.equal(x, read_line(odd["paths"]["grey"], LineConfig(height=24)))
    assert spec["step_shape"] == [1, 24] and spec["word_delimiter"] == " " and spec["fps"] == 1.0


@pytest.mark.parametrize("bad", [{"height": 1}, {"height": 32.5}, {"polarity": "white"}])
def test_line_config_refuses_bad_values(bad):
    with pytest.raises(ValueError, match="line."):
        LineConfig.from_dict(bad)
    with pytest.raises(ValueError, match="did you mean 'height'"):
        LineConfig.from_dict({"heigth": 32})

"""Line augmentation: exact geometry at the identity, the direction of each change, the width bound that
batching by length relies on, and draws that depend on (seed, epoch, index) alone."""
import pytest
import torch

from ctcrnn.image.augment import LineAugmentConfig, affine, augment_line, gaussian_blur, ink_thickness
from ctcrnn.image.io import LineConfig, prepare_line
from ctcrnn.randomness import item_generator
from tests.fixtures.image import render_text


@pytest.fixture(scope="module")
def line():
    return prepare_line(render_text("Quick 42", height=40) / 255.0, LineConfig(height=32))


def test_identity_transform_returns_the_line(line):
    torch.testing.assert_close(affine(line, 0.0, 0.0, 1.0, 1.0), line, atol=1e-5, rtol=0)
    assert augment_line(line, LineAugmentConfig(enabled=False), None) is line


def test_stretch_sets_the_width_and_keeps_the_height(line):
    stretched = affine(line, 0.0, 0.0, 1.0, 2.0)
    assert stretched.shape == (32, 2 * line.shape[1])
    # Each column of the original lands on two: the ink per row doubles (up to the bilinear edges).
    assert float(stretched.sum()) == pytest.approx(2 * float(line.sum()), rel=0.02)
    sheared = affine(line, 0.0, 0.3, 1.0, 1.0)
    assert sheared.shape == (32, line.shape[1] + 10)  # ceil(0.3 * 32) columns of margin: nothing is cut off
    assert float(sheared.sum()) == pytest.approx(float(line.sum()), rel=0.02)


def test_ink_thickness_and_blur_go_the_right_way(line):
    assert float(ink_thickness(line, 0.5).sum()) > float(line.sum()) > float(ink_thickness(line, -0.5).sum())
    assert torch.equal(ink_thickness(line, 0.0), line)
    blurred = gaussian_blur(line, 1.0)
    assert blurred.shape == line.shape and float(blurred.max()) < float(line.max())
    assert float(blurred.sum()) == pytest.approx(float(line.sum()), rel=0.02)  # blur moves ink, keeps it


def test_draws_depend_on_seed_epoch_and_index_only(line):
    config = LineAugmentConfig(probability=1.0)
    a = augment_line(line, config, item_generator(3, 1, 7))
    assert torch.equal(a, augment_line(line, config, item_generator(3, 1, 7)))
    assert not torch.equal(a, augment_line(line, config, item_generator(3, 2, 7)))
    assert a.min() >= 0 and a.max() <= 1 and a.shape[0] == 32


def test_width_never_exceeds_the_bound_used_for_batching(line):
    config = LineAugmentConfig(probability=1.0, stretch=0.3, scale=0.2, shear=0.5)
    bound = config.max_width(line.shape[1], 32)
    widths = [augment_line(line, config, item_generator(0, 0, i)).shape[1] for i in range(40)]
    assert max(widths) <= bound and min(widths) < line.shape[1] < max(widths)


@pytest.mark.parametrize("bad", [{"scale": 1.0}, {"rotate": -1}, {"probability": 2}, {"contrast": 1.5}])
def test_config_refuses_bad_values(bad):
    with pytest.raises(ValueError, match="augment."):
        LineAugmentConfig.from_dict(bad)

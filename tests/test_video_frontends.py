import pytest
import torch

from ctcrnn.video.frontends import FrameCNN, SpatialSoftArgmax, normal_flow


def test_soft_argmax_finds_the_peak():
    pool = SpatialSoftArgmax(1)
    with torch.no_grad():
        pool.log_temperature.fill_(5.0)  # a sharp softmax: all weight on the peak
    x = torch.zeros(1, 1, 5, 9)
    x[0, 0, 1, 6] = 10.0
    mean_x, mean_y, spread_x, spread_y, peak = pool(x)[0].tolist()
    assert mean_x == pytest.approx(-1 + 2 * 6 / 8, abs=1e-6) and mean_y == pytest.approx(-1 + 2 * 1 / 4, abs=1e-6)
    assert spread_x == pytest.approx(0, abs=1e-6) and spread_y == pytest.approx(0, abs=1e-6) and peak == 10.0


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("pool", ["grid", "softargmax"])
def test_frame_cnn_padding_invariance_and_lengths(stride, pool):
    frontend = FrameCNN((3, 16, 16), widths=(4, 8), feature_dim=6, temporal_kernel=5, temporal_stride=stride,
                        frame_difference=True, pool=pool).double().eval()
    lengths = torch.tensor([11, 4, 7])
    x = torch.randn(3, 11, 3, 16, 16, dtype=torch.float64)
    x[1, 4:] = 5.0  # garbage padding must not matter
    out = frontend(x, lengths)
    out_lengths = frontend.output_lengths(lengths)
    assert out.shape == (3, int(out_lengths.max()), 6)
    for i, n in enumerate(lengths.tolist()):
        alone = frontend(x[i : i + 1, :n], lengths[i : i + 1])
        m = int(out_lengths[i])
        assert alone.shape[1] == m
        torch.testing.assert_close(out[i, :m], alone[0], rtol=0, atol=1e-12)


def test_bad_frontend_arguments():
    with pytest.raises(ValueError, match="odd"):
        FrameCNN((3, 16, 16), temporal_kernel=4)
    with pytest.raises(ValueError, match="trunk"):
        FrameCNN((3, 16, 16), trunk="vgg")
    with pytest.raises(ValueError, match="pool"):
        FrameCNN((3, 16, 16), pool="max")


def test_resnet18_trunk_loads_local_weights(tmp_path):
    from torchvision.models import resnet18

    path = tmp_path / "r18.pt"
    torch.save(resnet18(weights=None).state_dict(), path)
    frontend = FrameCNN((3, 32, 32), trunk="resnet18", weights_path=str(path), freeze_trunk=True, feature_dim=8)
    frontend.train()
    assert not frontend.trunk.training, "a frozen trunk keeps its BatchNorm statistics"
    assert all(not p.requires_grad for p in frontend.trunk.parameters())
    out = frontend(torch.randn(2, 3, 3, 32, 32), torch.tensor([3, 2]))
    assert out.shape == (2, 3, 8)
    bad = tmp_path / "bad.pt"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a ResNet-18"):
        FrameCNN((3, 32, 32), trunk="resnet18", weights_path=str(bad))


@pytest.mark.parametrize("dx, dy", [(1, 0), (-1, 0), (0, 1), (0, -1)])
def test_normal_flow_points_against_the_motion(dx, dy):
    """A bright square moving one pixel per frame: summed over the frame, I_t * grad I has the sign of
    -v on the moving axis and sums to zero on the other (the square is symmetric)."""
    frames = torch.zeros(1, 4, 3, 16, 16)
    for t in range(4):
        y, x = 6 + dy * t, 6 + dx * t
        frames[0, t, :, y : y + 4, x : x + 4] = 1.0
    flow = normal_flow(frames)                                      # (1, 4, 2, 16, 16)
    assert flow.shape == (1, 4, 2, 16, 16) and flow[0, 0].abs().sum() == 0  # no predecessor, no motion
    sums = flow[0, 1:].sum(dim=(2, 3))                              # (3, 2): x and y components
    for moving, component in ((dx, sums[:, 0]), (dy, sums[:, 1])):
        if moving:
            assert (torch.sign(component) == -moving).all()
        else:
            torch.testing.assert_close(component, torch.zeros(3), rtol=0, atol=1e-6)

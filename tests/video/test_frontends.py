import pytest
import torch

from ctcrnn import create_model
from ctcrnn.nn.ctc import ctc_loss
from ctcrnn.training.stepping import Stepper
from ctcrnn.video.frontends import CSLRFrontend, FrameCNN, LipNet3D, SpatialSoftArgmax, normal_flow


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


# LipNet3D and CSLRFrontend.


def assert_batch_equals_alone(frontend, x, lengths, atol=1e-12):
    """Each clip's output frames are the same batched (with garbage padding) as alone; frames past its
    output length are zero; the batch is as long as its longest output."""
    out = frontend(x, lengths)
    out_lengths = frontend.output_lengths(lengths)
    assert out.shape == (len(lengths), max(int(out_lengths.max()), 1), frontend.out_dim)
    for i, n in enumerate(lengths.tolist()):
        alone = frontend(x[i : i + 1, :n], lengths[i : i + 1])
        m = int(out_lengths[i])
        assert alone.shape[1] == max(m, 1)
        torch.testing.assert_close(out[i, :m], alone[0, :m], rtol=0, atol=atol)
        if m < out.shape[1]:
            assert out[i, m:].abs().max() == 0


def test_lipnet_feature_size_for_grid_mouth_crops():
    frontend = LipNet3D((3, 50, 100)).eval()
    assert frontend.feature_shape == (96, 3, 6) and frontend.out_dim == 1728 and frontend.stride == 1
    out = frontend(torch.randn(1, 2, 3, 50, 100), torch.tensor([2]))
    assert out.shape == (1, 2, 1728)
    with pytest.raises(ValueError, match="mouth crops"):
        LipNet3D((3, 8, 100))


def test_lipnet_keeps_time_and_padding_never_leaks():
    torch.manual_seed(0)
    frontend = LipNet3D((1, 16, 24), channels=(3, 4, 5)).double().eval()
    assert frontend.out_dim == 5 * 1 * 1
    lengths = torch.tensor([7, 1, 4, 6])
    x = torch.randn(4, 7, 1, 16, 24, dtype=torch.float64)
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 5.0  # garbage padding must not matter: the temporal kernel 3 reads frame n
    assert torch.equal(frontend.output_lengths(lengths), lengths)
    assert_batch_equals_alone(frontend, x, lengths)


@pytest.mark.parametrize("edge_padding", [True, False])
def test_cslr_output_lengths_match_shapes(edge_padding):
    frontend = CSLRFrontend((1, 8, 8), trunk="small", widths=(2,), hidden=3, edge_padding=edge_padding).eval()
    assert frontend.stride == 4 and frontend.out_dim == 3
    for steps in range(1, 31):
        expected = -(-steps // 4) if edge_padding else max(((steps - 4) // 2 - 4) // 2, 0)
        assert int(frontend.output_lengths(torch.tensor([steps]))) == expected, steps
        with torch.no_grad():
            out = frontend(torch.randn(1, steps, 1, 8, 8), torch.tensor([steps]))
        assert out.shape == (1, max(expected, 1), 3), steps


def test_cslr_conv_lengths_are_vacs_formula():
    """VAC's update_lgt: each K5 takes 4 frames, each P2 halves (floor); also what Conv1d/MaxPool1d give."""
    lengths = torch.arange(12, 200)
    expected = ((lengths - 4) // 2 - 4) // 2
    assert torch.equal(CSLRFrontend.conv_lengths(lengths), expected)
    stack = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 5), torch.nn.MaxPool1d(2), torch.nn.Conv1d(1, 1, 5),
                                torch.nn.MaxPool1d(2))
    assert [stack(torch.zeros(1, 1, n)).shape[-1] for n in (16, 17, 30, 75)] == \
        CSLRFrontend.conv_lengths(torch.tensor([16, 17, 30, 75])).tolist()


@pytest.mark.parametrize("edge_padding", [True, False])
def test_cslr_padding_never_leaks(edge_padding):
    torch.manual_seed(0)
    frontend = CSLRFrontend((3, 16, 16), trunk="small", widths=(4, 8), hidden=5, edge_padding=edge_padding)
    frontend = frontend.double().eval()
    lengths = torch.tensor([30, 4, 17, 13, 21])
    x = torch.randn(5, 30, 3, 16, 16, dtype=torch.float64)
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 5.0
    assert_batch_equals_alone(frontend, x, lengths)


def test_cslr_edge_padding_is_vacs_collate():
    """edge_padding=True equals the bare conv stack on clips padded as VAC's collate_fn pads them:
    6 copies of the first frame before, copies of the last frame up to 4 * ceil(n / 4) + 12."""
    torch.manual_seed(0)
    padded = CSLRFrontend((3, 16, 16), trunk="small", widths=(4,), hidden=5, edge_padding=True).double().eval()
    bare = CSLRFrontend((3, 16, 16), trunk="small", widths=(4,), hidden=5, edge_padding=False).double().eval()
    bare.load_state_dict(padded.state_dict())
    for n in (1, 5, 8, 23):
        clip = torch.randn(1, n, 3, 16, 16, dtype=torch.float64)
        total = 4 * -(-n // 4) + 12
        vac = torch.cat([clip[:, :1].expand(-1, 6, -1, -1, -1), clip,
                         clip[:, -1:].expand(-1, total - n - 6, -1, -1, -1)], dim=1)
        expected = bare(vac, torch.tensor([total]))
        assert int(bare.output_lengths(torch.tensor([total]))) == -(-n // 4) == expected.shape[1]
        torch.testing.assert_close(padded(clip, torch.tensor([n])), expected, rtol=0, atol=1e-12)


def test_cslr_resnet18_trunk_frozen_with_local_weights(tmp_path):
    from torchvision.models import resnet18

    path = tmp_path / "r18.pt"
    torch.save(resnet18(weights=None).state_dict(), path)
    frontend = CSLRFrontend((3, 32, 32), trunk="resnet18", weights_path=str(path), freeze_trunk=True, hidden=4)
    frontend.train()
    assert not frontend.trunk.training and frontend.temporal.training, "a frozen trunk keeps its BatchNorm statistics"
    assert all(not p.requires_grad for p in frontend.trunk.parameters())
    assert frontend(torch.randn(2, 5, 3, 32, 32), torch.tensor([5, 3])).shape == (2, 2, 4)
    with pytest.raises(ValueError, match="trunk"):
        CSLRFrontend((3, 32, 32), trunk="vgg")


def test_cslr_aux_ctc_head_is_trained_through_stepper():
    torch.manual_seed(0)
    model = create_model("cslr_resnet18_bilstm", num_classes=5, in_shape=(3, 16, 16), trunk="small", hidden=6,
                         aux_ctc_weight=0.5, encoder={"hidden_size": 4})
    x, lengths = torch.randn(2, 13, 3, 16, 16), torch.tensor([13, 9])
    batch = {"inputs": x, "lengths": lengths, "targets": [[1, 2], [3]], "ids": ["a", "b"]}
    model.train()
    _, out_lengths = model(x, lengths)
    aux_log_probs, aux_lengths = model.aux_output
    assert aux_log_probs.shape == (2, 4, 5) and torch.equal(aux_lengths, out_lengths)
    assert torch.equal(out_lengths, torch.tensor([4, 3]))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    stepper = Stepper(model, optimizer, scheduler, torch.device("cpu"))
    stepper.accumulate(batch)
    assert model.aux_output is None, "the stepper consumes the aux output"
    from_stepper = model.aux_head.weight.grad.clone()
    assert from_stepper.abs().sum() > 0
    # The aux head's gradient is exactly weight x its summed CTC loss (the main loss does not reach it;
    # the frontend has no dropout and BatchNorm is in training mode, so the features are the same).
    model.zero_grad()
    model(x, lengths)
    result = ctc_loss(*model.aux_output, batch["targets"], batch["ids"])
    (0.5 * result.loss * result.kept).backward()
    torch.testing.assert_close(model.aux_head.weight.grad, from_stepper)
    model.eval()
    model.aux_output = None
    model(x, lengths)
    assert model.aux_output is None, "no aux output in eval mode"

"""The text-line zoo: parameter counts against the papers, exact output lengths (W // stride), and padding
that never changes a line's output (a line alone vs in a batch beside wider lines, in float64, through every
entry), with real rendered lines as input."""
import pytest
import torch

import ctcrnn  # noqa: F401  (registries)
from ctcrnn.data import collate
from ctcrnn.image.frontends import LineCNN
from ctcrnn.image.io import LineConfig, as_steps, prepare_line
from ctcrnn.image.rnn import ProjectedRNNStack
from ctcrnn.nn.encoder import EncoderConfig, RNNEncoder
from ctcrnn.registry import create_model
from tests.fixtures.image import render_text


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_papers():
    # CRNN, Shi et al. 2016: "8.3 M parameters" with 37 classes; Puigcerver 2017: 9.6 M with IAM's 80.
    crnn = create_model("crnn", num_classes=37)
    assert count(crnn) == 8_330_789 and abs(count(crnn) / 8.3e6 - 1) < 0.01
    assert count(create_model("crnn", num_classes=37, rnn_projection=False)) == 8_723_749
    puigcerver = create_model("puigcerver2017", num_classes=80)
    assert count(puigcerver) == 9_591_728 and abs(count(puigcerver) / 9.6e6 - 1) < 0.01
    assert count(create_model("crnn_small", num_classes=77)) == 882_829
    assert (crnn.frontend.stride, puigcerver.frontend.stride) == (4, 8)
    assert (crnn.frontend.out_dim, puigcerver.frontend.out_dim) == (512, 80 * 16)


def lines(texts, height):
    return [as_steps(prepare_line(render_text(t, height=30) / 255.0, LineConfig(height=height))) for t in texts]


@pytest.mark.parametrize("name, height, kwargs", [
    ("crnn", 32, {"encoder": {"hidden_size": 32}}),
    ("crnn", 32, {"rnn_projection": False, "encoder": {"hidden_size": 16}}),
    ("crnn_small", 32, {}),
    ("crnn_small", 32, {"cell": "gru"}),
    ("puigcerver2017", 128, {"encoder": {"hidden_size": 24, "num_layers": 2}}),
])
def test_padding_never_changes_a_line(name, height, kwargs):
    model = create_model(name, num_classes=11, in_shape=(1, height), **kwargs).eval().double()
    # Widths chosen so that the padding of the shorter lines straddles pooling windows and the last conv.
    items = [{"id": str(i), "input": x.double(), "target": [1]}
             for i, x in enumerate(lines(["Wide one, 42", "short", "mid line", "ab"], height))]
    batch = collate(items)
    assert len(set(batch["lengths"].tolist())) == 4
    with torch.no_grad():
        batched, out_lengths = model(batch["inputs"], batch["lengths"])
        assert out_lengths.tolist() == [n // model.frontend.stride for n in batch["lengths"].tolist()]
        assert batched.shape[1] == int(out_lengths.max())
        for i, item in enumerate(items):
            alone, alone_length = model(item["input"][None], batch["lengths"][i : i + 1])
            m = int(out_lengths[i])
            assert int(alone_length) == m == alone.shape[1]
            torch.testing.assert_close(batched[i, :m], alone[0], rtol=1e-9, atol=1e-9)


def test_lines_narrower_than_one_stride_give_no_frames():
    model = create_model("crnn_small", num_classes=5).eval()
    log_probs, out_lengths = model(torch.rand(2, 3, 1, 32), torch.tensor([3, 2]))
    assert out_lengths.tolist() == [0, 0] and torch.isfinite(log_probs).all()


def test_frontend_refuses_shapes_it_cannot_read():
    with pytest.raises(ValueError, match="no rows after the poolings"):
        LineCNN((1, 8))
    with pytest.raises(ValueError, match=r"\(channels, height\)"):
        LineCNN((32,))


def test_projected_stack_is_bilstm_linear_bilstm():
    torch.manual_seed(0)
    config = EncoderConfig(cell="lstm", hidden_size=6, num_layers=2)
    stack = ProjectedRNNStack(10, config).eval()
    x, lengths = torch.randn(3, 7, 10), torch.tensor([7, 5, 2])
    first, second = stack.layers
    assert isinstance(first, RNNEncoder) and first.projection.out_features == 6 and second.out_dim == 12
    expected = second(first(x, lengths), lengths)
    torch.testing.assert_close(stack(x, lengths), expected)
    assert stack(x, lengths)[1, 5:].abs().sum() == 0  # frames past a sample's length are zero

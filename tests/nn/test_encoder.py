"""Padding never leaks: a sample's output is the same alone and in a batch with longer samples."""
import pytest
import torch

from ctcrnn.nn.encoder import EncoderConfig, RNNEncoder
from ctcrnn.nn.model import CTCModel, conv_output_lengths


@pytest.mark.parametrize("impl", ["fused", "reference"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_invariance(impl, cell, bidirectional):
    config = EncoderConfig(cell=cell, impl=impl, hidden_size=6, num_layers=2, bidirectional=bidirectional)
    encoder = RNNEncoder(4, config).double().eval()
    lengths = torch.tensor([3, 7, 5])
    x = torch.randn(3, 7, 4, dtype=torch.float64)
    # Garbage in the padding must not matter either.
    for i, n in enumerate(lengths):
        x[i, n:] = 1e3
    batched = encoder(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = encoder(x[i : i + 1, :n], lengths[i : i + 1])
        torch.testing.assert_close(batched[i, :n], alone[0], rtol=0, atol=1e-12)
        assert torch.all(batched[i, n:] == 0)


def test_fused_and_reference_agree():
    torch.manual_seed(1)
    fused = RNNEncoder(5, EncoderConfig(cell="lstm", impl="fused", hidden_size=4, num_layers=3)).double().eval()
    reference = RNNEncoder(5, EncoderConfig(cell="lstm", impl="reference", hidden_size=4, num_layers=3)).double().eval()
    reference.load_state_dict(fused.state_dict())
    x, lengths = torch.randn(2, 6, 5, dtype=torch.float64), torch.tensor([6, 2])
    torch.testing.assert_close(fused(x, lengths), reference(x, lengths), rtol=0, atol=1e-10)


def test_projection_and_out_dim():
    encoder = RNNEncoder(5, EncoderConfig(hidden_size=4, projection=7))
    assert encoder.out_dim == 7 and encoder(torch.randn(2, 3, 5), torch.tensor([3, 1])).shape == (2, 3, 7)
    assert EncoderConfig(hidden_size=4, bidirectional=False).out_dim == 4


@pytest.mark.parametrize("bad", [dict(cell="rnn"), dict(impl="cudnn"), dict(hidden_size=0), dict(dropout=1.0)])
def test_bad_encoder_config(bad):
    with pytest.raises(ValueError):
        EncoderConfig(**bad)


def test_conv_output_lengths_match_torch():
    lengths = torch.arange(5, 30)
    for kernel, stride, padding in [(5, 1, 0), (2, 2, 0), (3, 2, 1), (11, 2, 5)]:
        expected = [torch.nn.functional.conv1d(torch.zeros(1, 1, int(n)), torch.zeros(1, 1, kernel), stride=stride,
                                               padding=padding).shape[-1] for n in lengths]
        assert conv_output_lengths(lengths, kernel, stride, padding).tolist() == expected


def test_model_needs_two_classes():
    from ctcrnn.nn.model import Frontend

    class Identity(Frontend):
        out_dim = 3

        def forward(self, x, lengths):
            return x

    with pytest.raises(ValueError, match="blank plus at least one label"):
        CTCModel(Identity(), EncoderConfig(), num_classes=1)

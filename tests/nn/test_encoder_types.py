"""The Transformer and TCN encoders: padding never leaks, sizes, config plumbing, old checkpoints unchanged."""
import pytest
import torch

from ctcrnn.nn.encoder import EncoderConfig, RNNEncoder, build_encoder
from ctcrnn.nn.tcn import TCNEncoder
from ctcrnn.nn.transformer import TransformerEncoder, sinusoidal_positions
from ctcrnn.registry import create_model


@pytest.mark.parametrize("config", [
    {"type": "transformer", "hidden_size": 4, "nhead": 2, "num_layers": 2},
    {"type": "transformer", "d_model": 6, "nhead": 3, "ff_size": 10, "num_layers": 1, "projection": 5},
    {"type": "tcn", "hidden_size": 3, "num_layers": 3},
    {"type": "tcn", "d_model": 5, "kernel_size": 5, "num_layers": 2, "bidirectional": False},
    {"type": "rnn", "cell": "gru", "hidden_size": 4},
])
def test_padding_invariance(config):
    torch.manual_seed(0)
    encoder = build_encoder(4, EncoderConfig(**config)).double().eval()
    lengths = torch.tensor([3, 9, 5, 0])
    x = torch.randn(4, 9, 4, dtype=torch.float64)
    for i, n in enumerate(lengths):
        x[i, n:] = 1e3  # garbage in the padding must not matter
    batched = encoder(x, lengths)
    assert batched.shape == (4, 9, encoder.out_dim) and torch.isfinite(batched).all()
    for i, n in enumerate(lengths.tolist()):
        if n:
            alone = encoder(x[i : i + 1, :n], lengths[i : i + 1])
            torch.testing.assert_close(batched[i, :n], alone[0], rtol=0, atol=1e-12)
        assert torch.all(batched[i, n:] == 0)


def test_gradients_finite_with_empty_sample():
    encoder = build_encoder(3, EncoderConfig(type="transformer", hidden_size=2, nhead=2))
    x = torch.randn(2, 4, 3, requires_grad=True)
    encoder(x, torch.tensor([4, 0])).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters() if p.grad is not None)


def test_build_encoder_dispatches_on_type_and_keeps_rnn_keys():
    assert isinstance(build_encoder(4, EncoderConfig(type="transformer", hidden_size=4)), TransformerEncoder)
    assert isinstance(build_encoder(4, EncoderConfig(type="tcn")), TCNEncoder)
    # An old checkpoint's encoder dict has no `type`: the same network, the same state_dict keys.
    old = EncoderConfig.resolve({"cell": "gru", "hidden_size": 4, "num_layers": 2}, {})
    encoder = build_encoder(3, old)
    keys = list(encoder.state_dict())
    assert isinstance(encoder, RNNEncoder)
    assert old.type == "rnn" and keys[0] == "layers.0.0.weight_ih_l0" and len(keys) == 16


def test_width_and_out_dim():
    assert EncoderConfig(type="transformer", hidden_size=8).out_dim == 16
    assert EncoderConfig(type="transformer", hidden_size=8, d_model=12).out_dim == 12
    assert EncoderConfig(type="rnn", hidden_size=8, d_model=12).out_dim == 16  # d_model is not an RNN field
    assert EncoderConfig(type="tcn", d_model=12, projection=3).out_dim == 3
    assert TCNEncoder(2, EncoderConfig(type="tcn", num_layers=3, kernel_size=3)).receptive_field == 15


@pytest.mark.parametrize("bad", [{"type": "mamba"}, {"type": "transformer", "hidden_size": 3, "nhead": 4},
                                 {"type": "tcn", "kernel_size": 4}, {"d_model": -1}])
def test_bad_config(bad):
    with pytest.raises(ValueError):
        EncoderConfig(**bad)


def test_sinusoidal_positions_any_length():
    table = sinusoidal_positions(100_000, 5)
    assert table.shape == (100_000, 5) and torch.isfinite(table).all()


@pytest.mark.parametrize("entry,kwargs", [
    ("weak_action_bigru", {"in_shape": (16,)}),
    ("frame_cnn_rnn", {}),
])
@pytest.mark.parametrize("kind", ["transformer", "tcn"])
def test_zoo_entries_swap_encoder_by_config(entry, kind, kwargs):
    model = create_model(entry, num_classes=5, encoder={"type": kind}, **kwargs)
    assert model.encoder.config.type == kind and model.arch["kwargs"]["encoder"]["type"] == kind
    rebuilt = create_model(entry, **model.arch["kwargs"])  # what loading a checkpoint does
    assert list(rebuilt.state_dict()) == list(model.state_dict())

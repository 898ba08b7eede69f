"""Registry behaviour, and smoke tests generated from the registry: every entry builds, runs
forward and backward, honours the model contract and rebuilds from its own ``arch``."""
import pytest
import torch

import ctcrnn
from ctcrnn import create_model, list_models
from ctcrnn.nn.model import CTCModel
from ctcrnn.registry import MODELS, Registry, RegistryError

# Small per-entry inputs: (in_shape, T, builder-argument variants) for each registered model.
SMOKE_INPUTS = {
    "frame_cnn_rnn": ((3, 16, 16), 9, [{}, {"temporal_stride": 1, "pool": "grid"},
                                       {"temporal_stride": 3, "temporal_kernel": 5, "pool": "softargmax"},
                                       {"frame_difference": False, "temporal_kernel": 1, "temporal_stride": 1, "pool": "grid"},
                                       {"temporal_stride": 4, "temporal_kernel": 9, "motion_cues": True,
                                        "input_norm": True}]),
    "deepspeech2": ((32,), 13, [{"conv_channels": 3},
                                {"conv_channels": 2, "freq_kernels": (5, 3, 3), "freq_strides": (2, 2, 1),
                                 "time_kernels": (5, 3, 3), "time_strides": (2, 2, 1)}]),
    "deepspeech2_small": ((40,), 12, [{"conv_channels": 3}, {"conv_channels": 2, "time_strides": (1, 1)}]),
    "deepspeech2_streaming": ((32,), 13, [{"conv_channels": 3, "lookahead": 2}]),
    "deepspeech2_small_streaming": ((40,), 12, [{"conv_channels": 3}, {"conv_channels": 2, "time_kernels": (4, 2),
                                                                        "time_strides": (3, 1), "lookahead": 1}]),
    "frame_cnn_rnn_streaming": ((3, 16, 16), 9, [{}, {"temporal_kernel": 4, "temporal_stride": 2, "lookahead": 3}]),
    "crdnn": ((16,), 12, [{"channels": (3, 4), "dnn_sizes": (8, 8)},
                          {"channels": (2,), "time_pooling": 3, "kernel_size": 5, "dnn_sizes": ()},
                          {"channels": (2, 3), "time_pooling": 1, "freq_pooling": 4, "dnn_sizes": (5,)}]),
    "weak_action_bigru": ((16,), 12, [{"proj_dim": 8}, {"proj_dim": 6, "kernel": 3, "stride": 2}, {"proj_dim": 5, "kernel": 5, "stride": 3}]),
    "lipnet": ((1, 16, 24), 7, [{}, {"dropout": 0.0}]),
    # The default aux_ctc_weight=1 adds an auxiliary CTC head (its loss through Stepper is checked in
    # tests/test_video_frontends.py); the second variant has none.
    "cslr_resnet18_bilstm": ((3, 16, 16), 9, [{"trunk": "small", "hidden": 8},
                                              {"trunk": "small", "hidden": 6, "freeze_trunk": True,
                                               "aux_ctc_weight": 0.0}]),
    # Text lines: (1, H) columns of pixels, width stride 4 (the shortest smoke input is 4 columns: puigcerver2017's
    # default stride 8 is covered by tests/image/test_models.py).
    "crnn": ((1, 32), 13, [{}, {"rnn_projection": False}]),
    "crnn_small": ((1, 32), 13, [{"channels": (4, 4, 8, 8, 8, 8), "collapse_channels": 8}]),
    "puigcerver2017": ((1, 32), 13, [{"channels": (2, 3, 4, 5, 6), "pooled_blocks": 2},
                                     {"channels": (2, 3, 4, 5, 6), "pooled_blocks": 2, "conv_dropout": 0.0,
                                      "dropout": 0.0}]),
}
CASES = [(name, i) for name in list_models() for i in range(len(SMOKE_INPUTS.get(name, (0, 0, [{}]))[2]))]


def test_list_and_pattern():
    assert "frame_cnn_rnn" in list_models()
    assert list_models("frame_*") == ["frame_cnn_rnn", "frame_cnn_rnn_streaming"]
    assert list_models("nothing*") == []


def test_unknown_and_duplicate_names():
    with pytest.raises(RegistryError, match="did you mean 'frame_cnn_rnn'"):
        create_model("frame_cnn_rn", num_classes=5)
    registry = Registry("thing")
    registry.register(lambda: 1, name="a")
    with pytest.raises(RegistryError, match="already registered"):
        registry.register(lambda: 2, name="a")


def test_unknown_argument_names_closest():
    with pytest.raises(RegistryError, match="did you mean 'feature_dim'"):
        create_model("frame_cnn_rnn", num_classes=5, feature_dims=3)
    with pytest.raises(RegistryError, match="did you mean 'hidden_size'"):
        create_model("frame_cnn_rnn", num_classes=5, encoder={"hiden_size": 3})


def test_none_overrides_keep_entry_defaults():
    model = create_model("frame_cnn_rnn", num_classes=5, feature_dim=None, encoder={"cell": None, "hidden_size": 16})
    assert model.encoder.config.cell == "gru" and model.encoder.config.hidden_size == 16
    assert model.frontend.out_dim == 128


def test_every_entry_is_smoke_tested():
    assert set(list_models()) == set(SMOKE_INPUTS), "add new zoo entries to SMOKE_INPUTS"


@pytest.mark.parametrize("name, variant", CASES)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_entry_forward_backward_and_rebuild(name, variant, cell):
    in_shape, steps, variants = SMOKE_INPUTS[name]
    model = create_model(name, num_classes=6, in_shape=in_shape, encoder={"cell": cell, "hidden_size": 8},
                         **variants[variant])
    assert isinstance(model, CTCModel)
    assert MODELS.get(name).__doc__, "zoo entries document their defaults and source"
    x = torch.randn(3, steps, *in_shape)
    lengths = torch.tensor([steps, steps - 2, 4])
    log_probs, out_lengths = model(x, lengths)
    assert log_probs.shape[:2] == (3, int(out_lengths.max())) and log_probs.shape[2] == 6
    assert torch.equal(out_lengths, model.frontend.output_lengths(lengths))
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(()), atol=1e-5)
    aux = model.aux_output[0].sum() if model.aux_output is not None else 0.0  # an auxiliary CTC head, if any
    (log_probs.sum() + aux).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    rebuilt = create_model(model.arch["name"], **model.arch["kwargs"])
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.arch == model.arch and rebuilt.arch["kwargs"]["encoder"]["cell"] == cell
    # The whole model, not just the encoder, must not let padding leak (eval mode: no dropout/BN updates).
    # In float64, so that "equal" means equal up to summation order (~1e-16 relative), whatever the CPU's
    # kernels: a leak of padding into a real frame would show far above 1e-9.
    model.eval().double()
    x = x.double()
    with torch.no_grad():
        batched, out_lengths = model(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone, alone_length = model(x[i : i + 1, :n], lengths[i : i + 1])
            m = int(out_lengths[i])
            assert int(alone_length) == m == alone.shape[1]
            torch.testing.assert_close(batched[i, :m], alone[0], rtol=1e-9, atol=1e-9)


def test_top_level_api():
    assert ctcrnn.create_model is create_model and ctcrnn.list_models is list_models

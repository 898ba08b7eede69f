"""Streaming models: chunk by chunk, the log-probs of every causal zoo entry equal its offline forward over the
whole input, for every chunking (one step at a time, sizes that do not divide the stride, boundaries inside a
convolution's receptive field), and the building blocks agree with their offline definitions."""
import pytest
import torch

from ctcrnn import create_model, list_models
from ctcrnn.nn.streaming import CausalConvStream, Lookahead, NotStreamableError, causal_pad

# Tiny builder arguments per causal entry: (in_shape, steps, kwargs). Steps > the receptive fields.
STREAMING = {
    "deepspeech2_streaming": ((32,), 41, {"conv_channels": 3, "lookahead": 3,
                                          "encoder": {"hidden_size": 12, "num_layers": 2}}),
    "deepspeech2_small_streaming": ((40,), 37, {"conv_channels": 3, "encoder": {"hidden_size": 12}}),
    "frame_cnn_rnn_streaming": ((3, 16, 16), 29, {"widths": (4, 8), "feature_dim": 12,
                                                  "encoder": {"hidden_size": 12}}),
}


def test_every_streaming_entry_is_covered():
    assert set(list_models("*_streaming")) == set(STREAMING)


def stream_all(model, x, sizes):
    """Feed x (1, T, ...) in chunks of the given sizes (cycled), then finish; drop the stream's delay frames."""
    state, outputs, start, i = model.initial_state(1), [], 0, 0
    while start < x.shape[1]:
        size = sizes[i % len(sizes)]
        outputs.append(model.stream(x[:, start:start + size], state))
        start, i = start + size, i + 1
    outputs.append(model.stream(x[:, :0], state, final=True))
    return torch.cat(outputs, dim=1)[:, model.stream_delay:]


@pytest.mark.parametrize("name", sorted(STREAMING))
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_streamed_log_probs_equal_offline(name, cell):
    in_shape, steps, kwargs = STREAMING[name]
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_shape=in_shape, cell=cell, **kwargs).eval()
    assert model.streamable and model.latency()["causal"]
    x = torch.randn(1, steps, *in_shape)
    with torch.no_grad():
        offline, lengths = model(x, torch.tensor([steps]))
        # 1 step at a time; sizes that do not divide the stride; a chunk of 0 steps in the middle; all at once
        for sizes in ([1], [2], [3], [5, 0, 7], [11], [steps]):
            streamed = stream_all(model, x, sizes)
            assert streamed.shape == offline.shape
            # float32 log-softmax over a few layers; the same operations, split differently: rounding only
            torch.testing.assert_close(streamed, offline, rtol=0, atol=1e-5)


def test_streams_advance_together_in_a_batch():
    in_shape, steps, kwargs = STREAMING["deepspeech2_small_streaming"]
    model = create_model("deepspeech2_small_streaming", num_classes=5, in_shape=in_shape, **kwargs).eval()
    x = torch.randn(3, steps, *in_shape)
    with torch.no_grad():
        offline, _ = model(x, torch.full((3,), steps))
        state = model.initial_state(3)
        parts = [model.stream(x[:, i:i + 4], state) for i in range(0, steps, 4)]
        streamed = torch.cat([*parts, model.stream(x[:, :0], state, final=True)], 1)[:, model.stream_delay:]
    torch.testing.assert_close(streamed, offline, rtol=0, atol=1e-5)


def test_state_has_a_fixed_size_for_chunks_of_whole_strides():
    """An exported step function carries the state as fixed-shape tensors: chunks that are multiples of the
    frontend's stride leave every buffer the size it started with."""
    in_shape, _, kwargs = STREAMING["deepspeech2_small_streaming"]
    model = create_model("deepspeech2_small_streaming", num_classes=5, in_shape=in_shape, **kwargs).eval()
    state = model.initial_state(1)
    shapes = {part: {k: v.shape for k, v in s.items()} for part, s in state.items()}
    with torch.no_grad():
        for _ in range(3):
            model.stream(torch.randn(1, 2 * model.frontend.stride, *in_shape), state)
            assert {part: {k: v.shape for k, v in s.items()} for part, s in state.items()} == shapes


@pytest.mark.parametrize("kernel, stride", [(1, 1), (3, 1), (4, 2), (5, 3), (4, 4)])
def test_causal_conv_stream_equals_the_padded_conv(kernel, stride):
    conv = torch.nn.Conv1d(2, 3, kernel, stride=stride)
    x = torch.randn(1, 2, 17)
    stream = CausalConvStream(conv, kernel, stride, time_dim=2)
    buffer, outputs = stream.initial((2, 0), 1), []
    with torch.no_grad():
        offline = conv(causal_pad(x, kernel, time_dim=2))
        for chunk in x.split([1, 4, 2, 3, 7], dim=2):
            y, buffer = stream(chunk, buffer)
            outputs += [] if y is None else [y]
    torch.testing.assert_close(torch.cat(outputs, dim=2), offline, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="kernel >= stride"):
        CausalConvStream(conv, 2, 4, time_dim=2)


def test_lookahead_is_the_weighted_sum_of_future_frames():
    look = Lookahead(2, frames=2)
    with torch.no_grad():
        look.conv.weight.copy_(torch.tensor([[[1.0, 10.0, 100.0]], [[0.0, 0.0, 1.0]]]))
    x = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]])
    y = look(x, torch.tensor([3]))                       # frame 3 is padding: reads as zero
    # feature 0 at t = x[t] + 10 x[t+1] + 100 x[t+2]; feature 1 at t = x[t+2]
    assert y[0, :, 0].tolist() == [321.0, 32.0, 3.0, 0.0]
    assert y[0, :, 1].tolist() == [3.0, 0.0, 0.0, 0.0]


def test_bidirectional_models_refuse_to_stream():
    model = create_model("deepspeech2_small", num_classes=5, in_shape=(40,), conv_channels=2)
    assert not model.streamable
    with pytest.raises(NotStreamableError, match="cannot stream"):
        model.initial_state(1)
    transformer = create_model("deepspeech2_small_streaming", num_classes=5, in_shape=(40,), conv_channels=2,
                               lookahead=0, encoder={"type": "transformer", "hidden_size": 8})
    assert not transformer.streamable


def test_flush_gives_the_frames_waiting_for_the_lookahead():
    in_shape, steps, kwargs = STREAMING["deepspeech2_small_streaming"]
    x = torch.randn(1, steps, *in_shape)
    for lookahead in (0, 3):
        model = create_model("deepspeech2_small_streaming", num_classes=5, in_shape=in_shape,
                             **{**kwargs, "lookahead": lookahead}).eval()
        with torch.no_grad():
            offline, _ = model(x, torch.tensor([steps]))
            state = model.initial_state(1)
            streamed = torch.cat([model.stream(x, state), model.flush(state)], dim=1)
        assert streamed.shape[1] == offline.shape[1] + lookahead
        torch.testing.assert_close(streamed[:, lookahead:], offline, rtol=0, atol=1e-5)

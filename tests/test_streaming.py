"""StreamingRecognizer (ctcrnn/streaming.py) and long input (ctcrnn/live.py).

Exactness: audio samples streamed in chunks of any size (one sample, sizes that do not divide the hop, the
whole clip) and video frame by frame give the offline pipeline's log-probs within 1e-5 and the offline
transcript, greedy and beam search. Bad chunks are refused with the problem named, without touching the
stream. Overlapping windows for bidirectional models own every output frame exactly once."""
import pytest
import torch

import ctcrnn
from ctcrnn.audio.datasets import AudioPipeline
from ctcrnn.audio.features import FeatureConfig
from ctcrnn.checkpoint import save_checkpoint
from ctcrnn.decoding import greedy_decode
from ctcrnn.decoding.factory import make_decoder
from ctcrnn.live import WindowedTranscriber
from ctcrnn.nn.streaming import NotStreamableError
from ctcrnn.streaming import StreamingRecognizer

LABELS = ["<blank>", "1", "2", "3", " "]
TOLERANCE = 1e-5   # float32 features and log-softmax over a few layers, the same operations split differently


def audio_setup(normalize="global", name="deepspeech2_small_streaming", **kwargs):
    """A tiny random model with the input spec of 8 kHz, 20-bin log-mel features; and its pipeline."""
    generator = torch.Generator().manual_seed(0)
    stats = {"mean": (torch.randn(20, generator=generator) - 5).tolist(),
             "std": (torch.rand(20, generator=generator) + 1).tolist()}
    pipeline = AudioPipeline(FeatureConfig(kind="fbank", sample_rate=8000, n_mels=20, normalize=normalize),
                             stats if normalize == "global" else None)
    torch.manual_seed(0)
    args = {"conv_channels": 3, "encoder": {"hidden_size": 12}, **kwargs}
    model = ctcrnn.create_model(name, num_classes=len(LABELS), in_shape=(20,), **args).eval()
    return model, pipeline


def offline(model, x):
    with torch.no_grad():
        log_probs, lengths = model(x[None], torch.tensor([x.shape[0]]))
    return log_probs[0, : int(lengths[0])]


def run_stream(recognizer, chunks):
    """Feed chunks then finish; returns (the log-probs the decoder received, the final text)."""
    received, accept = [], recognizer.decoder.accept
    recognizer.decoder.accept = lambda frames: (received.append(frames), accept(frames))[1]
    for chunk in chunks:
        recognizer.accept(chunk)
    text = recognizer.finish()
    return torch.cat(received), text


@pytest.mark.parametrize("size", [1, 37, 161, 2403])
def test_audio_stream_equals_offline_for_any_chunk_size(size):
    model, pipeline = audio_setup()
    wave = 0.3 * torch.randn(2403, generator=torch.Generator().manual_seed(1))
    reference = offline(model, pipeline(wave))
    recognizer = StreamingRecognizer(model, LABELS, pipeline.input_spec())
    log_probs, text = run_stream(recognizer, wave.split(size))
    assert log_probs.shape == reference.shape
    torch.testing.assert_close(log_probs, reference, rtol=0, atol=TOLERANCE)
    tokens = greedy_decode(reference[None], torch.tensor([reference.shape[0]]))[0]
    assert text == "".join(LABELS[t] for t in tokens)
    assert [s.label for s in recognizer.segments()] == [LABELS[t] for t in tokens]


def test_beam_search_continues_across_chunks():
    model, pipeline = audio_setup()
    wave = 0.3 * torch.randn(4000, generator=torch.Generator().manual_seed(2))
    reference = offline(model, pipeline(wave))
    decoder = make_decoder(LABELS, beam_size=4)
    expected = decoder(reference[None], torch.tensor([reference.shape[0]]))[0][0].tokens
    recognizer = StreamingRecognizer(model, LABELS, pipeline.input_spec(), decoder=make_decoder(LABELS, beam_size=4))
    _, text = run_stream(recognizer, wave.split(333))
    assert text == "".join(LABELS[t] for t in expected)


def test_video_frame_by_frame_equals_offline():
    torch.manual_seed(0)
    model = ctcrnn.create_model("frame_cnn_rnn_streaming", num_classes=len(LABELS), in_shape=(3, 16, 16),
                                widths=(4, 8), feature_dim=12, encoder={"hidden_size": 12}).eval()
    spec = {"modality": "video", "step_shape": [3, 16, 16], "fps": 25.0}
    frames = torch.rand(37, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    reference = offline(model, frames)
    for size in (1, 3, 37):
        log_probs, _ = run_stream(StreamingRecognizer(model, LABELS, spec), frames.split(size))
        torch.testing.assert_close(log_probs, reference, rtol=0, atol=TOLERANCE)


def test_checkpoint_round_trip_and_latency(tmp_path):
    model, pipeline = audio_setup()
    path = tmp_path / "stream.pt"
    save_checkpoint({"arch": model.arch, "model": model.state_dict(), "labels": LABELS, "epoch": 0,
                     "input_spec": pipeline.input_spec(), "config": {}}, path)
    recognizer = StreamingRecognizer.from_checkpoint(path, beam_size=3)
    wave = 0.3 * torch.randn(1600, generator=torch.Generator().manual_seed(4))
    reference = offline(model, pipeline(wave))
    log_probs, _ = run_stream(recognizer, wave.split(100))
    torch.testing.assert_close(log_probs, reference, rtol=0, atol=TOLERANCE)
    latency = recognizer.latency()
    # 256-point FFT at 8 kHz: 128 samples = 16 ms before a frame's centre is complete; lookahead 4 output
    # frames x stride 2 x 10 ms hop = 80 ms.
    assert latency["preprocessing_s"] == pytest.approx(0.016)
    assert latency["model_lookahead_s"] == pytest.approx(0.08)
    recognizer.reset()
    assert recognizer.text() == "" and recognizer.decoder.frames == 0


def test_bad_chunks_are_refused_and_leave_the_stream_unchanged():
    model, pipeline = audio_setup()
    wave = 0.3 * torch.randn(2000, generator=torch.Generator().manual_seed(5))
    clean, clean_text = run_stream(StreamingRecognizer(model, LABELS, pipeline.input_spec()), wave.split(500))
    recognizer = StreamingRecognizer(model, LABELS, pipeline.input_spec())
    received, accept = [], recognizer.decoder.accept
    recognizer.decoder.accept = lambda frames: (received.append(frames), accept(frames))[1]
    bad = [(torch.zeros(10, dtype=torch.int16), TypeError, "dtype"),
           (torch.zeros(2, 10), ValueError, "mono"),
           (torch.tensor([0.0, float("nan")]), ValueError, "NaN"),
           (torch.tensor([float("inf")]), ValueError, "infinite"),
           (torch.full((800,), 1e30), ValueError, "too large"),      # finite samples whose features overflow
           ([0.0, 0.1], TypeError, "torch.Tensor")]
    for i, chunk in enumerate(wave.split(500)):
        chunk_bad, error, message = bad[i % len(bad)]
        with pytest.raises(error, match=message):
            recognizer.accept(chunk_bad)
        recognizer.accept(torch.zeros(0))             # an empty chunk is fine: nothing new
        recognizer.accept(chunk)
    assert recognizer.finish() == clean_text
    torch.testing.assert_close(torch.cat(received), clean, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="reset"):
        recognizer.accept(wave[:10])


def test_video_frames_of_the_wrong_size_are_named():
    model = ctcrnn.create_model("frame_cnn_rnn_streaming", num_classes=len(LABELS), in_shape=(3, 16, 16),
                                widths=(4,), feature_dim=8, encoder={"hidden_size": 8}).eval()
    recognizer = StreamingRecognizer(model, LABELS, {"modality": "video", "step_shape": [3, 16, 16], "fps": 25.0})
    with pytest.raises(ValueError, match=r"\(N, 3, 16, 16\)"):
        recognizer.accept(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\(N, 3, 16, 16\)"):
        recognizer.accept(torch.rand(2, 3, 32, 32))


def test_models_and_inputs_that_cannot_stream_are_named():
    bidirectional = ctcrnn.create_model("deepspeech2_small", num_classes=5, in_shape=(20,), conv_channels=2)
    _, pipeline = audio_setup()
    with pytest.raises(NotStreamableError, match="deepspeech2_small_streaming"):
        StreamingRecognizer(bidirectional, LABELS, pipeline.input_spec())
    model, utterance = audio_setup(normalize="utterance")
    with pytest.raises(NotStreamableError, match="normalize=global"):
        StreamingRecognizer(model, LABELS, utterance.input_spec())
    with pytest.raises(NotStreamableError, match="'image' modality"):
        StreamingRecognizer(model, LABELS, {"modality": "image", "step_shape": [1, 32]})


@pytest.mark.parametrize("samples", [12345, 12000, 4000])   # 12000, 4000: whole numbers of 0.5 s windows
@pytest.mark.parametrize("window_s, context_s", [(0.3, 0.3), (0.25, 0.35), (0.5, 0.0), (0.2, 0.05)])
def test_windows_own_every_frame_once_and_match_offline_with_enough_context(window_s, context_s, samples):
    """A bidirectional-style model with a finite receptive field (conv frontend, TCN encoder: a few frames):
    with context past it the windowed log-probs equal the offline ones exactly; without context the frame
    count is still exact (no frame lost or duplicated at a seam)."""
    model, pipeline = audio_setup(normalize="none", name="deepspeech2_small",
                                  encoder={"type": "tcn", "hidden_size": 6, "num_layers": 2})
    wave = 0.3 * torch.randn(samples, generator=torch.Generator().manual_seed(6))
    reference = offline(model, pipeline(wave))
    spec = pipeline.input_spec()
    windows = WindowedTranscriber(model, spec, window_s=window_s, context_s=context_s)
    frames = torch.cat(list(windows.owned_frames(wave.split(1000))))
    assert frames.shape == reference.shape
    # The receptive field: 128 samples of STFT window, then +-5 frames of the first conv (10 ms each) and +-5 of
    # the second (20 ms each), then +-3 TCN frames (20 ms each): 16 + 50 + 100 + 60 = 226 ms.
    if context_s >= 0.3:
        torch.testing.assert_close(frames, reference, rtol=0, atol=TOLERANCE)
        tokens = greedy_decode(reference[None], torch.tensor([reference.shape[0]]))[0]
        assert windows.transcribe(wave.split(777)).tokens == tokens

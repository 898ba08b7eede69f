"""Audio frontends and zoo entries: exact output lengths, no padding leak, published sizes, the cell shortcut."""
import pytest
import torch

from ctcrnn import create_model
from ctcrnn.audio.frontends import CRDNNFrontend, DeepSpeech2Conv
from ctcrnn.nn.encoder import EncoderConfig

FRONTENDS = {
    "ds2_paper_kernels": lambda: DeepSpeech2Conv(32, channels=2),
    "ds2_stride4": lambda: DeepSpeech2Conv(24, channels=2, freq_kernels=(5, 3, 3), freq_strides=(2, 1, 2),
                                           time_kernels=(7, 3, 5), time_strides=(2, 2, 1)),
    "ds2_stride3": lambda: DeepSpeech2Conv(20, channels=2, freq_kernels=(5,), freq_strides=(2,),
                                           time_kernels=(3,), time_strides=(3,)),
    "crdnn_pool2": lambda: CRDNNFrontend(16, channels=(2, 3)),
    "crdnn_pool3": lambda: CRDNNFrontend(12, channels=(2,), kernel_size=5, time_pooling=3),
    "crdnn_nopool": lambda: CRDNNFrontend(8, channels=(2, 2), time_pooling=1),
}


@pytest.mark.parametrize("name", FRONTENDS)
def test_output_lengths_match_real_shapes(name):
    frontend = FRONTENDS[name]().eval()
    with torch.no_grad():
        for n in range(frontend.stride, 30):
            x = torch.randn(1, n, frontend.in_features)
            out = frontend(x, torch.tensor([n]))
            assert out.shape == (1, int(frontend.output_lengths(torch.tensor([n]))), frontend.out_dim), n


@pytest.mark.parametrize("name", FRONTENDS)
def test_no_padding_leak_in_a_batch_of_many_lengths(name):
    frontend = FRONTENDS[name]().double().eval()
    lengths = torch.arange(23, frontend.stride - 1, -1)   # 23 .. stride, the shortest usable input
    x = torch.randn(len(lengths), 23, frontend.in_features, dtype=torch.float64)
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 7.0  # garbage padding must not matter
    with torch.no_grad():
        out = frontend(x, lengths)
        out_lengths = frontend.output_lengths(lengths)
        assert out.shape == (len(lengths), int(out_lengths.max()), frontend.out_dim)
        for i, n in enumerate(lengths.tolist()):
            m = int(out_lengths[i])
            alone = frontend(x[i : i + 1, :n], lengths[i : i + 1])
            assert alone.shape[1] == m
            torch.testing.assert_close(out[i, :m], alone[0], rtol=0, atol=1e-12)
            assert not out[i, m:].any(), "frames past a sample's output length are zero"


def test_deepspeech2_conv_on_161_stft_bins_gives_1312_features():
    frontend = DeepSpeech2Conv(161).eval()
    assert frontend.freq_out == 41 and frontend.out_dim == 32 * 41 == 1312 and frontend.stride == 2
    # deepspeech.pytorch's (B, 1, F, T) layout, so its conv weights have the same shapes.
    assert frontend.layers[0][0].weight.shape == (32, 1, 41, 11) and frontend.layers[1][0].weight.shape == (32, 32, 21, 11)
    with torch.no_grad():
        out = frontend(torch.randn(2, 100, 161), torch.tensor([100, 61]))
    assert out.shape == (2, 50, 1312)
    assert frontend.output_lengths(torch.tensor([100, 61, 1])).tolist() == [50, 31, 1]


def test_crdnn_frontend_on_40_fbank_bins_gives_2560_features():
    frontend = CRDNNFrontend(40)
    assert frontend.out_dim == 256 * 10 and frontend.stride == 2
    # A batch shorter than one pooling window gives length 0 (skipped as infeasible), not a crash.
    frontend.eval()
    out = frontend(torch.randn(2, 1, 40), torch.tensor([1, 1]))
    assert out.shape == (2, 1, 2560) and frontend.output_lengths(torch.tensor([1, 1])).tolist() == [0, 0]
    assert torch.count_nonzero(out) == 0


def test_bad_frontend_arguments():
    with pytest.raises(ValueError, match="odd"):
        DeepSpeech2Conv(161, time_kernels=(10, 11))
    with pytest.raises(ValueError, match="one freq_kernel"):
        DeepSpeech2Conv(161, freq_kernels=(41,))
    assert DeepSpeech2Conv(8, channels=2, freq_strides=(8, 8)).out_dim == 2  # half-kernel padding keeps a row
    with pytest.raises(ValueError, match="no frequency rows"):
        CRDNNFrontend(3, channels=(2, 2))
    with pytest.raises(ValueError, match=r"in_shape=\(F,\)"):
        create_model("crdnn", num_classes=5, in_shape=(3, 40))


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def lstm(inputs: int, hidden: int) -> int:
    """A bidirectional torch LSTM layer: 4 gates, two bias vectors, two directions."""
    return 2 * 4 * (inputs * hidden + hidden * hidden + 2 * hidden)


def gru(inputs: int, hidden: int) -> int:
    return 2 * 3 * (inputs * hidden + hidden * hidden + 2 * hidden)


def test_deepspeech2_parameter_count():
    # deepspeech.pytorch's DeepSpeech2 (29 characters) has 86.6 M parameters: it sums the two directions,
    # so layers 2-5 read 1024 features; ours concatenates them (2048), which makes 120.2 M.
    conv = (32 * 41 * 11 + 32) + (32 * 32 * 21 * 11 + 32) + 2 * (2 * 32)
    rnn = lstm(1312, 1024) + 4 * lstm(2048, 1024)
    head = 2048 * 29 + 29
    model = create_model("deepspeech2", num_classes=29)
    assert count(model) == conv + rnn + head == 120_192_317
    summed_directions = conv + lstm(1312, 1024) + 4 * (lstm(1024, 1024) + 2 * 1024) + 2 * 1024 + 1024 * 29
    assert summed_directions == 86_618_400  # the deepspeech.pytorch figure, for the docstring's claim
    assert model.encoder.config == EncoderConfig(cell="lstm", hidden_size=1024, num_layers=5)


def test_crdnn_parameter_count():
    # SpeechBrain's TIMIT CRDNN with 40 outputs; with GRUs (not LiGRUs) and LayerNorm DNN layers: 25.5 M.
    layer_norms = 4 * 2 * (128 * 40)          # (channels x freq) per frame: 128 x 40 then 256 x 20, twice each
    cnn = (1 * 128 * 9 + 128) + (128 * 128 * 9 + 128) + (128 * 256 * 9 + 256) + (256 * 256 * 9 + 256) + layer_norms
    rnn = gru(2560, 512) + 3 * gru(1024, 512)
    dnn = (1024 * 512 + 512 + 2 * 512) + (512 * 512 + 512 + 2 * 512)
    model = create_model("crdnn", num_classes=40)
    assert count(model) == cnn + rnn + dnn + 512 * 40 + 40 == 25_502_632
    assert model.encoder.config == EncoderConfig(cell="gru", hidden_size=512, num_layers=4, dropout=0.15)


def test_deepspeech2_small_is_cpu_sized():
    assert 1_000_000 < count(create_model("deepspeech2_small", num_classes=29)) < 3_000_000
    assert 1_000_000 < count(create_model("deepspeech2_small", num_classes=29, in_shape=(40,))) < 3_000_000


@pytest.mark.parametrize("name", ["deepspeech2", "deepspeech2_small", "crdnn"])
def test_cell_shortcut(name):
    small = {"deepspeech2": {"conv_channels": 2}, "deepspeech2_small": {"conv_channels": 2},
             "crdnn": {"channels": (2,), "dnn_sizes": ()}}[name]
    args = dict(num_classes=5, in_shape=(32,), encoder={"hidden_size": 4, "num_layers": 1}, **small)
    default_cell = create_model(name, **args).encoder.config.cell
    other = {"gru": "lstm", "lstm": "gru"}[default_cell]
    model = create_model(name, cell=other, **args)
    assert model.encoder.config.cell == other
    assert isinstance(model.encoder.layers[0][0], getattr(torch.nn, other.upper()))
    rebuilt = create_model(model.arch["name"], **model.arch["kwargs"])  # carries cell= and encoder.cell: agreed
    assert rebuilt.encoder.config == model.encoder.config
    same = create_model(name, cell=other, **{**args, "encoder": {**args["encoder"], "cell": other}})
    assert same.encoder.config.cell == other
    with pytest.raises(ValueError, match=f"cell='{other}' conflicts with encoder.cell='{default_cell}'"):
        create_model(name, cell=other, **{**args, "encoder": {**args["encoder"], "cell": default_cell}})
    with pytest.raises(ValueError, match="conflicts"):
        create_model(name, cell=other, **{**args, "encoder": EncoderConfig(cell=default_cell, hidden_size=4)})
    with pytest.raises(ValueError, match="'gru' or 'lstm'"):
        create_model(name, cell="ligru", **args)

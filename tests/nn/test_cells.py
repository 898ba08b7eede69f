"""ctcrnn.nn.cells against torch's own GRU/LSTM modules as the oracle, weights copied via state_dict."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ctcrnn.nn import cells

I, H, B, T = 5, 7, 4, 9
LENGTHS = [6, 9, 1, 4]        # unsorted on purpose: exercises sorted_indices / unsorted_indices
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def pair(kind: str, *args, dtype=torch.float64, **kwargs):
    """(ours, torch's) of the same class name, with torch's weights loaded into ours."""
    theirs = getattr(nn, kind)(*args, **kwargs).to(dtype)
    ours = getattr(cells, kind)(*args, **kwargs).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def initial_state(kind: str, shape, dtype=torch.float64):
    h = torch.randn(shape, dtype=dtype)
    return h if kind in ("GRU", "GRUCell") else (h, torch.randn(shape, dtype=dtype))


def assert_same(actual, expected, atol):
    if isinstance(expected, PackedSequence):
        assert isinstance(actual, PackedSequence)
        for a, e in zip(actual, expected):
            assert (a is None) == (e is None)
            if e is not None:
                torch.testing.assert_close(a, e, rtol=0, atol=atol)
    elif isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_same(a, e, atol)
    else:
        torch.testing.assert_close(actual, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("kind", ["GRUCell", "LSTMCell"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
def test_cell_matches_torch(kind, bias, batched, with_hx):
    ours, theirs = pair(kind, I, H, bias=bias)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
           [(k, v.shape) for k, v in theirs.state_dict().items()]
    x = torch.randn((B, I) if batched else (I,), dtype=torch.float64)
    hx = initial_state(kind, (B, H) if batched else (H,)) if with_hx else None
    assert_same(ours(x, hx), theirs(x, hx), atol=1e-12)


@pytest.mark.parametrize("kind, args", [("GRUCell", (I, H)), ("LSTMCell", (I, H)),
                                        ("GRU", (I, H, 2, True, False, 0.0, True)), ("LSTM", (I, H, 3))])
def test_same_init_as_torch(kind, args):
    torch.manual_seed(3)
    theirs = getattr(nn, kind)(*args)
    torch.manual_seed(3)
    ours = getattr(cells, kind)(*args)
    assert_same(dict(ours.state_dict()), dict(theirs.state_dict()), atol=0)
    bound = 1 / H ** 0.5
    assert all(p.abs().max() <= bound for p in ours.parameters())


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("dtype, with_hx", [(torch.float64, False), (torch.float64, True), (torch.float32, True)])
def test_padded_matches_torch(kind, num_layers, bidirectional, batch_first, dtype, with_hx):
    ours, theirs = pair(kind, I, H, num_layers, bidirectional=bidirectional, batch_first=batch_first, dtype=dtype)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=dtype)
    hx = initial_state(kind, (num_layers * (1 + bidirectional), B, H), dtype) if with_hx else None
    assert_same(ours(x, hx), theirs(x, hx), atol=TOL[dtype])


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_hx", [False, True])
def test_packed_matches_torch(kind, num_layers, bidirectional, batch_first, dtype, with_hx):
    ours, theirs = pair(kind, I, H, num_layers, bidirectional=bidirectional, batch_first=batch_first, dtype=dtype)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=dtype)
    packed = pack_padded_sequence(x, torch.tensor(LENGTHS), batch_first=batch_first, enforce_sorted=False)
    assert packed.sorted_indices is not None and packed.sorted_indices.tolist() != list(range(B))
    hx = initial_state(kind, (num_layers * (1 + bidirectional), B, H), dtype) if with_hx else None
    assert_same(ours(packed, hx), theirs(packed, hx), atol=TOL[dtype])


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_packed_sample_equals_sample_alone(kind):
    """A sample's outputs and final state do not depend on the longer samples packed with it."""
    ours = getattr(cells, kind)(I, H, 2, bidirectional=True).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    out, state = ours(pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False))
    short = LENGTHS.index(4)
    alone, alone_state = ours(x[:4, short])
    torch.testing.assert_close(pad_packed_sequence(out)[0][:4, short], alone, rtol=0, atol=1e-12)
    h_n, alone_h_n = (state, alone_state) if kind == "GRU" else (state[0], alone_state[0])
    torch.testing.assert_close(h_n[:, short], alone_h_n, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
def test_unbatched_matches_torch(kind, batch_first, with_hx):
    ours, theirs = pair(kind, I, H, 2, bidirectional=True, batch_first=batch_first)
    x = torch.randn(T, I, dtype=torch.float64)
    hx = initial_state(kind, (4, H)) if with_hx else None
    assert_same(ours(x, hx), theirs(x, hx), atol=1e-10)


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_loads_both_ways(kind, num_layers, bidirectional, bias):
    theirs = getattr(nn, kind)(I, H, num_layers, bias, bidirectional=bidirectional)
    ours = getattr(cells, kind)(I, H, num_layers, bias, bidirectional=bidirectional)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
           [(k, v.shape) for k, v in theirs.state_dict().items()]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert_same(dict(ours.state_dict()), dict(theirs.state_dict()), atol=0)
    fresh = getattr(nn, kind)(I, H, num_layers, bias, bidirectional=bidirectional)
    fresh.load_state_dict(cells_state := ours.state_dict(), strict=True)
    assert_same(dict(fresh.state_dict()), dict(cells_state), atol=0)
    x = torch.randn(T, B, I, dtype=torch.float64)
    assert_same(ours.double()(x), fresh.double()(x), atol=1e-10)


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_gradients_match_torch(kind):
    ours, theirs = pair(kind, I, H, 2, bidirectional=True, batch_first=True)
    x = torch.randn(B, T, I, dtype=torch.float64)
    hx = initial_state(kind, (4, B, H))
    hx = hx if isinstance(hx, tuple) else (hx,)
    grads = []
    for model in (ours, theirs):
        xi, hi = x.clone().requires_grad_(), tuple(h.clone().requires_grad_() for h in hx)
        packed = pack_padded_sequence(xi, torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False)
        out, state = model(packed, hi if kind == "LSTM" else hi[0])
        state = state if isinstance(state, tuple) else (state,)
        loss = (out.data.sin() * torch.arange(out.data.numel(), dtype=x.dtype).view_as(out.data).cos()).sum()
        (loss + sum((s ** 2).sum() for s in state)).backward()
        grads.append([xi.grad, *(h.grad for h in hi), *(p.grad for p in model.parameters())])
    assert len(grads[0]) == len(grads[1])
    for a, e in zip(*grads):
        assert a is not None and a.abs().sum() > 0
        torch.testing.assert_close(a, e, rtol=0, atol=1e-8)


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_dropout(kind):
    ours, theirs = pair(kind, I, H, 3, dropout=0.5, bidirectional=True)
    x = torch.randn(T, B, I, dtype=torch.float64)
    ours.eval(), theirs.eval()
    evaluated = ours(x)
    assert_same(evaluated, theirs(x), atol=1e-10)
    ours.train()
    assert not torch.allclose(ours(x)[0], evaluated[0])
    ours.dropout = 0.0
    assert_same(ours(x), evaluated, atol=0)


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
def test_no_dropout_after_last_layer(kind):
    with pytest.warns(UserWarning, match="dropout"):
        ours = getattr(cells, kind)(I, H, 1, dropout=0.5).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    assert_same(ours.train()(x), ours.eval()(x), atol=0)


def test_lstm_proj_size_not_implemented():
    with pytest.raises(NotImplementedError, match="proj_size"):
        cells.LSTM(I, H, proj_size=3)
    cells.LSTM(I, H, proj_size=0)


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
@pytest.mark.parametrize("case", ["input_size", "hx_shape", "hx_dim", "input_dim"])
def test_bad_arguments_raise_like_torch(kind, case):
    ours, theirs = pair(kind, I, H, 2)
    x, hx = torch.randn(T, B, I, dtype=torch.float64), initial_state(kind, (2, B, H))
    x, hx = {"input_size": (x[..., :3], None), "hx_shape": (x, initial_state(kind, (2, B + 1, H))),
             "hx_dim": (x, initial_state(kind, (2, H))), "input_dim": (x[None], None)}[case]
    with pytest.raises(Exception) as expected:
        theirs(x, hx)
    with pytest.raises(expected.type):
        ours(x, hx)

"""Streaming decoding (ctcrnn.decoding.streaming) against the offline decoders: for any cut of a stream into
chunks (1, 2, 3, 7 frames, random sizes with empty chunks, all at once) finish() gives the offline decoder's
result on the whole stream, with and without fusion, pruning and blank skipping; best() after each chunk is the
offline search of the frames so far ranked without end-of-stream terms; greedy decoding equals greedy_decode.
Then emission frames on hand-made peaky inputs, what the decoder keeps over 5000 frames (nothing grows with
frames), the blank-run carry of compact_chunk, and input errors that leave the stream as it was.

Score tolerance: the stream runs the offline search's own float operations on the same frames; the only
re-association is the blank log-prob sum of a skipped run cut by a chunk boundary (partial sums instead of one
scatter_add). Each changes a score by a few ulps of the running sum, and log-sum-exps carry such a change at
most unchanged (their derivatives lie in [0, 1] and add to 1), so over T <= 60 float64 frames the scores differ
by less than T · 2.2e-16 · |score| ≈ 1.3e-14 · |score|. rel=1e-12 leaves a 75x margin; a real difference in
the search (a lost alignment, a frame counted twice) moves a score by far more."""
import math

import numpy as np
import pytest
import torch

from ctcrnn.decoding import StreamingDecoder
from ctcrnn.decoding.decoders import BeamSearchDecoder, greedy_decode
from ctcrnn.decoding.frames import compact_chunk, compact_frames
from ctcrnn.decoding.fusion import FusionState
from ctcrnn.decoding.streaming import StreamHypothesis

from tests.fixtures.decoding import BAR, LABELS, LEXICON, TOKEN_LM, WORD_LM, random_log_probs

REL = 1e-12  # see the module docstring

SETTINGS = {
    "exact": dict(beam_size=4),
    "wide beam": dict(beam_size=12),
    "topk + threshold": dict(beam_size=4, token_prune_topk=2, token_prune_threshold=-4.0),
    "skip blanks": dict(beam_size=4, skip_blank_threshold=0.6),
    "word LM + bonus": dict(beam_size=4, lm=WORD_LM, lm_weight=0.7, word_bonus=0.5),
    "word LM + lexicon + skip": dict(beam_size=3, lm=WORD_LM, lm_weight=1.2, word_bonus=-0.2, lexicon=LEXICON,
                                     skip_blank_threshold=0.5),
    "lexicon + hotwords + topk": dict(beam_size=4, lexicon=LEXICON, hotwords={"cat", "oat"}, hotword_bonus=1.5,
                                      token_prune_topk=3),
    "word LM + hotwords + unk": dict(beam_size=4, lm=WORD_LM, lm_weight=0.5, hotwords={"tot"}, hotword_bonus=2.0,
                                     unk_score=-2.0),
    "token LM + skip + threshold": dict(beam_size=5, lm=TOKEN_LM, lm_unit="token", lm_weight=0.8, word_bonus=0.3,
                                        skip_blank_threshold=0.7, token_prune_threshold=-5.0),
}
CHUNKINGS = ["1", "2", "3", "7", "random", "random with empties", "whole"]


def make_decoder(setting: str) -> BeamSearchDecoder:
    return BeamSearchDecoder(labels=LABELS, word_delimiter=BAR, timestamps=False, **SETTINGS[setting])


def chunk_sizes(chunking: str, steps: int, seed: int) -> list[int]:
    """Chunk sizes adding up to ``steps``: fixed, random in [1, 9], random in [0, 6] (a third empty), or one."""
    if chunking == "whole":
        return [steps]
    g = torch.Generator().manual_seed(seed)
    sizes, left = [], steps
    while left:
        if chunking == "random":
            size = int(torch.randint(1, 10, (1,), generator=g))
        elif chunking == "random with empties":
            size = int(torch.randint(0, 7, (1,), generator=g)) * int(torch.rand(1, generator=g) > 0.33)
        else:
            size = int(chunking)
        sizes.append(min(size, left))
        left -= sizes[-1]
    return [0] + sizes + [0]  # empty chunks at both ends too


def stream(decoder: StreamingDecoder, log_probs: torch.Tensor, sizes: list[int]) -> list[StreamHypothesis]:
    """Feed (T, V) log_probs in chunks of ``sizes``; best() after each chunk."""
    partial, start = [], 0
    for size in sizes:
        decoder.accept(log_probs[start:start + size])
        start += size
        assert decoder.frames == start
        partial.append(decoder.best())
    assert start == log_probs.shape[0]
    return partial


def assert_same_scores(got, expected) -> None:
    """Equal within REL of the score (see the module docstring); -inf equal to -inf."""
    for a, b in zip(got, expected):
        assert a == pytest.approx(b, rel=REL, abs=REL) if math.isfinite(b) else a == b


# ---------------------------------------------------------------- exactness of finish()
@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("setting", SETTINGS)
def test_any_chunking_finishes_with_the_offline_result(setting, chunking):
    decoder = make_decoder(setting)
    streaming = StreamingDecoder(decoder)
    for seed, (steps, peaky) in enumerate([(60, True), (30, False)]):
        log_probs = random_log_probs(steps, seed=100 + seed, peaky=peaky)[0]
        offline = decoder(log_probs[None], torch.tensor([steps]))[0][0]
        streaming.reset()
        stream(streaming, log_probs, chunk_sizes(chunking, steps, seed))
        final = streaming.finish()
        assert final.final and final.tokens == offline.tokens, (setting, chunking, seed)
        assert_same_scores([final.am_score, final.lm_score, final.score],
                           [offline.am_score, offline.lm_score, offline.score])
        # The same search path whatever the cut: the same emission frames, in order, within the stream.
        whole = StreamingDecoder(decoder)
        whole.accept(log_probs)
        assert final.starts == whole.finish().starts
        assert final.starts == sorted(final.starts) and all(0 <= s < steps for s in final.starts)
        assert len(final.starts) == len(final.tokens) and final.ends is None


def test_a_stream_without_frames_finishes_like_an_empty_input():
    """No frames: the empty transcript, with the LM's end-of-sentence term as offline."""
    decoder = make_decoder("word LM + bonus")
    offline = decoder(torch.zeros(1, 0, len(LABELS)), torch.tensor([0]))[0][0]
    for chunks in ([], [torch.zeros(0, len(LABELS))]):
        streaming = StreamingDecoder(decoder)
        for chunk in chunks:
            streaming.accept(chunk)
        final = streaming.finish()
        assert (final.tokens, final.starts) == ([], [])
        assert final.lm_score == pytest.approx(offline.lm_score) and final.lm_score < 0
        assert final.am_score == offline.am_score == 0.0


# ---------------------------------------------------------------- partial results
@pytest.mark.parametrize("setting", ["exact", "topk + threshold", "skip blanks", "word LM + bonus",
                                     "word LM + hotwords + unk", "token LM + skip + threshold"])
def test_best_after_each_chunk_is_the_offline_search_of_the_frames_so_far(setting, monkeypatch):
    """best() ranks the beams as the search does: by acoustic + fusion score without end-of-stream terms. So
    it is the offline decoder on the frames so far with those terms zeroed (they are 0 without fusion)."""
    decoder = make_decoder(setting)
    log_probs = random_log_probs(40, seed=7, peaky=True)[0]
    sizes = chunk_sizes("random with empties", 40, seed=3)
    partial = stream(StreamingDecoder(decoder), log_probs, sizes)
    monkeypatch.setattr(FusionState, "final_scores", lambda self: torch.zeros(self.shape))
    ends = np.cumsum(sizes).tolist()
    for end, got in zip(ends, partial):
        expected = decoder(log_probs[None, :end], torch.tensor([end]))[0][0]
        assert not got.final and got.tokens == expected.tokens, (setting, end)
        assert_same_scores([got.am_score, got.lm_score, got.score],
                           [expected.am_score, expected.lm_score, expected.score])
    assert partial[-1].tokens  # (the stream is not all blank)


def test_best_can_revise_an_earlier_partial_result():
    """Frame 0 favours "a" (0.5 against "b" 0.4); frame 1's "b" (0.9) makes "b" the best reading of both
    frames: P("b") = .4·.9 + .1·.9 + .4·.05 = .47 against P("ab") = .45 and P("a") = .05. The partial result
    changes, as documented."""
    probs = torch.tensor([[0.10, 0.50, 0.40], [0.05, 0.05, 0.90]], dtype=torch.float64)
    decoder = BeamSearchDecoder(beam_size=4, timestamps=False)
    streaming = StreamingDecoder(decoder)
    streaming.accept(probs[:1].log())
    assert streaming.best().tokens == [1] and streaming.best().score == pytest.approx(math.log(0.5))
    streaming.accept(probs[1:].log())
    assert streaming.best().tokens == [2] and streaming.best().score == pytest.approx(math.log(0.47))
    assert streaming.finish().tokens == decoder(probs.log()[None], torch.tensor([2]))[0][0].tokens == [2]


# ---------------------------------------------------------------- greedy
@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("beam_one", [False, True])
def test_greedy_streams_equal_greedy_decode(chunking, beam_one):
    """No decoder, or beam 1 without fusion (the offline decoder's best-path case): the tokens of
    greedy_decode, each with the [start, end) frames of its run of best labels, and the best path's log-prob."""
    streaming = StreamingDecoder(BeamSearchDecoder(beam_size=1) if beam_one else None)
    for seed in range(3):
        log_probs = random_log_probs(50, seed=seed, peaky=seed != 2)[0]
        streaming.reset()
        sizes = chunk_sizes(chunking, 50, seed)
        partial = stream(streaming, log_probs, sizes)
        for end, got in zip(np.cumsum(sizes).tolist(), partial):
            assert got.tokens == greedy_decode(log_probs[None, :end], torch.tensor([end]))[0]
        final = streaming.finish()
        best = log_probs.argmax(-1).tolist()
        runs = [(label, start, start + len(run)) for label, start, run in runs_of(best) if label != 0]
        assert [(t, s, e) for t, s, e in zip(final.tokens, final.starts, final.ends)] == runs
        assert final.tokens == greedy_decode(log_probs[None], torch.tensor([50]))[0]
        # The best path is the best alignment of its own tokens: the offline decoder's forced-alignment spans.
        spans = BeamSearchDecoder(beam_size=1)(log_probs[None], torch.tensor([50]))[0][0].token_spans
        assert [(s.start, s.end) for s in spans] == list(zip(final.starts, final.ends))
        assert final.am_score == pytest.approx(float(log_probs.amax(-1).sum()), rel=REL)
        assert final.score == final.am_score and final.lm_score == 0.0


def runs_of(labels: list[int]) -> list[tuple[int, int, list[int]]]:
    """(label, first frame, frames) of each run of equal labels."""
    runs, start = [], 0
    for t in range(1, len(labels) + 1):
        if t == len(labels) or labels[t] != labels[start]:
            runs.append((labels[start], start, labels[start:t]))
            start = t
    return runs


def test_other_blank_index_for_greedy_streams():
    log_probs = (5.0 * torch.nn.functional.one_hot(torch.tensor([3, 1, 3, 1, 1, 0]), 4)).log_softmax(-1)
    streaming = StreamingDecoder(blank=3)
    for t in range(6):
        streaming.accept(log_probs[t:t + 1])
    final = streaming.finish()
    assert (final.tokens, final.starts, final.ends) == ([1, 1, 0], [1, 3, 5], [2, 5, 6])


# ---------------------------------------------------------------- emission frames
# labels: 0 blank, 1 "a", 2 "b", 3 "|"; frames  a a _ b | _ _ a a _  -> "ab|a"
PEAKY_LABELS = ["-", "a", "b", "|"]
ROWS = {"_": [0.97, 0.01, 0.01, 0.01], "a": [0.01, 0.97, 0.01, 0.01], "b": [0.01, 0.01, 0.97, 0.01],
        "|": [0.01, 0.01, 0.01, 0.97]}
PEAKY = torch.tensor([ROWS[c] for c in "aa_b|__aa_"], dtype=torch.float64).log()


@pytest.mark.parametrize("skip", [None, 0.5])
@pytest.mark.parametrize("sizes", [[10], [1] * 10, [6, 4], [3, 3, 0, 4], [5, 1, 1, 3]],
                         ids=["whole", "ones", "cut in a blank run", "3-3-0-4", "5-1-1-3"])
def test_emission_frames_on_a_peaky_input(skip, sizes):
    """Each token's start frame is where its spike begins, in stream frames, also when skipped blank runs
    are compacted and a run (frames 5-6) is cut between chunks; greedy also gives the run ends."""
    decoder = BeamSearchDecoder(8, labels=PEAKY_LABELS, word_delimiter=3, skip_blank_threshold=skip, timestamps=False)
    for streaming in (StreamingDecoder(decoder), StreamingDecoder(None)):
        stream(streaming, PEAKY, sizes)
        final = streaming.finish()
        assert (final.tokens, final.starts) == ([1, 2, 3, 1], [0, 3, 4, 7])
        assert final.times(0.04) == pytest.approx([0.0, 0.12, 0.16, 0.28])
        if streaming.greedy:
            assert final.ends == [2, 4, 5, 9]


def test_beam_search_emission_frames_mostly_agree_with_the_offline_timestamps():
    """The offline decoder dates tokens by forced alignment of the final transcript (the most probable
    alignment, which needs every frame); the stream dates each by the spike that brought its prefix most of
    its mass. On these seeded peaky streams they agree on 97.8 % of the tokens (dated by the frame each
    prefix entered the beam, 86 %: a low-ranked beam takes a token from a small probability long before its
    spike). They can differ by many frames where the beam lost the shorter prefix before the spike came
    (one token here, by 11 frames, with the word LM)."""
    same = total = 0
    for seed in range(20):
        log_probs = random_log_probs(60, seed=seed, peaky=True)[0]
        for setting in ("wide beam", "word LM + bonus"):
            decoder = make_decoder(setting)
            streaming = StreamingDecoder(decoder)
            streaming.accept(log_probs)  # (the dates do not depend on the cut: see the exactness test)
            final = streaming.finish()
            decoder.timestamps = True
            spans = decoder(log_probs[None], torch.tensor([60]))[0][0].token_spans
            assert len(spans) == len(final.starts)
            same += sum(s.start == start for s, start in zip(spans, final.starts))
            total += len(spans)
    assert same >= 0.97 * total


# ---------------------------------------------------------------- bounded memory
def retained(decoder: StreamingDecoder, shared: set[int]) -> tuple[list[int], list[int]]:
    """(lengths, chains): the length of every list, tuple, dict and set and every tensor dimension the decoder
    holds, and the length of every chain of emission links (a link's chain: it and the links before it),
    walking its attributes; objects in ``shared`` (the configuration it was given: decoder, fusion tables,
    LM) are not its state."""
    lengths, chains, seen, todo = [], [], set(shared), [vars(decoder)]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (int, float, str, bool, torch.dtype, torch.device)):
            continue
        seen.add(id(obj))
        if torch.is_tensor(obj):
            lengths.extend(obj.shape)
        elif hasattr(obj, "previous") and isinstance(obj, tuple):  # an emission link
            depth, link = 0, obj
            while link is not None:
                depth, link = depth + 1, link.previous
            chains.append(depth)
            todo.append(obj.previous)
        elif isinstance(obj, (list, tuple, set, dict)):
            lengths.append(len(obj))
            todo.extend(obj.values() if isinstance(obj, dict) else obj)
        elif hasattr(obj, "__dict__"):
            todo.append(vars(obj))
    return lengths, chains


def reachable(obj) -> set[int]:
    """ids of everything reachable from ``obj`` through attributes and containers."""
    seen, todo = set(), [obj]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple, set)):
            todo.extend(obj)
        elif isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif hasattr(obj, "__dict__") and not torch.is_tensor(obj):
            todo.append(vars(obj))
    return seen


@pytest.mark.parametrize("setting", ["word LM + hotwords + unk", "word LM + lexicon + skip", "greedy"])
def test_nothing_kept_grows_with_frames(setting):
    """A few words, then 5000 mostly blank frames (random tokens at e^-8 odds), in chunks of 1 to 9 frames
    with best() after each, as a live recogniser reads it: every length the decoder retains stays below 64,
    and its emission links number at most beam_size × the longest sequence. Then, after the same words,
    3000 frames where only the blank is possible: what it holds is the same after 1000 and 3000 of them.
    Both streams still finish with the offline result."""
    decoder = None if setting == "greedy" else make_decoder(setting)
    streaming = StreamingDecoder(decoder)
    words = random_log_probs(40, seed=5, peaky=True)[0]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5000, len(LABELS), generator=g, dtype=torch.float64)
    logits[:, 0] += 8
    only_blank = torch.full((3000, len(LABELS)), -math.inf, dtype=torch.float64)
    only_blank[:, 0] = 0.0
    for frames in (logits.log_softmax(-1), only_blank):
        streaming.reset()
        streaming.accept(words)
        shared = reachable(decoder)  # (after the first chunk: the fusion builds its tables on first use)
        start, after_1000 = 0, None
        for size in chunk_sizes("random", len(frames), seed=1):
            streaming.accept(frames[start:start + size])
            streaming.best()
            start += size
            if start >= 1000 and after_1000 is None:
                after_1000 = retained(streaming, shared)
        lengths, chains = retained(streaming, shared)
        assert streaming.frames == 40 + len(frames) and max(lengths) < 64, setting
        assert len(chains) <= (decoder.beam_size if decoder else 0) * max(chains, default=0)
        if frames is only_blank:
            assert (sorted(lengths), sorted(chains)) == tuple(sorted(x) for x in after_1000)
        whole = torch.cat([words, frames])
        expected = (decoder(whole[None], torch.tensor([len(whole)]))[0][0].tokens if decoder else
                    greedy_decode(whole[None], torch.tensor([len(whole)]))[0])
        assert streaming.finish().tokens == expected


@pytest.mark.parametrize("chunking", ["1", "3", "random with empties"])
def test_compact_chunk_cuts_the_compaction_of_the_whole_stream(chunking):
    """The chunks' frames, joined (the run held at the end flushed by the last), are compact_frames of the
    whole stream: each skipped run one blank-only frame, its blank log-prob the run's sum; starts map each
    frame to the stream frame it begins at."""
    log_probs = random_log_probs(45, seed=2, peaky=True)[0]
    expected, count = compact_frames(log_probs[None], torch.tensor([45]), 0, 0.6)
    expected = expected[0, :int(count)]
    sizes = chunk_sizes(chunking, 45, seed=4)
    got, starts, held, offset = [], [], None, 0
    for i, size in enumerate(sizes):
        frames, begin, held = compact_chunk(log_probs[offset:offset + size], held, 0, 0.6, last=i == len(sizes) - 1)
        got.append(frames)
        starts.extend(offset + s for s in begin.tolist() if s >= 0)
        offset += size
    assert held is None
    got = torch.cat(got)
    assert torch.equal(got.isinf(), expected.isinf())
    assert torch.allclose(got[~got.isinf()], expected[~expected.isinf()], rtol=REL, atol=0)
    skipped = log_probs[:, 0] > math.log(0.6)
    run_start = [t for t in range(45) if not skipped[t] or t == 0 or not skipped[t - 1]]
    assert len(starts) <= len(run_start) and set(starts) <= set(run_start)  # a held run's start is its first chunk's


# ---------------------------------------------------------------- errors
def test_wrong_input_is_a_clear_error_and_changes_nothing():
    decoder = make_decoder("word LM + bonus")
    log_probs = random_log_probs(20, seed=3, peaky=True)[0]
    streaming = StreamingDecoder(decoder)
    streaming.accept(log_probs[:8])
    before = streaming.best()
    nan, inf = log_probs[8:12].clone(), log_probs[8:12].clone()
    nan[2, 3], inf[1, 0] = math.nan, math.inf
    for bad, message in [(log_probs[None, 8:12], r"one stream's frames \(T, V\), got shape \(1, 4, 6\)"),
                         (log_probs[8], r"\(T, V\), got shape \(6,\)"),
                         (log_probs[8:12, :5], "V=5 labels per frame but the stream's first chunk had 6"),
                         (nan, r"frame 2 of this chunk \(frame 10 of the stream\) holds nan"),
                         (inf, r"frame 1 of this chunk \(frame 9 of the stream\) holds inf")]:
        with pytest.raises(ValueError, match=message):
            streaming.accept(bad)
        assert streaming.frames == 8 and streaming.best() == before
    with pytest.raises(TypeError, match="tensor"):
        streaming.accept(log_probs[8:].tolist())
    streaming.accept(log_probs[8:])  # the stream goes on as if nothing had happened
    offline = decoder(log_probs[None], torch.tensor([20]))[0][0]
    assert streaming.finish().tokens == offline.tokens


def test_labels_and_blank_must_fit_the_first_chunk():
    with pytest.raises(ValueError, match="V=4 labels per frame but the decoder's labels list has 6"):
        StreamingDecoder(make_decoder("word LM + bonus")).accept(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="blank id 5 is not a label"):
        StreamingDecoder(blank=5).accept(torch.zeros(3, 4))
    with pytest.raises(TypeError, match="BeamSearchDecoder"):
        StreamingDecoder(object())


def test_minus_infinity_is_a_probability_of_zero():
    """-inf log-probs are valid (impossible labels), as offline."""
    log_probs = random_log_probs(12, seed=4, peaky=False)[0]
    log_probs[::3, 2] = -math.inf
    decoder = make_decoder("exact")
    streaming = StreamingDecoder(decoder)
    stream(streaming, log_probs, [5, 0, 7])
    assert streaming.finish().tokens == decoder(log_probs[None], torch.tensor([12]))[0][0].tokens


def test_finish_ends_the_stream_until_reset():
    decoder = make_decoder("word LM + bonus")
    first, second = (random_log_probs(15, seed=s, peaky=True)[0] for s in (8, 9))
    streaming = StreamingDecoder(decoder)
    streaming.accept(first)
    final = streaming.finish()
    assert streaming.finish() is final and streaming.best() is final
    with pytest.raises(RuntimeError, match=r"finish\(\) ended this stream: call reset\(\)"):
        streaming.accept(second)
    streaming.reset()
    assert streaming.frames == 0 and streaming.best().tokens == []
    streaming.accept(second[:4])
    streaming.accept(second[4:])
    assert streaming.finish().tokens == decoder(second[None], torch.tensor([15]))[0][0].tokens

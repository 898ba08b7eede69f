"""CTC prefix beam search against oracles: a brute-force sum over all alignments on tiny inputs, a plain
Python prefix beam search (dicts, one prefix at a time) for pruned searches, greedy decoding at beam 1,
hand-made peaky inputs for repeats and timestamps, flashlight-text (a test dependency) and pyctcdecode if installed;
then regressions: score-bound pruning on a near tie, utterances whose prefixes all die, argument checks; and a
search session cut into chunks against the search of all frames at once."""
import importlib.util
import itertools
import math

import pytest
import torch

from ctcrnn.decoding import prefix_search as beam_search
from ctcrnn.decoding.decoders import BeamSearchDecoder, greedy_decode, prefix_beam_search
from ctcrnn.decoding.fusion import LMFusion
from ctcrnn.decoding.lm import build_ngram_lm
from ctcrnn.decoding.prefix_search import ctc_prefix_search


def log_probs_for(rows: list[list[float]]) -> torch.Tensor:
    """(1, T, V) float64 log-probs from per-frame probabilities (rows are renormalised)."""
    p = torch.tensor(rows, dtype=torch.float64)
    return (p / p.sum(-1, keepdim=True)).log().unsqueeze(0)


def random_log_probs(batch: int, steps: int, classes: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(batch, steps, classes, generator=g, dtype=torch.float64)).log_softmax(-1)


def peaky_log_probs(batch: int, steps: int, classes: int, seed: int) -> torch.Tensor:
    """CTC-like outputs: blank ≈ 0.9 on most frames, a confident token on about a third of them."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, steps, classes, generator=g)
    logits[..., 0] += math.log(classes) + 3
    spikes = torch.rand(batch, steps, generator=g) < 0.3
    tokens = torch.randint(1, classes, (batch, steps), generator=g)
    logits[spikes.nonzero(as_tuple=True) + (tokens[spikes],)] += math.log(classes) + 6
    return logits.log_softmax(-1)


def brute_force(log_probs: torch.Tensor) -> list[tuple[tuple[int, ...], float]]:
    """Every labelling of (T, V) log-probs with its log-probability (log-sum-exp over all V^T paths that
    collapse to it), most probable first."""
    steps, classes = log_probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(classes), repeat=steps):
        labels = tuple(label for label, _ in itertools.groupby(path) if label != 0)
        score = sum(log_probs[t, c].item() for t, c in enumerate(path))
        totals[labels] = _lse(totals.get(labels, -math.inf), score)
    return sorted(totals.items(), key=lambda item: -item[1])


def _lse(a: float, b: float) -> float:
    return float(torch.logaddexp(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)))


def _add(table: dict, prefix: tuple[int, ...], pb: float, pnb: float) -> None:
    old_b, old_nb = table.get(prefix, (-math.inf, -math.inf))
    table[prefix] = (_lse(old_b, pb), _lse(old_nb, pnb))


def reference_search(log_probs: torch.Tensor, beam: int, topk: int | None = None,
                     threshold: float | None = None) -> list[tuple[tuple[int, ...], float]]:
    """Textbook prefix beam search, one prefix and one token at a time. Pruning: a token outside the
    frame's top-k (or below the threshold) may not start a new prefix, but still adds its mass to a
    prefix that is already a beam (as ctcrnn does: that costs nothing and is exact)."""
    lp = log_probs.tolist()
    beams = {(): (0.0, -math.inf)}
    for frame in lp:
        order = sorted(range(1, len(frame)), key=lambda c: -frame[c])
        allowed = set(order[:topk] if topk else order)
        if threshold is not None:
            allowed = {c for c in allowed if frame[c] >= threshold}
        new: dict[tuple[int, ...], tuple[float, float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = _lse(pb, pnb)
            _add(new, prefix, total + frame[0], -math.inf)
            if prefix:
                _add(new, prefix, -math.inf, pnb + frame[prefix[-1]])
            for c in range(1, len(frame)):
                if c in allowed or prefix + (c,) in beams:
                    _add(new, prefix + (c,), -math.inf, (pb if prefix and prefix[-1] == c else total) + frame[c])
        # Prefixes of probability 0 are no beams (ctcrnn drops them too): kept, they would collect the
        # mass of pruned tokens through later merges.
        ranked = sorted(new.items(), key=lambda item: -_lse(*item[1]))[:beam]
        beams = {prefix: s for prefix, s in ranked if _lse(*s) > -math.inf}
    return sorted(((prefix, _lse(*s)) for prefix, s in beams.items()), key=lambda item: -item[1])


def decoded(log_probs, lengths, beam, **options):
    return [[(tuple(h.tokens), h.score) for h in nbest]
            for nbest in prefix_beam_search(log_probs, lengths, beam, **options)]


def assert_same(got, expected, tol=1e-9, count=None):
    """``got`` is the ranking ``expected``, or its top ``count``: same scores, and each labelling is one of
    those with its score (tied labellings may come in either order, also across the cut)."""
    assert len(got) == (len(expected) if count is None else count)
    assert [score for _, score in got] == pytest.approx([score for _, score in expected[:len(got)]], abs=tol)
    assert len({labels for labels, _ in got}) == len(got)
    for labels, score in got:
        assert labels in {other for other, s in expected if abs(s - score) <= tol}


def test_beam_one_is_greedy_with_exact_score():
    log_probs = random_log_probs(6, 12, 5, seed=0, scale=3.0)
    lengths = torch.tensor([12, 11, 7, 3, 1, 0])
    hyps = prefix_beam_search(log_probs, lengths, beam_size=1)
    assert [h[0].tokens for h in hyps] == greedy_decode(log_probs, lengths)
    # The score is the labelling's probability over all alignments, not the best path's.
    for b in range(3):
        tiny = random_log_probs(1, 5, 3, seed=10 + b)
        labels = tuple(greedy_decode(tiny, torch.tensor([5]))[0])
        assert prefix_beam_search(tiny, torch.tensor([5]), 1)[0][0].score == pytest.approx(
            dict(brute_force(tiny[0]))[labels], abs=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_large_beam_finds_the_most_probable_labellings(seed):
    steps, classes = (6, 3) if seed % 2 else (5, 4)
    log_probs = random_log_probs(1, steps, classes, seed)
    expected = brute_force(log_probs[0])
    assert_same(decoded(log_probs, torch.tensor([steps]), beam=300, nbest=6)[0], expected[:6])


@pytest.mark.parametrize("beam", [2, 3, 5])
def test_small_beams_equal_the_textbook_search(beam):
    # V = 8 > beam + 2, so the internal "beam + 1 tokens" cut is exercised too.
    for seed in range(4):
        log_probs = random_log_probs(1, 10, 8, seed=100 + seed)
        assert_same(decoded(log_probs, torch.tensor([10]), beam, nbest=beam)[0], reference_search(log_probs[0], beam))


def test_repeated_tokens_need_a_blank():
    a_a = log_probs_for([[0.05, 0.9, 0.05], [0.05, 0.9, 0.05]])      # "a a" frames collapse to "a"
    a_blank_a = log_probs_for([[0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])
    for log_probs in (a_a, a_blank_a):
        steps = log_probs.shape[1]
        assert_same(decoded(log_probs, torch.tensor([steps]), 20, nbest=3)[0], brute_force(log_probs[0]), count=3)
    assert decoded(a_a, torch.tensor([2]), 4)[0][0][0] == (1,)
    assert decoded(a_blank_a, torch.tensor([3]), 4)[0][0][0] == (1, 1)


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("options", [{}, {"token_prune_topk": 2}, {"token_prune_threshold": -2.5},
                                     {"labels": list("-abcde"), "word_delimiter": 5, "lm_unit": "token",
                                      "lm": build_ngram_lm([list("abcab"), list("ecad")], order=2),
                                      "lm_weight": 0.7, "word_bonus": 0.2},
                                     {"labels": list("-abcde"), "word_delimiter": 5, "lexicon": ["ab", "bad", "ec"],
                                      "token_prune_topk": 3},
                                     {"labels": list("-abcde"), "word_delimiter": 5, "hotwords": ["cab"],
                                      "lm": build_ngram_lm([["ab", "bad"], ["cab", "ab", "d"]], order=3),
                                      "lm_weight": 0.6, "word_bonus": 0.4}],
                         ids=["exact", "topk", "threshold", "token-lm", "lexicon-topk", "word-lm-hotwords"])
def test_batch_with_padding_equals_each_utterance_alone(wide, options, monkeypatch):
    """Utterances end at their lengths (the search runs them longest first and drops each as it ends):
    garbage in the padding must change nothing, with and without candidate cuts (picked for all frames
    at once, or per frame on wide frames) and fusion."""
    monkeypatch.setattr(beam_search, "_WIDE_FRAMES", 0 if wide else math.inf)
    log_probs = random_log_probs(6, 15, 6, seed=7)
    lengths = torch.tensor([15, 9, 0, 4, 15, 12])  # unsorted, an empty one, two of equal length
    for skip in (None, 0.5):
        together = decoded(log_probs, lengths, 6, nbest=3, skip_blank_threshold=skip, **options)
        for b, length in enumerate(lengths.tolist()):
            alone = decoded(log_probs[b:b + 1, :length], torch.tensor([length]), 6, nbest=3,
                            skip_blank_threshold=skip, **options)[0]
            assert_same(together[b], alone, tol=1e-12)


def test_empty_utterance_decodes_to_nothing():
    hyps = prefix_beam_search(random_log_probs(2, 4, 3, seed=1), torch.tensor([0, 4]), 4)
    assert hyps[0][0].tokens == [] and hyps[0][0].score == 0.0 and hyps[0][0].token_spans == []


@pytest.mark.parametrize(("topk", "threshold"), [(1, None), (2, None), (None, -1.5), (3, -2.0)])
def test_token_pruning_equals_the_pruned_textbook_search(topk, threshold):
    log_probs = random_log_probs(1, 10, 7, seed=3)
    got = decoded(log_probs, torch.tensor([10]), 4, nbest=4, token_prune_topk=topk, token_prune_threshold=threshold)
    assert_same(got[0], reference_search(log_probs[0], 4, topk, threshold))
    if topk == 1:  # every decoded token is its frame's best non-blank token somewhere
        best = set(log_probs[0, :, 1:].argmax(-1).add(1).tolist())
        assert all(set(labels) <= best for labels, _ in got[0])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 132, 258])
def test_impossible_blanks_and_tokens_equal_the_textbook_search(seed):
    """Frames where the blank (or a token) has probability 0: prefixes of probability 0 are no beams (with
    seeds 132 and 258 a textbook search that kept them as beams let them collect pruned tokens' mass)."""
    log_probs = random_log_probs(1, 8, 5, seed=20 + seed)
    g = torch.Generator().manual_seed(seed)
    impossible = torch.rand(1, 8, 5, generator=g) < 0.3
    impossible[..., 1] &= ~impossible[..., 0]  # blank or label 1 stays possible on every frame
    log_probs = log_probs.masked_fill(impossible, -math.inf).log_softmax(-1)
    for topk, threshold in ((None, None), (2, None), (None, -2.0)):
        got = decoded(log_probs, torch.tensor([8]), 3, nbest=3, token_prune_topk=topk, token_prune_threshold=threshold)
        assert_same(got[0], reference_search(log_probs[0], 3, topk, threshold))


def test_skipped_blank_frames_count_as_certain_blanks():
    log_probs = peaky_log_probs(3, 20, 5, seed=4).double()
    skip = log_probs[..., 0] > math.log(0.8)
    # Equivalent input: on skipped frames only the blank is possible (its log-prob kept).
    blank_only = log_probs.masked_fill(skip.unsqueeze(-1) & (torch.arange(5) > 0), -math.inf)
    for b in range(3):
        got = decoded(log_probs[b:b + 1], torch.tensor([20]), 5, nbest=3, skip_blank_threshold=0.8)[0]
        assert_same(got, reference_search(blank_only[b], 5)[:3])
    # A skipped blank still separates a repeated token.
    a_blank_a = log_probs_for([[0.01, 0.98, 0.01], [0.98, 0.01, 0.01], [0.01, 0.98, 0.01]])
    assert decoded(a_blank_a, torch.tensor([3]), 4, skip_blank_threshold=0.5)[0][0][0] == (1, 1)


def test_hypothesis_fields_and_nbest_order():
    log_probs = random_log_probs(2, 8, 4, seed=5)
    hyps = prefix_beam_search(log_probs, torch.tensor([8, 6]), beam_size=8, nbest=4)
    for nbest in hyps:
        assert len(nbest) == 4
        assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
        assert all(h.lm_score == 0.0 and h.am_score == h.score for h in nbest)
    with pytest.raises(ValueError, match="nbest"):
        prefix_beam_search(log_probs, torch.tensor([8, 6]), beam_size=2, nbest=3)


def test_timestamps_on_a_peaky_input():
    # labels: 0 blank, 1 "a", 2 "b", 3 "|"; frames  a a _ b | _ _ a a _  -> "ab|a"
    blank, a, b, bar = [0.97, 0.01, 0.01, 0.01], [0.01, 0.97, 0.01, 0.01], [0.01, 0.01, 0.97, 0.01], \
        [0.01, 0.01, 0.01, 0.97]
    log_probs = log_probs_for([a, a, blank, b, bar, blank, blank, a, a, blank])
    hyp = prefix_beam_search(log_probs, torch.tensor([10]), 8, labels=["-", "a", "b", "|"], word_delimiter=3,
                             frame_shift_s=0.04)[0][0]
    assert hyp.tokens == [1, 2, 3, 1] and hyp.text == "ab a"
    assert [(s.label, s.start, s.end) for s in hyp.token_spans] == [(1, 0, 2), (2, 3, 4), (3, 4, 5), (1, 7, 9)]
    expected_times = [(0.0, 0.08), (0.12, 0.16), (0.16, 0.20), (0.28, 0.36)]  # frames x 0.04 s
    assert len(hyp.token_times) == len(expected_times)
    for got, want in zip(hyp.token_times, expected_times):
        assert got == pytest.approx(want, abs=1e-9)
    assert [(w.text, w.start, w.end) for w in hyp.words] == [("ab", 0, 4), ("a", 7, 9)]
    assert (hyp.words[1].start_s, hyp.words[1].end_s) == pytest.approx((0.28, 0.36))


def test_decoder_object_is_reusable_and_float32_matches_float64():
    log_probs = random_log_probs(3, 12, 6, seed=9)
    decoder = BeamSearchDecoder(beam_size=6, nbest=2, timestamps=False)
    first, second = decoder(log_probs, torch.tensor([12, 10, 5])), decoder(log_probs.float(), torch.tensor([12, 10, 5]))
    assert [[h.tokens for h in n] for n in first] == [[h.tokens for h in n] for n in second]
    assert [h.score for n in first for h in n] == pytest.approx([h.score for n in second for h in n], abs=1e-4)


# ---------------------------------------------------------------- regressions from reviews
def test_score_bound_pruning_equals_the_unpruned_search_on_a_near_tie(monkeypatch):
    """Exactness: the pruned search must keep what the same search without the bound keeps. Token "a"
    lies 5e-10 below the floor computed with max_gain() = 0.1, but the float32 bonus it earns is
    0.1 + 1.5e-9, so unpruned it outscores the stay; pruned it is never built."""
    fusion = LMFusion(["-", "a", "b"], word_bonus=0.1, lm_unit="token")
    y_blank = math.log(0.5)
    y_a = y_blank - 0.1 - 5e-10
    log_probs = torch.tensor([[[y_blank, y_a, math.log(1 - 0.5 - math.exp(y_a))]]], dtype=torch.float64)
    pruned = ctc_prefix_search(log_probs, torch.tensor([1]), 1, fusion=fusion)
    monkeypatch.setattr(LMFusion, "max_gain", lambda self: math.inf)
    unpruned = ctc_prefix_search(log_probs, torch.tensor([1]), 1, fusion=fusion)
    assert pruned.tokens == unpruned.tokens
    assert pruned.am_scores[0][0] + pruned.lm_scores[0][0] >= unpruned.am_scores[0][0] + unpruned.lm_scores[0][0]


@pytest.mark.parametrize("wide", [False, True])
def test_an_utterance_whose_prefixes_all_die_decodes_in_a_batch_as_alone(wide, monkeypatch):
    """Regression: on a frame where the blank is impossible and every token is pruned, all of an utterance's
    prefixes get probability 0. Alone it decodes to [] (score -inf); in a batch its beams picked up the
    tokens of slots made for the other utterance (on wide frames the blank, which then broke timestamps
    for the whole batch)."""
    monkeypatch.setattr(beam_search, "_WIDE_FRAMES", 0 if wide else math.inf)
    log_probs = torch.full((2, 3, 4), -math.inf, dtype=torch.float64)
    log_probs[0] = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]]).log()
    log_probs[1, 0] = torch.tensor([0.0, 1 / 3, 1 / 3, 1 / 3]).log()  # blank impossible, tokens below -1
    log_probs[1, 1:] = torch.tensor([0.1, 0.1, 0.1, 0.7]).log()
    lengths, options = torch.tensor([3, 3]), dict(token_prune_threshold=-1.0, token_prune_topk=1, nbest=3)
    together = prefix_beam_search(log_probs, lengths, 3, **options)  # timestamps on
    alone = prefix_beam_search(log_probs[1:], lengths[1:], 3, **options)[0]
    assert [(h.tokens, h.score) for h in together[1]] == [(h.tokens, h.score) for h in alone] == [([], -math.inf)]
    assert together[0][0].tokens == [1, 2]


def test_an_empty_batch_with_blank_skipping_decodes_to_nothing():
    """Regression: B = 0 with skip_blank_threshold crashed on max() of an empty tensor."""
    assert prefix_beam_search(torch.zeros(0, 5, 4), torch.zeros(0, dtype=torch.long), 4,
                              skip_blank_threshold=0.9) == []


@pytest.mark.parametrize("beam", [1, 4])
def test_lengths_beyond_the_frames_are_a_clear_error(beam):
    """Regression: beam 1 crashed inside torch's CTC loss on a length above T, while beam 4 clamped it."""
    log_probs = torch.randn(2, 3, 4).log_softmax(-1)
    for lengths in ([5, 2], [-1, 2]):
        with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=3\]"):
            prefix_beam_search(log_probs, torch.tensor(lengths), beam)
        with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=3\]"):
            ctc_prefix_search(log_probs, torch.tensor(lengths), beam)


@pytest.mark.parametrize("options", [{}, {"token_prune_topk": 2, "token_prune_threshold": -3.0},
                                     {"fusion": LMFusion(list("-abcde"), word_delimiter=5, word_bonus=0.3,
                                                         lm=build_ngram_lm([["ab", "bad"], ["cab", "d"]], order=2))}],
                         ids=["exact", "pruned", "word-lm"])
def test_a_session_cut_into_chunks_is_the_search_of_all_frames(options):
    """SearchSession carries the beams (fusion state included) from chunk to chunk: three streams cut alike
    into chunks of 0 to 5 frames, their pointers joined, give ctc_prefix_search's result on all frames,
    float for float (the same operations on the same frames)."""
    log_probs = random_log_probs(3, 23, 6, seed=13)
    lengths = torch.full((3,), 23)
    expected = ctc_prefix_search(log_probs, lengths, 5, nbest=3, **options)
    session = beam_search.SearchSession(3, 5, dtype=log_probs.dtype, **options)
    pointers, start = [], 0
    for size in (0, 1, 5, 0, 2, 3, 4, 1, 5, 2):
        chunk, order = session.search(log_probs[:, start:start + size], torch.full((3,), size))
        assert order.tolist() == [0, 1, 2]
        pointers += chunk
        start += size
    assert start == 23 and len(pointers) == 23
    got = beam_search._results(session.finish(), pointers, order, 3)
    assert (got.tokens, got.am_scores, got.lm_scores) == (expected.tokens, expected.am_scores, expected.lm_scores)


def test_a_session_takes_no_frames_for_utterances_that_ended():
    session = beam_search.SearchSession(2, 3)
    session.search(random_log_probs(2, 4, 5, seed=1).float(), torch.tensor([4, 2]))
    with pytest.raises(RuntimeError, match="1 utterances of this search ended in an earlier chunk"):
        session.search(random_log_probs(2, 4, 5, seed=2).float(), torch.tensor([4, 4]))


def test_token_prune_topk_must_be_positive():
    log_probs = torch.zeros(1, 3, 4).log_softmax(-1)
    with pytest.raises(ValueError, match="token_prune_topk"):
        ctc_prefix_search(log_probs, torch.tensor([3]), 2, token_prune_topk=0)


# ---------------------------------------------------------------- other decoders, where installed
LABELS = ["-", "a", "b", "c", "d", "e", "|"]


@pytest.mark.parametrize("which", ["flashlight", "pyctcdecode"])
def test_top1_agrees_with_other_decoders(which):
    # flashlight-text is in the test extra, so its comparison always runs; pyctcdecode is optional (it caps
    # numpy < 2). find_spec, not importorskip: pytest 9's importorskip skips only a missing module, and
    # its exc_type (pytest >= 8.2) would also hide a broken install as a skip.
    if which == "pyctcdecode" and importlib.util.find_spec("pyctcdecode") is None:
        pytest.skip("pyctcdecode is not installed (optional)")
    from ctcrnn.decoding.external import FlashlightDecoder, PyCTCDecoder

    def other(labels, beam):
        if which == "flashlight":
            return FlashlightDecoder(labels, beam_size=beam, beam_threshold=1e9, log_add=True, timestamps=False)
        return PyCTCDecoder(labels, beam_size=beam, beam_prune_logp=-1e9, token_min_logp=-1e9, timestamps=False)

    # Tiny random inputs, beams wide enough for all three searches to be exact.
    tiny = random_log_probs(12, 5, 4, seed=11).float()
    lengths = torch.full((12,), 5)
    ours, theirs = prefix_beam_search(tiny, lengths, 200), other(LABELS[:4], 200)(tiny, lengths)
    assert [h[0].tokens for h in ours] == [h[0].tokens for h in theirs]
    assert [h[0].score for h in ours] == pytest.approx([h[0].am_score for h in theirs], abs=1e-4)
    # Peaky CTC-like outputs of realistic length, at an equal, ordinary beam.
    peaky = peaky_log_probs(8, 60, len(LABELS), seed=12)
    lengths = torch.tensor([60, 60, 55, 50, 41, 60, 33, 60])
    ours, theirs = prefix_beam_search(peaky, lengths, 8), other(LABELS, 8)(peaky, lengths)
    assert [h[0].tokens for h in ours] == [h[0].tokens for h in theirs]

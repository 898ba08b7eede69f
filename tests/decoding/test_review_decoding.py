"""Regression tests from reviews of the decoder: the score-bound token pruning and the --decoder option
(float32 fusion scores against the bound, a near tie, tune-lm with flashlight's lexicon-free decoder,
bad top-k), then the early <unk> charge and the LM's joined n-gram tables (a positive charge within
max_gain, an LM with an empty order, -inf back-offs, a label spelt ""), and the per-beam fusion state
that FusionState.split hands over (its list is kept by hand)."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch

from ctcrnn.decoding import prefix_search as beam_search
from ctcrnn.decoding import fusion as fusion_module
from ctcrnn.decoding.prefix_search import ctc_prefix_search
from ctcrnn.decoding.fusion import LMFusion
from ctcrnn.decoding.decoders import prefix_beam_search
from ctcrnn.decoding.lm import LN10, build_ngram_lm, read_arpa

from tests.fixtures.decoding import BAR, LABELS, LEXICON, SENTENCES, WORD_LM


# ---------------------------------------------------------------- max_gain vs float32 fusion scores
@pytest.mark.parametrize("options", [dict(word_bonus=0.1, lm_unit="token"),
                                     dict(word_bonus=0.1, word_delimiter=BAR, lexicon=LEXICON),
                                     dict(lm=WORD_LM, lm_weight=0.7, word_bonus=0.1, word_delimiter=BAR)],
                         ids=["token unit, bonus", "word unit, lexicon, bonus", "word LM, no lexicon"])
@pytest.mark.parametrize("spelling", ["a", "cc"], ids=["a word", "no word"])
def test_max_gain_bounds_the_extension_scores_the_search_adds(options, spelling):
    """The search adds ``extension_scores(...).to(dtype)``; fusion computes them in float32, so a bonus of
    0.1 becomes 0.10000000149 while max_gain() returns the float64 0.1: not an upper bound. "cc" is no
    word: closing it refunds the <unk> charge it took, which must stay within the bound too."""
    fusion = LMFusion(LABELS, **options)
    state = fusion.start(1, 1, torch.device("cpu"))
    tokens = torch.arange(1, len(LABELS)).unsqueeze(0)
    for token in (None, *(LABELS.index(c) for c in spelling)):  # the empty prefix, then the spelling
        if token is not None:
            state.advance(torch.zeros(1, 1, dtype=torch.long), torch.tensor([[token]]),
                          torch.ones(1, 1, dtype=torch.bool))
        delta = state.extension_scores(tokens).double()
        assert float(delta.max()) <= fusion.max_gain()


def test_max_gain_bounds_the_refund_of_an_unknown_word(tmp_path):
    """An LM where P(<unk> | <s>) reaches its bound: closing the unknown word "cc" right after <s> gains
    the whole bonus back (charge refunded), more than any known word's bonus + LM score."""
    (tmp_path / "flat.arpa").write_text("\\data\\\nngram 1=5\n\n\\1-grams:\n-1\t<unk>\n-99\t<s>\t0\n"
                                        "-1\ta\n-1\tcat\n-1\t</s>\n\n\\end\\\n")
    fusion = LMFusion(LABELS, lm=read_arpa(tmp_path / "flat.arpa"), lm_weight=1.0, word_bonus=0.1,
                      word_delimiter=BAR)
    state = fusion.start(1, 1, torch.device("cpu"))
    for token in (LABELS.index("c"), LABELS.index("c")):
        state.advance(torch.zeros(1, 1, dtype=torch.long), torch.tensor([[token]]), torch.ones(1, 1, dtype=torch.bool))
    closing = float(state.extension_scores(torch.tensor([[BAR]])))
    assert closing == pytest.approx(0.1, abs=1e-6)
    assert closing <= fusion.max_gain()
    # The search with this unigram LM (LM states of zero words): "cat|cc" scores two words and </s>.
    tokens = [LABELS.index(c) for c in "cat|cc"]
    rows = torch.full((2 * len(tokens), len(LABELS)), -8.0, dtype=torch.float64)
    rows[1::2, 0] = 0.0
    rows[0::2][torch.arange(len(tokens)), tokens] = 0.0
    hyp = prefix_beam_search(rows.log_softmax(-1).unsqueeze(0), torch.tensor([rows.shape[0]]), 4, labels=LABELS,
                             word_delimiter=BAR, lm=fusion.lm, lm_weight=1.0, word_bonus=0.1, timestamps=False)[0][0]
    assert hyp.tokens == tokens
    assert hyp.lm_score == pytest.approx(3 * -1 * LN10 + 2 * 0.1, abs=1e-5)


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


# ---------------------------------------------------------------- tune-lm --decoder flashlight
def test_tune_lm_with_flashlight_and_no_lexicon_does_not_fail_after_running_the_model(monkeypatch, tmp_path):
    """`ctcrnn tune-lm --decoder flashlight` without --lexicon: the default word-bonus grid (-1, 0, 1, 2)
    holds bonuses that flashlight's lexicon-free decoder rejects, and tune_lm finds out only after running
    the model over the whole validation split. It must either work or refuse before the model runs."""
    from ctcrnn.evaluation import lm_tuning  # flashlight-text is in the test extra: this runs, never skipped
    from ctcrnn.decoding.lm import build_ngram_lm, write_arpa

    labels = ["-", "a", "b", "c"]
    arpa = tmp_path / "chars.arpa"
    write_arpa(build_ngram_lm([list("abc"), list("cab"), list("bca")], order=2), arpa)
    g = torch.Generator().manual_seed(0)
    rows = [{"id": str(i), "ref": [1, 2], "hyp": [1, 2], "log_probs": torch.randn(6, 4, generator=g).log_softmax(-1)}
            for i in range(3)]
    ran = []
    cfg = SimpleNamespace(data=SimpleNamespace(eval_batch_size=2, num_workers=0))
    monkeypatch.setattr(lm_tuning, "load_for_evaluation",
                        lambda *a, **k: ({"labels": labels, "input_spec": {}}, cfg, "val", None, None))
    monkeypatch.setattr(lm_tuning, "run_model", lambda *a, **k: ran.append(True) or rows)
    try:
        result = lm_tuning.tune_lm("unused.pt", arpa, device="cpu", engine="flashlight")
    except ValueError:
        assert not ran, "tune_lm ran the model over the whole split, then failed on its default bonus grid"
    else:
        assert result["grid"]


def test_token_prune_topk_must_be_positive():
    log_probs = torch.zeros(1, 3, 4).log_softmax(-1)
    with pytest.raises(ValueError, match="token_prune_topk"):
        ctc_prefix_search(log_probs, torch.tensor([3]), 2, token_prune_topk=0)


# ---------------------------------------------------------------- second review: <unk> charge, LM tables
POSITIVE_BACKOFF_ARPA = """\\data\\
ngram 1=4
ngram 2=1

\\1-grams:
-99\t<s>\t1.0
-1.0\t</s>
-0.5\ta
-0.1\t<unk>

\\2-grams:
-0.3\t<s> a

\\end\\
"""


def test_a_positive_unknown_charge_stays_within_max_gain(tmp_path, monkeypatch):
    """A back-off above 1 makes the early <unk> charge positive: leaving the trie then gains score, and
    max_gain() must cover it, or the bound prunes hypotheses the unpruned search keeps."""
    (tmp_path / "pos.arpa").write_text(POSITIVE_BACKOFF_ARPA)
    labels = ["-", "a", "b", "|"]
    options = dict(labels=labels, word_delimiter=3, lm=read_arpa(tmp_path / "pos.arpa"), lm_weight=1.0,
                   word_bonus=-1.0, timestamps=False)
    fusion = LMFusion(labels, lm=options["lm"], word_delimiter=3, lm_weight=1.0, word_bonus=-1.0)
    delta = fusion.start(1, 1, torch.device("cpu")).extension_scores(None)
    assert float(delta[0, 0, 2]) > 2.0 and float(delta.max()) <= fusion.max_gain()

    def search(log_probs):
        hyps = prefix_beam_search(log_probs, torch.tensor([3]), 2, nbest=2, **options)[0]
        return [(h.tokens, round(h.score, 6)) for h in hyps]
    inputs = [(2 * torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(s), dtype=torch.float64))
              .log_softmax(-1) for s in range(40)]
    pruned = [search(x) for x in inputs]
    monkeypatch.setattr(LMFusion, "max_gain", lambda self: math.inf)
    assert pruned == [search(x) for x in inputs]


def test_lm_with_an_empty_order():
    """A 5-gram built from one-word sentences lists no 4- or 5-grams: its bound, its scores and a search with it
    are what Witten-Bell gives."""
    lm = build_ngram_lm([["a"], ["b"]], order=5)
    assert [len(ids) for ids, _, _ in lm.ngrams] == [5, 4, 2, 0, 0]
    # Witten-Bell by hand (vocabulary a, b, </s>, <unk>): P(a) = (1 + 3/4)/7 = 1/4, P(</s>) = (2 + 3/4)/7 = 11/28;
    # P(a | <s>) = (1 + 2 P(a))/4 = 3/8; P(</s> | a) = (1 + P(</s>))/2 = 39/56, P(b | a) = P(b)/2 = 1/8 (and
    # a, b swapped); P(</s> | <s> a) = (1 + 39/56)/2 = 95/112, the largest listed probability (no back-off is
    # above 1); P(b | <s> a) = P(b | a)/2 = 1/16. Longer contexts are unlisted: they fall back to the last word.
    assert lm.max_log_prob() == pytest.approx(math.log(95 / 112), abs=1e-6)
    assert lm.log_prob("</s>", ["<s>", "a", "b", "a"]) == pytest.approx(math.log(39 / 56), abs=1e-6)
    # The search over a peaky "a|b|a": lm_score = 0.5 ln(P(a|<s>) P(b|<s> a) P(a|<s> a b) P(</s>|<s> a b a)),
    # am_score the CTC log-likelihood of the tokens (a beam of 64 keeps all but ~1e-10 of it).
    labels = ["-", "a", "b", "|"]
    tokens = [labels.index(c) for c in "a|b|a"]
    rows = torch.full((2 * len(tokens), len(labels)), -8.0, dtype=torch.float64)
    rows[1::2, 0] = 0.0
    rows[0::2][torch.arange(len(tokens)), tokens] = 0.0
    log_probs = rows.log_softmax(-1).unsqueeze(0)
    hyp = prefix_beam_search(log_probs, torch.tensor([len(rows)]), 64, labels=labels, word_delimiter=3, lm=lm,
                             lm_weight=0.5, timestamps=False)[0][0]
    assert hyp.tokens == tokens
    assert hyp.lm_score == pytest.approx(0.5 * math.log(3 / 8 * 1 / 16 * 1 / 8 * 39 / 56), abs=1e-5)
    ctc = -torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), torch.tensor([tokens]), torch.tensor([len(rows)]),
                                        torch.tensor([len(tokens)]), reduction="sum")
    assert hyp.am_score == pytest.approx(float(ctc), abs=1e-8)
    assert hyp.score == pytest.approx(hyp.am_score + hyp.lm_score)


def test_a_minus_inf_back_off_scores_minus_inf_only_where_it_applies(tmp_path):
    """A back-off of log 0 scores -inf where it applies and nowhere else (no NaN)."""
    (tmp_path / "zero.arpa").write_text(
        "\\data\\\nngram 1=5\nngram 2=2\n\n\\1-grams:\n-99\t<s>\t-0.3\n-0.5\t</s>\n-0.4\ta\t-inf\n-0.6\tb\t-0.2\n"
        "-1.0\t<unk>\n\n\\2-grams:\n-0.2\t<s> a\n-0.1\ta </s>\n\n\\end\\\n")
    zero = read_arpa(tmp_path / "zero.arpa")
    assert zero.log_prob("b", ["a"]) == -math.inf
    assert zero.log_prob("</s>", ["a"]) == pytest.approx(-0.1 * LN10, abs=1e-6)
    assert zero.log_prob("a", ["<s>"]) == pytest.approx(-0.2 * LN10, abs=1e-6)


def test_a_label_spelt_empty_grows_no_word():
    """A label whose string is "" leaves the partial word empty: closing it (delimiter or end) scores 0."""
    labels = ["-", "a", "b", "|", ""]
    fusion = LMFusion(labels, lm=build_ngram_lm([["a", "b"], ["b"]], order=2), word_delimiter=3, lm_weight=1.0,
                      unk_score=-2.0)
    state, one = fusion.start(1, 1, torch.device("cpu")), torch.zeros(1, 1, dtype=torch.long)
    total = 0.0
    for token in (4, 3):  # "" then "|"
        total += float(state.extension_scores(torch.arange(len(labels)).unsqueeze(0))[0, 0, token])
        state.advance(one, torch.full((1, 1), token), torch.ones(1, 1, dtype=torch.bool))
    assert total == 0.0
    state = fusion.start(1, 1, torch.device("cpu"))
    state.advance(one, torch.full((1, 1), 4), torch.ones(1, 1, dtype=torch.bool))
    assert float(state.final_scores()) == pytest.approx(float(fusion.start(1, 1, torch.device("cpu")).final_scores()))


@pytest.mark.parametrize("wide", [False, True])
def test_an_utterance_whose_prefixes_all_die_decodes_in_a_batch_as_alone(wide, monkeypatch):
    """Review: on a frame where the blank is impossible and every token is pruned, all of an utterance's
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


def test_greedy_decoding_of_frameless_input():
    """Review: beam 1 (greedy) on log-probs with no frames crashed in the CTC likelihood of the results."""
    hyps = prefix_beam_search(torch.zeros(2, 0, 4), torch.zeros(2, dtype=torch.long), 1)
    assert [(h[0].tokens, h[0].score) for h in hyps] == [([], 0.0), ([], 0.0)]


@pytest.mark.parametrize("beam", [1, 4])
def test_lengths_beyond_the_frames_are_a_clear_error(beam):
    """Review: beam 1 crashed inside torch's CTC loss on a length above T, while beam 4 clamped it."""
    log_probs = torch.randn(2, 3, 4).log_softmax(-1)
    for lengths in ([5, 2], [-1, 2]):
        with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=3\]"):
            prefix_beam_search(log_probs, torch.tensor(lengths), beam)
        with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=3\]"):
            ctc_prefix_search(log_probs, torch.tensor(lengths), beam)


def test_an_empty_batch_with_blank_skipping_decodes_to_nothing():
    """Review: B = 0 with skip_blank_threshold crashed on max() of an empty tensor."""
    assert prefix_beam_search(torch.zeros(0, 5, 4), torch.zeros(0, dtype=torch.long), 4,
                              skip_blank_threshold=0.9) == []


@pytest.mark.parametrize("unit", ["word", "token"])
def test_split_hands_over_every_per_beam_tensor_of_the_fusion_state(unit):
    """FusionState.split cuts the per-beam tensors named in fusion._PER_BEAM (kept by hand): a per-beam
    tensor added to the state but not to that list would fail here. Batch 3 × beams 5 over 6 labels, so
    no shared table has that leading shape; a few steps first, so that every attribute is reassigned."""
    lm = WORD_LM if unit == "word" else build_ngram_lm([list("|".join(s)) for s in SENTENCES], order=3)
    fusion = LMFusion(LABELS, lm=lm, lm_weight=0.5, word_bonus=0.5, word_delimiter=BAR, lm_unit=unit,
                      lexicon=LEXICON, hotwords=["cat"])
    state = fusion.start(3, 5, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        extended = torch.rand(3, 5, generator=gen) < 0.7
        tokens = torch.where(extended, torch.randint(1, len(LABELS), (3, 5), generator=gen), -1)
        state.advance(torch.randint(0, 5, (3, 5), generator=gen), tokens, extended)
    per_beam = {name: value.clone() for name, value in vars(state).items()
                if torch.is_tensor(value) and value.shape[:2] == (3, 5)}
    assert set(per_beam) <= set(fusion_module._PER_BEAM) and len(per_beam) >= 4
    expected = copy.deepcopy(state).final_scores()
    rest = state.split(2)
    for name, value in per_beam.items():
        assert torch.equal(torch.cat([getattr(state, name), getattr(rest, name)]), value), name
    assert torch.equal(torch.cat([state.final_scores(), rest.final_scores()]), expected)

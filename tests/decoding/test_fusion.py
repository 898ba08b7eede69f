"""The fused beam search against a textbook one: prefixes in dicts, one token at a time, ranked by
acoustic score plus a fusion score computed from each prefix's text by plain Python (word or token LM,
word bonus, lexicon, hotwords). The two must keep the same prefixes with the same scores, which checks
the vectorised fusion bookkeeping and the search's score-bound token pruning, which must lose nothing. Then
LMFusion.max_gain against the scores fusion adds (float32 sums, unknown words' charges and refunds, positive
back-offs) and a label spelt ""."""
import math

import pytest
import torch

from ctcrnn.decoding.decoders import prefix_beam_search
from ctcrnn.decoding.fusion import LMFusion
from ctcrnn.decoding.lm import LN10, build_ngram_lm, read_arpa
from ctcrnn.metrics import edit_distance

from tests.fixtures.decoding import (LABELS, BAR, WORD_LM, TOKEN_LM, LEXICON, fusion_score, textbook_fused_search, random_log_probs)

SETTINGS = {
    "word LM + bonus": dict(lm=WORD_LM, lm_weight=0.7, word_bonus=0.5),
    "word LM + lexicon": dict(lm=WORD_LM, lm_weight=1.2, word_bonus=-0.2, lexicon=LEXICON),
    "lexicon + hotwords": dict(lexicon=LEXICON, hotwords={"cat", "oat"}, hotword_bonus=1.5),
    "word LM + hotwords": dict(lm=WORD_LM, lm_weight=0.5, hotwords={"tot"}, hotword_bonus=2.0),
    "word LM + unk score": dict(lm=WORD_LM, lm_weight=0.6, word_bonus=0.3, unk_score=-2.0),
    "word LM + lexicon + unk score": dict(lm=WORD_LM, lm_weight=0.6, lexicon=LEXICON | {"tat", "coat"},
                                          unk_score=-1.5),
    "unk score alone": dict(lm=WORD_LM, lm_weight=0.0, unk_score=-2.5),
    "token LM + bonus": dict(lm=TOKEN_LM, unit="token", lm_weight=0.8, word_bonus=0.3),
    "token LM + lexicon": dict(lm=TOKEN_LM, unit="token", lm_weight=0.5, word_bonus=0.4, lexicon=LEXICON),
}


@pytest.mark.parametrize("name", SETTINGS)
@pytest.mark.parametrize("beam", [2, 4])
@pytest.mark.parametrize("peaky", [False, True])
def test_fused_search_equals_the_textbook_search(name, beam, peaky):
    fusion = SETTINGS[name]
    options = dict(fusion, lm_unit=fusion.get("unit", "word"))
    options.pop("unit", None)
    for seed in range(3):
        log_probs = random_log_probs(9, seed=seed + 10 * beam, peaky=peaky)
        expected = textbook_fused_search(log_probs[0], beam, **fusion)
        got = prefix_beam_search(log_probs, torch.tensor([9]), beam, nbest=beam, labels=LABELS, word_delimiter=BAR,
                                 timestamps=False, **options)[0]
        got = [(tuple(h.tokens), h.score) for h in got if h.score > -math.inf]
        assert [p for p, _ in got] == [p for p, _ in expected], (name, seed)
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-4)


def test_a_delimiter_after_a_delimiter_closes_no_word():
    """'|cat' and 'cat||cat' score like 'cat' and 'cat cat': an empty word adds nothing to the LM context."""
    for text in ("|cat", "cat||cat", "cat|"):
        tokens = [LABELS.index(c) for c in text]
        rows = torch.full((2 * len(tokens), len(LABELS)), -8.0, dtype=torch.float64)
        rows[1::2, 0] = 0.0
        rows[0::2][torch.arange(len(tokens)), tokens] = 0.0
        log_probs = rows.log_softmax(-1).unsqueeze(0)
        hyp = prefix_beam_search(log_probs, torch.tensor([rows.shape[0]]), 4, labels=LABELS, word_delimiter=BAR,
                                 lm=WORD_LM, lm_weight=1.0, timestamps=False)[0][0]
        assert hyp.tokens == tokens
        assert hyp.lm_score == pytest.approx(fusion_score(tuple(tokens), lm=WORD_LM, lm_weight=1.0, final=True),
                                             abs=1e-5)


def test_a_word_lm_without_lexicon_corrects_misspellings():
    """Text from a sparse random word chain (an LM's favourite case), CTC outputs with one spike per label
    where 15% of the spikes have a wrong letter almost as likely: the word LM (no lexicon) must lower the
    error rate. Without the early <unk> charge the search learnt to stop closing words after a misspelling
    (postponing every LM cost) and the LM doubled the error rate."""
    g = torch.Generator().manual_seed(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    labels = ["-", *letters, "|"]

    def rand(high, size=()):
        return torch.randint(0, high, size, generator=g)
    vocab = sorted({"".join(letters[i] for i in rand(26, (2 + int(rand(6)),))) for _ in range(300)})
    follow = rand(len(vocab), (len(vocab), 6))

    def sentence():
        word, words = int(rand(len(vocab))), []
        for _ in range(4 + int(rand(20))):
            words.append(vocab[word])
            word = int(follow[word, rand(6)]) if torch.rand(1, generator=g) < 0.8 else int(rand(len(vocab)))
        return words
    lm = build_ngram_lm([sentence() for _ in range(3000)], order=3)
    truths = ["|".join(sentence()) for _ in range(32)]
    steps = 3 * max(len(t) for t in truths) + 3
    logits = torch.randn(len(truths), steps, len(labels), generator=g)
    logits[..., 0] += 6.0
    for b, text in enumerate(truths):
        for i, ch in enumerate(text):
            logits[b, 3 * i, labels.index(ch)] += 9.0
            if ch != "|" and torch.rand(1, generator=g) < 0.15:  # a wrong letter almost as likely
                logits[b, 3 * i, 1 + int(rand(26))] += 8.7
    log_probs, lengths = logits.log_softmax(-1), torch.full((len(truths),), steps)

    def errors(**fusion):
        hyps = prefix_beam_search(log_probs, lengths, 8, labels=labels, word_delimiter=27, timestamps=False, **fusion)
        return sum(edit_distance(text, "".join(labels[t] for t in h[0].tokens)) for h, text in zip(hyps, truths))
    without_lm, with_lm = errors(), errors(lm=lm, lm_weight=0.5, word_bonus=1.0)
    assert without_lm >= 20  # misspellings show without the LM
    assert with_lm <= without_lm / 3, (with_lm, without_lm)


# ---------------------------------------------------------------- max_gain: the bound the search prunes with
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

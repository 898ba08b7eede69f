"""n-gram LMs (ARPA reading with back-off, the Witten-Bell builder) and their fusion into the beam search
(LM scores, word bonus, lexicon, hotwords), against hand-computed values; LM tuning with flashlight's decoder."""
import gzip
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from ctcrnn.decoding.decoders import prefix_beam_search
from ctcrnn.decoding.lm import LN10, build_ngram_lm, main, read_arpa, write_arpa

ARPA = """some header text tools write
\\data\\
ngram 1=6
ngram 2=4
ngram 3=2

\\1-grams:
-1.2\t<unk>
-99\t<s>\t-0.4
-0.6\tcat\t-0.25
-0.7\tsat\t-0.15
-0.8\tthe\t-0.3
-0.5\t</s>

\\2-grams:
-0.2\t<s> the\t-0.1
-0.3\tthe cat\t-0.05
-0.35\tcat sat
-0.45\tsat </s>

\\3-grams:
-0.05\t<s> the cat
-0.1\tthe cat sat

\\end\\
"""


@pytest.fixture
def arpa_lm(tmp_path):
    path = tmp_path / "hand.arpa"
    path.write_text(ARPA)
    return read_arpa(path)


@pytest.mark.parametrize(("context", "word", "log10"), [
    (["<s>", "the"], "cat", -0.05),              # listed trigram
    (["the", "cat"], "sat", -0.1),
    (["<s>", "the"], "sat", -0.1 - 0.3 - 0.7),   # bo(<s> the) + bo(the) + P(sat)
    (["cat", "sat"], "</s>", -0.45),             # "cat sat" has no back-off: 0
    (["the", "cat"], "the", -0.05 - 0.25 - 0.8),
    (["cat", "sat"], "dog", -0.15 - 1.2),        # unknown word: <unk>
    (["<s>"], "cat", -0.4 - 0.6),
    ([], "cat", -0.6),
])
def test_arpa_back_off_scores(arpa_lm, context, word, log10):
    assert arpa_lm.log_prob(word, context) == pytest.approx(log10 * LN10, abs=1e-5)


def test_max_log_prob_bounds_every_score(arpa_lm):
    """Overall and per word: the largest listed log-prob (no positive back-offs here), never below a score."""
    vocab = ["<s>", "the", "cat", "sat", "</s>", "<unk>"]
    for word in vocab[1:]:
        bound = arpa_lm.max_log_prob(arpa_lm.index[word])
        assert max(arpa_lm.log_prob(word, [a, b]) for a in vocab for b in vocab) <= bound + 1e-6
    assert arpa_lm.max_log_prob() == pytest.approx(-0.05 * LN10, abs=1e-6)
    assert arpa_lm.max_log_prob(arpa_lm.index["sat"]) == pytest.approx(-0.1 * LN10, abs=1e-6)
    assert arpa_lm.max_log_prob(arpa_lm.unk) == pytest.approx(-1.2 * LN10, abs=1e-6)


def test_score_takes_contexts_of_any_width(arpa_lm):
    """Only the last order − 1 context words matter: wider contexts are cut, narrower ones padded."""
    words = torch.tensor(arpa_lm.word_ids(["cat", "sat", "</s>"]))
    wide = torch.tensor([arpa_lm.word_ids(["sat", "<s>", "the"])] * 3)
    assert arpa_lm.score(wide, words).tolist() == arpa_lm.score(wide[:, 1:], words).tolist()
    narrow = torch.tensor([arpa_lm.word_ids(["the"])] * 3)
    assert arpa_lm.score(narrow, words).tolist() == arpa_lm.score(torch.cat([torch.full((3, 1), -1), narrow], 1),
                                                                  words).tolist()


def test_batched_scores_equal_single_scores(arpa_lm):
    words = ["the", "cat", "sat", "</s>", "<unk>"]
    contexts = [["<s>", "the"], ["the", "cat"], ["cat", "sat"], ["sat", "the"]]
    ids = torch.tensor([arpa_lm.word_ids(c) for c in contexts])
    table = arpa_lm.score(ids.unsqueeze(1), torch.tensor(arpa_lm.word_ids(words)))  # (4, 5)
    expected = [arpa_lm.log_prob(w, c) for c in contexts for w in words]
    assert table.flatten().tolist() == pytest.approx(expected, abs=1e-6)


def test_missing_unk_and_bad_counts(tmp_path):
    no_unk = tmp_path / "no_unk.arpa"
    no_unk.write_text(ARPA.replace("ngram 1=6", "ngram 1=5").replace("-1.2\t<unk>\n", ""))
    assert read_arpa(no_unk).log_prob("dog", []) == pytest.approx(-100 * LN10)  # KenLM's convention
    bad = tmp_path / "bad.arpa"
    bad.write_text(ARPA.replace("ngram 2=4", "ngram 2=5"))
    with pytest.raises(ValueError, match="announces 5 2-grams"):
        read_arpa(bad)


def test_gzipped_arpa_and_files_that_are_not_arpa(tmp_path):
    (tmp_path / "lm.arpa.gz").write_bytes(gzip.compress(ARPA.encode()))
    assert read_arpa(tmp_path / "lm.arpa.gz").log_prob("cat", ["<s>", "the"]) == pytest.approx(
        read_arpa_text(tmp_path).log_prob("cat", ["<s>", "the"]))
    cases = {"model.binary": (b"mmap lm http://kheafield.com/code format version 5\n\x00\x01", "KenLM binary"),
             "latin1.arpa": (ARPA.replace("cat", "caf\xe9").encode("latin-1"), "not UTF-8 text"),
             "garbage.arpa": (ARPA.replace("-0.6\tcat", "x0.6\tcat").encode(), ":10: expected numbers")}
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=message):
            read_arpa(tmp_path / name)


def read_arpa_text(folder):
    (folder / "plain.arpa").write_text(ARPA)
    return read_arpa(folder / "plain.arpa")


# A file cut short (a failed copy or download) and other damage: one error naming the file, never a wrong
# model or a traceback from gzip or int().
_CUT_MID_SECTION = ARPA[: ARPA.index("-0.35\tcat sat")]  # ends inside the 2-grams
DAMAGED = {
    "cut.arpa": (_CUT_MID_SECTION.encode(), (r"cut\.arpa ends after line 17, in its 2-grams section, without the "
                                            r"closing \\end\\ line: the file is truncated")),
    "cut_mid_line.arpa": (ARPA[: ARPA.index("-0.35\tcat sat") + 9].encode(), "without the closing .* truncated"),
    "cut_in_header.arpa": (ARPA[: ARPA.index("ngram 3")].encode(),
                           "before its first n-gram section, without the closing .* truncated"),
    "cut.arpa.gz": (gzip.compress(ARPA.encode())[:60],
                    r"cut\.arpa\.gz: the gzip data is cut short or damaged .* truncated or corrupt"),
    "corrupt.arpa.gz": (gzip.compress(ARPA.encode())[:20] + b"\x00" * 200, "gzip data is cut short or damaged"),
    "cut_gz_of_cut.arpa.gz": (gzip.compress(_CUT_MID_SECTION.encode()), "in its 2-grams section, without the closing"),
    "nan.arpa": (ARPA.replace("-0.6\tcat", "nan\tcat").encode(),
                 r"nan\.arpa:10: the log10 probability and back-off must be numbers or -inf"),
    "inf_backoff.arpa": (ARPA.replace("\t-0.25", "\tinf").encode(), ":10: .* must be numbers or -inf"),
    "bad_count.arpa": (ARPA.replace("ngram 2=4", "ngram 2=four").encode(), r":4: expected 'ngram N=count'"),
    "bad_section.arpa": (ARPA.replace("\\2-grams:", "\\two-grams:").encode(), r":15: expected 'ngram N=count'"),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_damaged_or_truncated_arpa_is_an_error_naming_the_file(tmp_path, name):
    data, message = DAMAGED[name]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=message):
        read_arpa(tmp_path / name)


def test_missing_lm_or_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match=f"LM file {tmp_path / 'none.arpa'} does not exist: check the path"):
        read_arpa(tmp_path / "none.arpa")
    with pytest.raises(ValueError, match=f"LM file {tmp_path} is a directory, not a file"):
        read_arpa(tmp_path)


@pytest.mark.parametrize("argv, status, message", [
    (["build", "TMP/none.txt", "--out", "TMP/x.arpa"], 2, "argument text: TMP/none.txt does not exist"),
    (["build", "TMP", "--out", "TMP/x.arpa"], 2, "argument text: TMP is a directory"),
    (["build", "TMP/text.txt", "--out", "TMP/x.arpa", "--order", "0"], 2,
     "argument --order: the n-gram order is a whole number >= 1"),
    (["build", "TMP/latin1.txt", "--out", "TMP/x.arpa"], 1, "TMP/latin1.txt:2: not UTF-8 text (byte 0xe9 at byte 4"),
    (["build", "TMP/blank.txt", "--out", "TMP/x.arpa"], 1, "text TMP/blank.txt has no sentences"),
    (["build", "TMP/text.txt", "--out", "TMP"], 1, "--out TMP is a directory, not a file"),
])
def test_build_command_refuses_bad_files_before_counting(tmp_path, capsys, argv, status, message):
    (tmp_path / "text.txt").write_text("the cat\n")
    (tmp_path / "latin1.txt").write_bytes("the cat\ncaf\xe9\n".encode("latin-1"))
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(SystemExit) as info:
        main([a.replace("TMP", str(tmp_path)) for a in argv], prog="ctcrnn lm")
    err = capsys.readouterr().err
    assert info.value.code == status and f"ctcrnn lm build: error: {message.replace('TMP', str(tmp_path))}" in err, err
    assert not (tmp_path / "x.arpa").exists()


def test_witten_bell_by_hand(tmp_path):
    # Sentences "a b a" and "b": unigram counts a 2, b 2, </s> 2 (N = 6, 3 types), vocabulary of 4
    # predicted words (a, b, </s>, <unk>); every bigram context (<s>, a, b) has count 2 and 2 followers.
    lm = build_ngram_lm([["a", "b", "a"], ["b"]], order=2)
    write_arpa(lm, tmp_path / "wb.arpa")
    lm = read_arpa(tmp_path / "wb.arpa")
    p = {"a": 2.75 / 9, "b": 2.75 / 9, "</s>": 2.75 / 9, "<unk>": 0.75 / 9}
    for word, prob in p.items():
        assert math.exp(lm.log_prob(word)) == pytest.approx(prob, rel=1e-7)
    assert math.exp(lm.log_prob("a", ["<s>"])) == pytest.approx((1 + 2 * p["a"]) / 4, rel=1e-7)
    assert math.exp(lm.log_prob("</s>", ["a"])) == pytest.approx((1 + 2 * p["</s>"]) / 4, rel=1e-7)
    assert math.exp(lm.log_prob("a", ["a"])) == pytest.approx(0.5 * p["a"], rel=1e-7)  # unseen: γ(a) P(a)
    assert math.exp(lm.log_prob("<unk>", ["b"])) == pytest.approx(0.5 * p["<unk>"], rel=1e-7)


def test_built_model_is_normalised(tmp_path):
    g = torch.Generator().manual_seed(0)
    words = ["the", "cat", "dog", "sat", "on", "mat", "a", "ran"]
    text = [[words[i] for i in torch.randint(0, 8, (int(n),), generator=g)]
            for n in torch.randint(1, 8, (300,), generator=g)]
    write_arpa(build_ngram_lm(text, order=3), tmp_path / "lm.arpa")
    lm = read_arpa(tmp_path / "lm.arpa")
    predicted = torch.tensor([i for i, w in enumerate(lm.vocab) if w != "<s>"])
    for context in (["<s>"], ["<s>", "the"], ["cat", "dog"], ["on", "on"], ["zebra", "the"], ["mat"]):
        ids = torch.tensor(([-1] * 2 + lm.word_ids(context))[-2:])
        total = lm.score(ids.expand(len(predicted), 2), predicted).double().exp().sum()
        assert float(total) == pytest.approx(1.0, abs=1e-5)


def test_build_command(tmp_path):
    (tmp_path / "text.txt").write_text("the cat sat\nthe cat\n\n")
    main(["build", str(tmp_path / "text.txt"), "--order", "2", "--out", str(tmp_path / "w.arpa")])
    assert read_arpa(tmp_path / "w.arpa").log_prob("cat", ["the"]) == pytest.approx(
        build_ngram_lm([["the", "cat", "sat"], ["the", "cat"]], 2).log_prob("cat", ["the"]), abs=1e-6)
    main(["build", str(tmp_path / "text.txt"), "--order", "3", "--out", str(tmp_path / "c.arpa"), "--unit", "char"])
    chars = read_arpa(tmp_path / "c.arpa")
    assert {"t", "h", "e", "|", "c", "a", "s"} <= set(chars.vocab)
    assert chars.log_prob("|", ["h", "e"]) > chars.log_prob("a", ["h", "e"])  # "he" is always followed by "|"


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


# ---------------------------------------------------------------- fusion into the beam search
LABELS = ["-", "a", "c", "o", "t", "|"]
BAR = 5


def frames(rows: list[dict[str, float]]) -> torch.Tensor:
    """(1, T, 6) float64 log-probs: each row's labels get their probability, blank the rest."""
    p = torch.full((len(rows), len(LABELS)), 1e-3, dtype=torch.float64)
    for t, row in enumerate(rows):
        for label, prob in row.items():
            p[t, LABELS.index(label)] = prob
        p[t, 0] = max(1e-3, 1 - sum(row.values()))
    return (p / p.sum(-1, keepdim=True)).log().unsqueeze(0)


# Acoustically "cot cot" beats "cat cat" (0.5 vs 0.4 on the vowel frames).
COT = frames([{"c": .9}, {"o": .5, "a": .4}, {"t": .9}, {"|": .9}, {"c": .9}, {"o": .5, "a": .4}, {"t": .9}])
LENGTH = torch.tensor([COT.shape[1]])


def ctc_log_likelihood(log_probs, tokens):
    return -float(F.ctc_loss(log_probs[0], torch.tensor(tokens), LENGTH, torch.tensor([len(tokens)]),
                             reduction="sum"))


def sentence_log_prob(lm, units):
    context, total = ["<s>"], 0.0
    for unit in [*units, "</s>"]:
        total += lm.log_prob(unit, context[-(lm.order - 1):])
        context.append(unit)
    return total


def test_word_lm_scores_are_the_hand_computed_sums():
    lm = build_ngram_lm([["cat", "cat"], ["a", "cat"], ["the", "cat", "sat"]], order=2)
    plain = prefix_beam_search(COT, LENGTH, 16, labels=LABELS, word_delimiter=BAR)[0][0]
    assert plain.text == "cot cot"
    hyps = prefix_beam_search(COT, LENGTH, 16, labels=LABELS, word_delimiter=BAR, lm=lm, lm_weight=0.8,
                              word_bonus=0.3, nbest=3)[0]
    assert hyps[0].text == "cat cat"
    for hyp in hyps:
        words = hyp.text.split()
        assert hyp.lm_score == pytest.approx(0.8 * sentence_log_prob(lm, words) + 0.3 * len(words), abs=1e-5)
        assert hyp.am_score == pytest.approx(ctc_log_likelihood(COT, hyp.tokens), abs=1e-6)
        assert hyp.score == pytest.approx(hyp.am_score + hyp.lm_score)


def test_token_lm_scores_every_label():
    lm = build_ngram_lm([list("cat|cat"), list("cat")], order=3)
    hyps = prefix_beam_search(COT, LENGTH, 16, labels=LABELS, lm=lm, lm_weight=0.5, word_bonus=0.2, nbest=3)[0]
    assert hyps[0].text == "cat|cat"  # no word_delimiter given: text is the labels joined
    for hyp in hyps:
        units = [LABELS[t] for t in hyp.tokens]
        assert hyp.lm_score == pytest.approx(0.5 * sentence_log_prob(lm, units) + 0.2 * len(units), abs=1e-5)
        assert hyp.am_score == pytest.approx(ctc_log_likelihood(COT, hyp.tokens), abs=1e-6)


def test_bonus_alone_counts_words_or_tokens():
    words = prefix_beam_search(COT, LENGTH, 8, labels=LABELS, word_delimiter=BAR, word_bonus=0.25, nbest=4)[0]
    assert all(h.lm_score == pytest.approx(0.25 * len(h.text.split())) for h in words)
    tokens = prefix_beam_search(COT, LENGTH, 8, labels=LABELS, word_bonus=-0.5, nbest=4)[0]
    assert all(h.lm_score == pytest.approx(-0.5 * len(h.tokens)) for h in tokens)


def test_zero_lm_weight_changes_nothing():
    lm = build_ngram_lm([["cat"]], order=2)
    plain = prefix_beam_search(COT, LENGTH, 8, nbest=4)[0]
    fused = prefix_beam_search(COT, LENGTH, 8, nbest=4, labels=LABELS, word_delimiter=BAR, lm=lm, lm_weight=0.0)[0]
    assert [h.tokens for h in fused] == [h.tokens for h in plain]
    assert [h.score for h in fused] == pytest.approx([h.score for h in plain], abs=1e-9)


def test_unk_score_penalises_unknown_words_and_minus_inf_is_the_lms_lexicon():
    """"cot" is not an LM word: unk_score is added to each unknown word (token, for a token LM) on top of
    its <unk> probability; -inf allows only the LM's words, exactly as a lexicon of them does."""
    lm = build_ngram_lm([["cat", "cat"], ["a", "cat"], ["to", "cat"]], order=2)
    options = dict(labels=LABELS, word_delimiter=BAR, lm=lm, lm_weight=0.1, nbest=6, timestamps=False)
    plain = prefix_beam_search(COT, LENGTH, 16, **options)[0]
    penalised = prefix_beam_search(COT, LENGTH, 16, unk_score=-1.5, **options)[0]
    assert "cot" in plain[0].text.split() and penalised[0].text == "cat cat"
    for hyps, unk in ((plain, 0.0), (penalised, -1.5)):
        for hyp in hyps:
            words = hyp.text.split()
            unknown = sum(w not in lm.index for w in words)
            assert hyp.lm_score == pytest.approx(0.1 * sentence_log_prob(lm, words) + unk * unknown, abs=1e-5)
    forbidden = prefix_beam_search(COT, LENGTH, 16, unk_score=-math.inf, **options)[0]
    lexicon = prefix_beam_search(COT, LENGTH, 16, lexicon=["cat", "a", "to"], **options)[0]
    assert [h.tokens for h in forbidden] == [h.tokens for h in lexicon]
    assert [h.score for h in forbidden] == pytest.approx([h.score for h in lexicon], abs=1e-6)
    # Token LM: labels the LM never saw ("o") are the unknown units.
    token_lm = build_ngram_lm([list("cat|cat")], order=2)
    token = dict(labels=LABELS, lm=token_lm, lm_weight=0.2, timestamps=False)
    for unk in (0.0, -2.0):
        hyp = prefix_beam_search(COT, LENGTH, 16, unk_score=unk, **token)[0][0]
        units = [LABELS[t] for t in hyp.tokens]
        assert hyp.lm_score == pytest.approx(0.2 * sentence_log_prob(token_lm, units) + unk * units.count("o"),
                                             abs=1e-5)
    with pytest.raises(ValueError, match="must be <= 0"):
        prefix_beam_search(COT, LENGTH, 8, unk_score=1.0, **options)
    with pytest.raises(ValueError, match="needs an LM"):
        prefix_beam_search(COT, LENGTH, 4, labels=LABELS, word_delimiter=BAR, unk_score=-1.0)


def test_lexicon_excludes_other_words():
    lexicon = ["cat", "at", "a"]
    hyps = prefix_beam_search(COT, LENGTH, 16, labels=LABELS, word_delimiter=BAR, lexicon=lexicon, nbest=5)[0]
    assert hyps[0].text == "cat cat"
    assert all(set(h.text.split()) <= set(lexicon) for h in hyps)
    # The trie prunes "co" as soon as it appears, so even a single beam keeps "ca" alive.
    narrow = prefix_beam_search(COT, LENGTH, 1, labels=LABELS, word_delimiter=BAR, lexicon=lexicon)[0][0]
    assert narrow.text == "cat cat" and math.isfinite(narrow.score)
    with pytest.raises(ValueError, match="word_delimiter"):
        prefix_beam_search(COT, LENGTH, 4, labels=LABELS, lexicon=lexicon)


def test_lexicon_dead_end_returns_the_best_partial_hypothesis():
    """With 2 beams, both final prefixes ("ca" and "c") stop inside "cat", the lexicon's only word, so
    none may end: the hypothesis returned is the most probable of them, with its score still -inf (not
    an arbitrary beam). With 4 beams "cat" itself survives and wins."""
    log_probs = frames([{"c": .9}, {"a": .9}, {"t": .05}])
    options = dict(labels=LABELS, word_delimiter=BAR, lexicon=["cat"], timestamps=False)
    for _ in range(3):
        hyps = prefix_beam_search(log_probs, torch.tensor([3]), 2, nbest=2, **options)[0]
        assert [(h.text, h.score) for h in hyps] == [("ca", -math.inf)]
    wide = prefix_beam_search(log_probs, torch.tensor([3]), 4, **options)[0][0]
    assert wide.text == "cat" and wide.score == pytest.approx(math.log(.9 * .9 * .05), abs=0.05)


def test_hotword_bonus_flips_the_result():
    hyps = prefix_beam_search(COT, LENGTH, 16, labels=LABELS, word_delimiter=BAR, hotwords=["cat"],
                              hotword_bonus=1.0, nbest=3)[0]
    assert hyps[0].text == "cat cat"
    assert {h.text: h.lm_score for h in hyps}["cat cat"] == pytest.approx(2.0)
    assert all(h.lm_score == pytest.approx(h.text.split().count("cat")) for h in hyps)
    # "cat" is on the way to "cats" but never gets there: the partial bonus is taken back at the word end.
    partial = prefix_beam_search(COT, LENGTH, 16, labels=LABELS, word_delimiter=BAR, hotwords=["cats"],
                                 hotword_bonus=1.0, nbest=3)[0]
    assert [h.lm_score for h in partial] == pytest.approx([0.0, 0.0, 0.0])
    # A bonus too small to beat the acoustics leaves "cot cot" on top.
    weak = prefix_beam_search(COT, LENGTH, 16, labels=LABELS, word_delimiter=BAR, hotwords=["cat"],
                              hotword_bonus=0.1)[0][0]
    assert weak.text == "cot cot"


def test_token_lm_top1_agrees_with_flashlight(tmp_path):
    from ctcrnn.decoding.external import FlashlightDecoder  # flashlight-text is in the test extra: never skipped

    g = torch.Generator().manual_seed(0)
    labels = ["-"] + [f"g{i}" for i in range(1, 40)]
    chain = torch.randint(1, 40, (40, 3), generator=g)  # each gloss has three likely successors
    sentences = []
    for _ in range(400):
        token, sentence = int(torch.randint(1, 40, (1,), generator=g)), []
        for _ in range(int(torch.randint(3, 10, (1,), generator=g))):
            sentence.append(token)
            token = int(chain[token, torch.randint(0, 3, (1,), generator=g)])
        sentences.append(sentence)
    write_arpa(build_ngram_lm([[labels[t] for t in s] for s in sentences], order=3), tmp_path / "g.arpa")
    # Peaky outputs of the first 8 sentences; every other spike shares its mass with a random gloss.
    logits = torch.randn(8, 40, 40, generator=g)
    logits[..., 0] += 7
    for b, sentence in enumerate(sentences[:8]):
        for i, token in enumerate(sentence):
            logits[b, 1 + 4 * i, token] += 12
            if i % 2:
                logits[b, 1 + 4 * i, int(torch.randint(1, 40, (1,), generator=g))] += 11.5
    log_probs, lengths = logits.log_softmax(-1), torch.full((8,), 40)
    ours = prefix_beam_search(log_probs, lengths, 16, labels=labels, lm=tmp_path / "g.arpa", lm_weight=0.5)
    theirs = FlashlightDecoder(labels, beam_size=16, beam_threshold=1e9, lm=tmp_path / "g.arpa", lm_weight=0.5,
                               timestamps=False)(log_probs, lengths)
    assert [h[0].tokens for h in ours] == [h[0].tokens for h in theirs]
    plain = prefix_beam_search(log_probs, lengths, 16)
    assert [h[0].tokens for h in plain] != [h[0].tokens for h in ours]  # the LM changed something


def test_word_lm_with_lexicon_top1_agrees_with_flashlight(tmp_path):
    """flashlight's lexicon decoder (a lexicon file spelled with the labels, the delimiter as its silence,
    word bonus, word LM) against ctcrnn's on peaky character outputs whose every other letter is unsure."""
    from ctcrnn.decoding.external import FlashlightDecoder
    from tests.fixtures.decoding import BAR, LABELS, LEXICON, SENTENCES, WORD_LM

    write_arpa(WORD_LM, tmp_path / "w.arpa")
    # Each text ends with the delimiter: flashlight's lexicon spells every word closed by it.
    texts = ["|".join(s) + "|" for s in [*SENTENCES, ["cat", "a"], ["oat", "to"], ["tot", "cat"]]]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(len(texts), 40, len(LABELS), generator=g)
    logits[..., 0] += 6
    for b, text in enumerate(texts):
        for i, char in enumerate(text):
            logits[b, 2 + 4 * i, LABELS.index(char)] += 10
            if i % 2 and char != "|":
                logits[b, 2 + 4 * i, int(torch.randint(1, BAR, (1,), generator=g))] += 9.5
    log_probs, lengths = logits.log_softmax(-1), torch.full((len(texts),), 40)
    lexicon = [*sorted(LEXICON), "dog"]  # "dog" cannot be spelled with these labels: left out of the file
    found = []
    for weight, bonus in ((1.0, 0.0), (0.5, 1.0), (2.0, -0.5)):
        ours = prefix_beam_search(log_probs, lengths, 64, nbest=2, labels=LABELS, word_delimiter=BAR, lm=WORD_LM,
                                  lm_weight=weight, word_bonus=bonus, lexicon=lexicon, timestamps=False)
        theirs = FlashlightDecoder(LABELS, beam_size=64, beam_threshold=1e9, lm=tmp_path / "w.arpa",
                                   lm_weight=weight, word_bonus=bonus, word_delimiter=BAR, lexicon=lexicon,
                                   timestamps=False)(log_probs, lengths)
        # Compared where both searches can reach the same best: ctcrnn's ends with the delimiter (ctcrnn also
        # closes a last word at the end, flashlight only at a delimiter) and leads its runner-up by 0.5 (the
        # two prune differently, so near ties may go either way). As words: flashlight puts its silence, the
        # delimiter, at both ends of every hypothesis.
        clear = [b for b, (best, second) in enumerate(ours)
                 if best.tokens[-1] == BAR and best.score > second.score + 0.5]
        assert len(clear) >= 5, (weight, bonus)  # (inputs drawn with seeds 0-11 all pass the comparison below)
        assert [ours[b][0].text for b in clear] == [theirs[b][0].text for b in clear], (weight, bonus)
        found.append([h[0].text for h in ours])
    assert found[0] == [text.replace("|", " ").strip() for text in texts]  # weight 1: the spoken words
    assert found[2] != found[0]  # a heavy LM with a word penalty drops or changes words: the LM matters


def test_flashlight_decoder_refuses_what_flashlight_cannot_do():
    from ctcrnn.decoding.external import FlashlightDecoder

    with pytest.raises(ValueError, match="unique, non-empty labels without whitespace"):
        FlashlightDecoder(["-", "a", "a b"])
    with pytest.raises(ValueError, match="lexicon-free decoder has no word bonus"):
        FlashlightDecoder(["-", "a", "|"], word_bonus=1.0)
    with pytest.raises(ValueError, match="a lexicon needs word_delimiter"):
        FlashlightDecoder(["-", "a", "|"], lexicon=["a"])


# ---------------------------------------------------------------- tune-lm --decoder flashlight
def test_tune_lm_with_flashlight_and_no_lexicon_does_not_fail_after_running_the_model(monkeypatch, tmp_path):
    """`ctcrnn tune-lm --decoder flashlight` without --lexicon: the default word-bonus grid (-1, 0, 1, 2)
    holds bonuses that flashlight's lexicon-free decoder rejects, and tune_lm finds out only after running
    the model over the whole validation split. It must either work or refuse before the model runs."""
    from ctcrnn.evaluation import lm_tuning  # flashlight-text is in the test extra: this runs, never skipped

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

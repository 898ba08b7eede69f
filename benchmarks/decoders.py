"""Time CTC beam-search decoders on the same synthetic CTC outputs, in one run: ctcrnn's batched prefix
beam search against flashlight-text (through torchaudio) and pyctcdecode where installed, without an LM
and with a 3-gram built by ``ctcrnn.decoding.lm`` from generated text. Prints seconds for the batch (best of
``--repeats``, after one warm-up utterance), ms per utterance, top-1 agreement with ctcrnn and the token
error rate (TER, %) against the true transcripts.

    python benchmarks/decoders.py [--batch 16] [--steps 500] [--vocab 29 1296] [--beams 8 16 64]
                                  [--lm none 3gram] [--decoders ctcrnn flashlight pyctcdecode]
                                  [--token-topk K] [--token-threshold LOGP] [--skip-blank 0.999]
                                  [--threads 1] [--repeats 1]
                                  [--blank-margin 3]

Two label sets: V = 29 (blank, a-z, apostrophe, "|" between words; the LM scores words, with the LM's
words as lexicon for flashlight, which has no lexicon-free word LM, and for ctcrnn, for a like-for-like
search) and V = 1296 (blank + 1295 gloss-like tokens, each token a word of a token-level LM; pyctcdecode
is run without an LM there, as it spells words with single characters). Transcripts come from a sparse
random word chain, so an n-gram LM helps; their CTC outputs are peaky (blank ≈ 0.9 between spikes) and on
15% of the spikes a wrong token gets nearly as much mass, which the LM can correct.
Each decoder runs with its own defaults except the beam (and ``--token-topk`` / ``--token-threshold``
where given: the latter is ctcrnn's ``token_prune_threshold`` and pyctcdecode's ``token_min_logp``, -5 by
default there, so ``--token-threshold -5`` gives both the same token floor); timestamps
are off, as only ctcrnn computes them for every hypothesis. ``--skip-blank`` adds a "ctcrnn+skip" row:
frames whose blank probability exceeds the threshold count as certain blanks. With the word LM and
pyctcdecode, a "ctcrnn-nolex" row runs ctcrnn like pyctcdecode: no lexicon, unknown words at -10.
"""
import argparse
import math
import string
import tempfile
import time
from pathlib import Path

import torch

from ctcrnn.decoding.decoders import BeamSearchDecoder
from ctcrnn.decoding.lm import build_ngram_lm, write_arpa
from ctcrnn.metrics import error_rate

CHAR_LABELS = ["-", *string.ascii_lowercase, "'", "|"]


def word_chain(num_words: int, make_word, seed: int):
    """(words, sample(n_sentences, rng)): a vocabulary and a sampler of sentences in which each word is
    followed by one of 6 favourite successors (80%) or any word."""
    g = torch.Generator().manual_seed(seed)
    words = sorted({make_word(g) for _ in range(num_words)})
    successors = torch.randint(0, len(words), (len(words), 6), generator=g)

    def sample(count: int, rng: torch.Generator) -> list[list[str]]:
        sentences = []
        for _ in range(count):
            current, sentence = int(torch.randint(0, len(words), (1,), generator=rng)), []
            for _ in range(int(torch.randint(4, 30, (1,), generator=rng))):
                sentence.append(words[current])
                favourite = torch.rand(1, generator=rng).item() < 0.8
                current = (int(successors[current, torch.randint(0, 6, (1,), generator=rng)]) if favourite
                           else int(torch.randint(0, len(words), (1,), generator=rng)))
            sentences.append(sentence)
        return sentences
    return words, sample


def random_spelling(g: torch.Generator) -> str:
    length = int(torch.randint(2, 9, (1,), generator=g))
    return "".join(string.ascii_lowercase[int(i)] for i in torch.randint(0, 26, (length,), generator=g))


def peaky_outputs(transcripts: list[list[int]], steps: int, classes: int, seed: int, blank_margin: float = 3.0):
    """(log_probs (B, T, V), lengths (B,), the transcripts actually placed): one spike per token at
    least two frames apart (so repeats stay separable), blank elsewhere (its logit ``blank_margin`` +
    ln V above the others); 15% of spikes confusable (a second token nearly as likely). The spike logits
    are relative to the blank's, so the spike frames do not change with ``blank_margin``."""
    g = torch.Generator().manual_seed(seed)
    batch = len(transcripts)
    logits = torch.randn(batch, steps, classes, generator=g)
    logits[..., 0] += math.log(classes) + blank_margin
    lengths, placed = torch.zeros(batch, dtype=torch.long), []
    for b, tokens in enumerate(transcripts):
        tokens = tokens[: (steps - 2) // 3]
        frame = int(torch.randint(0, 3, (1,), generator=g))
        for token in tokens:
            logits[b, frame, token] += math.log(classes) + blank_margin + 3  # 0.95 of the frame
            if torch.rand(1, generator=g).item() < 0.15:
                logits[b, frame, int(torch.randint(1, classes, (1,), generator=g))] += math.log(classes) + blank_margin + 2.7
            frame += int(torch.randint(2, 4, (1,), generator=g))
        lengths[b] = min(steps, frame + int(torch.randint(0, 6, (1,), generator=g)))
        placed.append(tokens)
    return logits.log_softmax(-1), lengths, placed


def setup(vocab: int, batch: int, steps: int, workdir: Path, seed: int, blank_margin: float = 3.0):
    """Labels, word delimiter, log-probs, lengths, true token sequences, ARPA path and lexicon."""
    rng = torch.Generator().manual_seed(seed + 1)
    if vocab == len(CHAR_LABELS):
        labels, delimiter = CHAR_LABELS, CHAR_LABELS.index("|")
        words, sample = word_chain(600, random_spelling, seed)
        index = {c: i for i, c in enumerate(labels)}
        transcripts = [[index[c] for c in "|".join(s)] for s in sample(batch, rng)]
    else:
        labels, delimiter = ["-"] + [f"g{i:04d}" for i in range(1, vocab)], None
        words, sample = word_chain_over(labels[1:], seed)
        transcripts = [[labels.index(w) for w in s] for s in sample(batch, rng)]
    arpa = workdir / f"lm{vocab}.arpa"
    write_arpa(build_ngram_lm(sample(5000, torch.Generator().manual_seed(seed + 2)), order=3), arpa)
    log_probs, lengths, truth = peaky_outputs(transcripts, steps, vocab, seed + 3, blank_margin)
    return labels, delimiter, log_probs, lengths, truth, arpa, words


def word_chain_over(words: list[str], seed: int):
    """word_chain over a fixed vocabulary (the gloss-like labels)."""
    pool = iter(words)
    return word_chain(len(words), lambda g: next(pool), seed)


def decoders(names, labels, delimiter, beam, arpa, lexicon, topk, threshold, threads, skip_blank):
    """name -> decoder, for the decoders installed. arpa None: no LM."""
    word_lm = arpa is not None and delimiter is not None
    fusion = {}
    if arpa is not None:
        # flashlight's lexicon-free (token LM) decoder has no bonus, so the token LM runs without one.
        fusion = {"lm": str(arpa), "lm_weight": 0.5, "word_bonus": 1.0 if word_lm else 0.0}
    made = {}
    if "ctcrnn" in names:
        for name, skip in (("ctcrnn", None), ("ctcrnn+skip", skip_blank)):
            if name == "ctcrnn" or skip is not None:
                made[name] = BeamSearchDecoder(beam, labels=labels, word_delimiter=delimiter, timestamps=False,
                                               token_prune_topk=topk, token_prune_threshold=threshold,
                                               skip_blank_threshold=skip,
                                               num_threads=threads, lexicon=lexicon if word_lm else None, **fusion)
    if "flashlight" in names:
        try:
            from ctcrnn.decoding.external import FlashlightDecoder
            made["flashlight"] = FlashlightDecoder(labels, beam_size=beam, beam_size_token=topk,
                                                   word_delimiter=delimiter, timestamps=False,
                                                   lexicon=lexicon if word_lm else None, **fusion)
        except ImportError as error:
            print(f"  (flashlight skipped: {error})")
    if "ctcrnn" in names and "pyctcdecode" in names and word_lm:
        # pyctcdecode's own settings: no lexicon, unknown words at its unk_score_offset of -10.
        made["ctcrnn-nolex"] = BeamSearchDecoder(beam, labels=labels, word_delimiter=delimiter, timestamps=False,
                                                 token_prune_topk=topk, token_prune_threshold=threshold,
                                                 num_threads=threads, unk_score=-10.0,
                                                 **fusion)
    if "pyctcdecode" in names and not (arpa is not None and delimiter is None):
        try:
            from ctcrnn.decoding.external import PyCTCDecoder
            floor = {} if threshold is None else {"token_min_logp": threshold}
            made["pyctcdecode"] = PyCTCDecoder(labels, beam_size=beam, word_delimiter=delimiter,
                                               timestamps=False, **floor, **fusion)
        except ImportError as error:
            print(f"  (pyctcdecode skipped: {error})")
    return made


def normalised(tokens: list[int], delimiter: int | None) -> list[int]:
    """Tokens without leading, trailing or repeated delimiters (pyctcdecode strips them; flashlight's
    lexicon decoder may add a final one)."""
    if delimiter is None:
        return tokens
    words = " ".join(str(t) if t != delimiter else "|" for t in tokens).split("|")
    kept = [w.split() for w in words if w.split()]
    return [t for i, w in enumerate(kept) for t in ([delimiter] if i else []) + [int(x) for x in w]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--vocab", type=int, nargs="+", default=[29, 1296], help="29 (characters) or any size "
                        "for gloss-like tokens")
    parser.add_argument("--beams", type=int, nargs="+", default=[8, 16, 64])
    parser.add_argument("--lm", nargs="+", default=["none", "3gram"], choices=["none", "3gram"])
    parser.add_argument("--decoders", nargs="+", default=["ctcrnn", "flashlight", "pyctcdecode"])
    parser.add_argument("--token-topk", type=int, default=None,
                        help="tokens per frame for ctcrnn and flashlight (default: each decoder's own)")
    parser.add_argument("--token-threshold", type=float, default=None,
                        help="log-prob floor of a frame's tokens for ctcrnn and pyctcdecode (default: ctcrnn none, "
                             "pyctcdecode -5)")
    parser.add_argument("--skip-blank", type=float, default=None,
                        help="also run ctcrnn with skip_blank_threshold set to this probability")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for ctcrnn")
    parser.add_argument("--repeats", type=int, default=1, help="time each decoder this many times, keep the best")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blank-margin", type=float, default=3.0,
                        help="blank logit minus ln V above the others between spikes: 3 gives blank ≈ 0.93, "
                             "8 gives ≈ 0.9994 (closer to a trained model's outputs)")
    args = parser.parse_args()
    print(f"B={args.batch} T={args.steps} threads={args.threads} torch {torch.__version__}")
    print(f"{'V':>5} {'lm':>6} {'beam':>4}  {'decoder':<13}{'batch (s)':>10}{'ms/utt':>9}{'agree':>7}{'TER %':>7}")
    with tempfile.TemporaryDirectory() as workdir:
        for vocab in args.vocab:
            labels, delimiter, log_probs, lengths, truth, arpa, words = setup(
                vocab, args.batch, args.steps, Path(workdir), args.seed, args.blank_margin)
            truth = [normalised(t, delimiter) for t in truth]
            for lm in args.lm:
                for beam in args.beams:
                    made = decoders(args.decoders, labels, delimiter, beam, arpa if lm == "3gram" else None,
                                    words, args.token_topk, args.token_threshold, args.threads, args.skip_blank)
                    reference = None
                    for name, decoder in made.items():
                        decoder(log_probs[:1], lengths[:1])  # warm-up: lazily built tables, caches
                        seconds = math.inf
                        for _ in range(args.repeats):
                            start = time.perf_counter()
                            hyps = decoder(log_probs, lengths)
                            seconds = min(seconds, time.perf_counter() - start)
                        top = [normalised(h[0].tokens, delimiter) for h in hyps]
                        reference = reference if reference is not None else top
                        agree = sum(a == b for a, b in zip(top, reference)) / len(top)
                        print(f"{vocab:>5} {lm:>6} {beam:>4}  {name:<13}{seconds:>10.3f}"
                              f"{1000 * seconds / args.batch:>9.1f}{agree:>7.2f}{error_rate(truth, top):>7.3f}")


if __name__ == "__main__":
    main()

"""Back-off n-gram language models: read and write ARPA files, score many (context, word) pairs at once on
any device, and build a model from plain text.

ARPA files store log10 probabilities and back-off weights; :meth:`NGramLM.score` returns *natural* logs,
the unit of CTC log-probs, so a decoder adds ``lm_weight * score`` to acoustic log-probs directly (the
same convention as pyctcdecode's ``alpha``; flashlight-text's ``lm_weight`` multiplies log10 scores, so
theirs = ours × ln 10).

The builder uses interpolated Witten-Bell smoothing:

    P(w | h) = (c(h w) + t(h) · P(w | h')) / (c(h) + t(h)),   h' = h without its oldest word,

where c counts occurrences and t(h) is the number of distinct words seen after h. At the unigram level
P(w | h') is uniform over the vocabulary (plus ``</s>`` and ``<unk>``), so ``<unk>`` gets a small share.
Why Witten-Bell: it has nothing to tune and is defined on any text. Kneser-Ney and absolute discounting
estimate their discount from counts of counts (n1/(n1 + 2 n2)), which are zero or noisy on the small
corpora this toolkit builds LMs from (a few thousand transcripts, character LMs); use KenLM's ``lmplz``
for large corpora and read its ARPA file here. An interpolated model is written exactly as a back-off
model: a seen n-gram stores its interpolated probability, and a context stores γ(h) = t(h)/(c(h) + t(h)).

    python -m ctcrnn.decoding.lm build text.txt --order 3 --out lm.arpa [--unit char --space "|"]

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import argparse
import gzip
import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..paths import check_output, input_file_problem
from . import hashing

__all__ = ["LN10", "NGramLM", "build_ngram_lm", "read_arpa", "write_arpa"]

LN10 = math.log(10.0)
BOS, EOS, UNK = "<s>", "</s>", "<unk>"
MISSING_UNK_LOG10 = -100.0  # KenLM's probability for unknown words when the file has no <unk>


@dataclass
class NGramLM:
    """A back-off n-gram model. ``ngrams[n-1]`` holds the n-grams as word-id rows (M, n) with their log10
    probabilities (M,) and log10 back-off weights (M,) (0 where the file gives none)."""
    vocab: list[str]
    ngrams: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    _tables: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.index = {word: i for i, word in enumerate(self.vocab)}
        for name in (BOS, EOS, UNK):
            if name not in self.index:
                raise ValueError(f"the LM vocabulary has no {name}; every ARPA model needs {BOS}, {EOS} and {UNK}")
        self.bos, self.eos, self.unk = self.index[BOS], self.index[EOS], self.index[UNK]
        # In LM states, the id that stands for "these words are not a listed n-gram" (see _tables_on).
        self.none_id = len(self.vocab) + sum(len(ids) for ids, _, _ in self.ngrams[1:])

    @property
    def order(self) -> int:
        return len(self.ngrams)

    def word_ids(self, words: Iterable[str]) -> list[int]:
        """Vocabulary ids, ``<unk>`` for words the model does not know."""
        return [self.index.get(word, self.unk) for word in words]

    def score(self, context: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """Natural-log P(word | context) with back-off, for every pair at once.

        context: (*S, N) word ids, oldest first, -1 for "no word" (before ``<s>``); words: ids
        broadcastable to S. Returns float32 of the broadcast shape, on the inputs' device: the longest
        listed n-gram ending in the word, plus the back-off weights of every longer context suffix.
        """
        return self.score_after(*self.context_state(context), words)

    # A decoder keeps, per hypothesis, a *state*: for m = 1 .. order − 1 the id of the m most recent words
    # as a listed m-gram (``none_id`` when they are not listed; see _tables_on for the ids), plus, for
    # n = 1 .. order, the sum of the ln back-off weights of the context suffixes longer than n − 1 words.
    # Appending a word updates it with one sorted-table search for all orders at once, and scoring a word
    # needs one more: no hashing, all exact.
    def start_state(self, shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """State of a sentence start (``<s>``), for a batch of the given shape."""
        empty = torch.full((*shape, self.order - 1), self.none_id, dtype=torch.long, device=device)
        return self.advance_state(empty, torch.full(shape, self.bos, dtype=torch.long, device=device))

    def context_state(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """State after context word ids (*S, N), oldest first, -1 for "no word" (any N: only the last
        order − 1 words matter)."""
        rows = torch.full((*context.shape[:-1], self.order - 1), self.none_id, dtype=torch.long, device=context.device)
        state = rows, self._backoff_sums(rows)
        for column in range(context.shape[-1]):
            word = context[..., column]
            pushed = self.advance_state(state[0], word.clamp(min=0))
            state = tuple(torch.where((word >= 0).unsqueeze(-1), new, old) for new, old in zip(pushed, state))
        return state

    def advance_state(self, rows: torch.Tensor, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """State after appending ``words`` (*S) to states with rows (*S, order − 1)."""
        if self.order == 1:
            return rows, self._backoff_sums(rows)
        t = self._tables_on(words.device)
        # The newest word alone is the unigram with its id; (older m − 1 words) + word is listed iff its
        # key, (id of the older part) × W + word, is: all orders in one search.
        found, at = hashing.lookup(t.keys, rows[..., :-1] * len(self.vocab) + words.unsqueeze(-1))
        longer = torch.where(found, at + len(self.vocab), self.none_id)
        rows = torch.cat([words.unsqueeze(-1), longer], -1)
        return rows, self._backoff_sums(rows)

    def score_after(self, rows: torch.Tensor, backoff_sums: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """:meth:`score` from a state: the unigram (always listed) plus every back-off, then each longer
        listed n-gram (context id × W + word) overrides with its probability plus the longer back-offs."""
        t = self._tables_on(words.device)
        result = hashing.take(t.unigram_logp, words) + backoff_sums[..., 0]
        if self.order == 1:
            return result
        found, at = hashing.lookup(t.keys, rows * len(self.vocab) + words.unsqueeze(-1))  # (*S, order − 1)
        longer = hashing.take(t.logp, at) + backoff_sums[..., 1:]
        for n in range(self.order - 1):
            result = torch.where(found[..., n], longer[..., n], result)
        return result

    def max_log_prob(self, word: int | None = None) -> float:
        """An upper bound of every :meth:`score` (of ``word``'s scores only, if given): the largest listed
        log-prob (of an n-gram ending in ``word``) plus every order's largest positive back-off (ARPA
        files may hold back-off weights above 1)."""
        t = self._tables_on(torch.device("cpu"))
        vocab = len(self.vocab)
        unigram, ngram = t.unigram_logp, t.logp[:-1]  # the n-gram table ends with the sentinel's dummy entry
        if word is not None:
            unigram, ngram = unigram[word:word + 1], ngram[t.keys[:-1] % vocab == word]
        listed = torch.cat([unigram, ngram])
        listed = listed[torch.isfinite(listed)]
        if not len(listed):
            return -math.inf
        return float(listed.max()) + sum(max(0.0, float(t.backoff[a:b].max())) for a, b in t.order_ids[:-1] if b > a)

    def log_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """Natural-log P(word | context) for words given as strings (``<s>`` may start the context)."""
        ids = [-1] * (self.order - 1) + self.word_ids(context)
        context_ids = torch.tensor(ids[len(ids) - (self.order - 1):], dtype=torch.long)
        return float(self.score(context_ids, torch.tensor(self.word_ids([word])[0])))

    def _backoff_sums(self, rows: torch.Tensor) -> torch.Tensor:
        """(*S, order): entry n − 1 sums the ln back-offs of the listed context suffixes of ≥ n words
        (``none_id`` rows add 0): one gather and one product with a triangle of ones."""
        if self.order == 1:
            return torch.zeros((*rows.shape[:-1], 1), device=rows.device)
        t = self._tables_on(rows.device)
        backoffs = hashing.take(t.backoff, rows)
        if t.finite_backoffs:
            return backoffs @ t.suffix_sums
        # A back-off of log 0 would make the product NaN (-inf · 0): sum the suffixes one by one.
        return F.pad(backoffs.flip(-1).cumsum(-1).flip(-1), (0, 1))

    def _tables_on(self, device: torch.device) -> _Tables:
        """Lookup tables on ``device``, built once per device. Ids: word w (its unigram) is w; the n-grams
        of orders 2, 3, ... follow, each order sorted by key, where an n-gram's key is (id of its first
        n − 1 words) × W + last word, an exact integer. Ids grow with the order, so keys do too and the
        per-order tables joined are one sorted table, searched for all orders at once; an n-gram's id
        is W + its position there."""
        if device not in self._tables:
            vocab = len(self.vocab)
            ids, logp10, bo10 = self.ngrams[0]
            unigram = torch.full((vocab,), -math.inf, dtype=torch.float64)
            backoffs = [torch.zeros(vocab, dtype=torch.float64)]
            unigram[ids[:, 0]], backoffs[0][ids[:, 0]] = logp10 * LN10, bo10 * LN10
            keys, logps, order_ids, first_id = [], [], [(0, vocab)], vocab
            for n, (ids, logp10, bo10) in enumerate(self.ngrams[1:], start=2):
                if (first_id + len(ids) + 1) * vocab >= 2 ** 62:
                    raise ValueError(f"the LM's n-grams up to order {n} × vocabulary exceed 2^62 keys")
                joined = torch.cat(keys) if keys else torch.empty(0, dtype=torch.long)
                prefix = ids[:, 0]
                for k in range(1, n - 1):
                    found, at = hashing.lookup(torch.cat([joined, joined.new_tensor([hashing.SENTINEL])]),
                                               prefix * vocab + ids[:, k])
                    if not bool(found.all()):
                        raise ValueError(f"the LM lists {n}-grams whose first {k + 1} words are not a "
                                         f"{k + 1}-gram: the ARPA file is incomplete")
                    prefix = at + vocab
                sorted_keys, order = (prefix * vocab + ids[:, n - 1]).sort()
                if bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
                    raise ValueError(f"the LM lists some {n}-gram twice")
                keys.append(sorted_keys)
                logps.append((logp10 * LN10)[order])
                backoffs.append((bo10 * LN10)[order])
                order_ids.append((first_id, first_id + len(ids)))
                first_id += len(ids)
            backoffs.append(torch.zeros(1, dtype=torch.float64))  # none_id
            # suffix_sums[m − 1, n − 1] = 1 where m ≥ n: back-offs (order − 1) @ it = sums (order).
            m, n = torch.arange(1, self.order).unsqueeze(1), torch.arange(1, self.order + 1).unsqueeze(0)
            backoff = torch.cat(backoffs).float()
            tables = _Tables(
                unigram_logp=unigram.float(),
                keys=torch.cat([*keys, torch.tensor([hashing.SENTINEL])]),
                logp=torch.cat([*logps, torch.zeros(1, dtype=torch.float64)]).float(),  # dummy for the sentinel
                backoff=backoff,
                suffix_sums=(m >= n).float(),
                order_ids=order_ids,
                finite_backoffs=bool(torch.isfinite(backoff).all()))
            self._tables[device] = tables.to(device)
        return self._tables[device]


@dataclass
class _Tables:
    """:meth:`NGramLM._tables_on`'s tables: ``unigram_logp`` (W,) by word id; ``keys`` (M + 1,) of every
    n-gram of order ≥ 2, sorted, closed by the sentinel, with ``logp`` (M + 1,) beside them; ``backoff``
    (W + M + 1,) by id (0 for none_id); ``suffix_sums`` (order − 1, order); ``order_ids``: the id range
    of each order; ``finite_backoffs``: no back-off is log 0. Log-probs and back-offs in natural logs,
    float32."""
    unigram_logp: torch.Tensor
    keys: torch.Tensor
    logp: torch.Tensor
    backoff: torch.Tensor
    suffix_sums: torch.Tensor
    order_ids: list[tuple[int, int]]
    finite_backoffs: bool

    def to(self, device: torch.device) -> _Tables:
        return _Tables(*(getattr(self, f).to(device) for f in ("unigram_logp", "keys", "logp", "backoff",
                                                                "suffix_sums")), self.order_ids, self.finite_backoffs)


def read_arpa(path: str | Path) -> NGramLM:
    """Read an ARPA back-off model (``\\data\\``, ``\\N-grams:`` sections, ``\\end\\``), plain or gzipped
    (``.arpa.gz``, as LibriSpeech ships its LMs). A model without ``<unk>`` gets one with log10
    probability -100, as KenLM does. Anything wrong is a ValueError naming the file (and line): a missing
    or unreadable file, a folder, a KenLM binary, a damaged or cut-short gzip stream, a file that ends
    before ``\\end\\`` (truncated), a line that does not parse, NaN or +inf numbers, wrong n-gram counts."""
    path = Path(path)
    problem = input_file_problem(path)
    if problem:
        raise ValueError(f"LM file {problem}")
    expected: dict[int, int] = {}
    rows: dict[int, list[tuple[list[str], float, float]]] = defaultdict(list)
    section = None  # None before \data\, 0 inside it, n inside \n-grams:
    ended, number = False, 0
    with path.open("rb") as raw:
        head = raw.read(16)
    if head.startswith(b"mmap lm "):
        raise ValueError(f"{path} is a KenLM binary: ctcrnn's own decoder reads ARPA text (the file the binary "
                         "was built from); --decoder flashlight or pyctcdecode read KenLM binaries")
    opener = gzip.open if head.startswith(b"\x1f\x8b") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, raw_line in _numbered_lines(handle, path):
                line = raw_line.strip()
                if not line:
                    continue
                if not raw_line.endswith("\n") and line != "\\end\\":
                    break  # a last line cut off mid-way: reported below as a truncated file
                if line == "\\data\\":
                    section = 0
                elif line == "\\end\\":
                    ended = True
                    break
                elif line.startswith("\\") and line.endswith("-grams:"):
                    section = _header_number(line[1:-len("-grams:")], line, path, number)
                elif section == 0 and line.startswith("ngram "):
                    n, _, count = line[len("ngram "):].partition("=")
                    expected[_header_number(n, line, path, number)] = _header_number(count, line, path, number)
                elif section:
                    rows[section].append(_ngram_line(line, section, path, number))
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:  # EOFError: the stream ends mid-way (cut short)
        raise ValueError(f"{path}: the gzip data is cut short or damaged ({e}; {number} lines read): the file is "
                         "truncated or corrupt; copy or download it again") from None
    if not expected:
        raise ValueError(f"{path} has no \\data\\ section with 'ngram N=count' lines: is it an ARPA file?")
    if not ended:
        where = f"in its {section}-grams section" if section else "before its first n-gram section"
        raise ValueError(f"{path} ends after line {number}, {where}, without the closing \\end\\ line: the file "
                         "is truncated (cut short while copying or writing); copy or build it again")
    for n, count in expected.items():
        if len(rows[n]) != count:
            raise ValueError(f"{path}: the header announces {count} {n}-grams but the file lists {len(rows[n])}")
    vocab = [words[0] for words, _, _ in rows[1]]
    if UNK not in vocab:
        vocab.append(UNK)
        rows[1].append(([UNK], MISSING_UNK_LOG10, 0.0))
    index = {word: i for i, word in enumerate(vocab)}
    ngrams = []
    for n in range(1, max(expected) + 1):
        try:
            ids = torch.tensor([[index[w] for w in words] for words, _, _ in rows[n]], dtype=torch.long)
        except KeyError as error:
            raise ValueError(f"{path}: a {n}-gram uses {error.args[0]!r}, which is not a 1-gram") from None
        ngrams.append((ids.reshape(-1, n), torch.tensor([p for _, p, _ in rows[n]], dtype=torch.float64),
                       torch.tensor([b for _, _, b in rows[n]], dtype=torch.float64)))
    return NGramLM(vocab, ngrams)


def _header_number(text: str, line: str, path: Path, number: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{path}:{number}: expected 'ngram N=count' or '\\N-grams:' with whole numbers, got {line!r}")
    return value


def _ngram_line(line: str, order: int, path: Path, number: int) -> tuple[list[str], float, float]:
    """(words, log10 probability, log10 back-off) of one line of the ``order``-grams section."""
    fields = line.split()
    if len(fields) not in (order + 1, order + 2):
        raise ValueError(f"{path}:{number}: a {order}-gram line needs a log10 probability, "
                         f"{order} words and an optional back-off, got {line!r}")
    try:
        logp, backoff = float(fields[0]), float(fields[order + 1]) if len(fields) == order + 2 else 0.0
    except ValueError:
        raise ValueError(f"{path}:{number}: expected numbers for the log10 probability and back-off, "
                         f"got {line!r}") from None
    # -inf is a valid log10 of 0; NaN or +inf would turn every score they reach into NaN or +inf.
    if math.isnan(logp) or math.isnan(backoff) or logp == math.inf or backoff == math.inf:
        raise ValueError(f"{path}:{number}: the log10 probability and back-off must be numbers or -inf, "
                         f"got {line!r}")
    return fields[1:order + 1], logp, backoff


def _numbered_lines(handle, path: Path):
    """(line number, line) of a text file, with a clear error where it is not UTF-8 text."""
    number = 0
    try:
        for number, line in enumerate(handle, start=1):
            yield number, line
    except UnicodeDecodeError:
        raise ValueError(f"{path}:{number + 1}: not UTF-8 text: is it an ARPA file?") from None


def write_arpa(lm: NGramLM, path: str | Path) -> None:
    """Write ``lm`` as an ARPA file (9 significant digits, enough to re-read the same model)."""
    with Path(path).open("w", encoding="utf-8") as out:
        out.write("\\data\\\n")
        out.writelines(f"ngram {n}={len(ids)}\n" for n, (ids, _, _) in enumerate(lm.ngrams, start=1))
        for n, (ids, logp, bo) in enumerate(lm.ngrams, start=1):
            out.write(f"\n\\{n}-grams:\n")
            for row, p, b in zip(ids.tolist(), logp.tolist(), bo.tolist()):
                words = " ".join(lm.vocab[i] for i in row)
                out.write(f"{p:.9g}\t{words}" + (f"\t{b:.9g}" if b != 0.0 else "") + "\n")
        out.write("\n\\end\\\n")


def build_ngram_lm(sentences: Iterable[Sequence[str]], order: int = 3) -> NGramLM:
    """Interpolated Witten-Bell n-gram model of ``sentences`` (each a sequence of words), as documented
    at the top of this file. Each sentence is wrapped in ``<s>`` ... ``</s>``."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    counts = [Counter() for _ in range(order)]  # counts[n-1][(w1..wn)]
    for sentence in sentences:
        words = [BOS, *sentence, EOS]
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                gram = tuple(words[i:i + n])
                if gram[-1] != BOS:  # <s> is a context, never predicted
                    counts[n - 1][gram] += 1
    predicted = sorted({gram[0] for gram in counts[0]} | {EOS, UNK})
    # Totals and distinct followers of each context, per order.
    context_total, followers = [Counter() for _ in range(order)], [Counter() for _ in range(order)]
    for n in range(1, order + 1):
        for gram, count in counts[n - 1].items():
            context_total[n - 1][gram[:-1]] += count
            followers[n - 1][gram[:-1]] += 1

    def gamma(n: int, context: tuple) -> float:
        total, distinct = context_total[n - 1][context], followers[n - 1][context]
        return distinct / (total + distinct)

    memo: dict[tuple, float] = {}

    def prob(gram: tuple) -> float:
        """Interpolated P(gram[-1] | gram[:-1])."""
        if gram not in memo:
            n, context = len(gram), gram[:-1]
            lower = 1.0 / len(predicted) if n == 1 else prob(gram[1:])
            total, distinct = context_total[n - 1][context], followers[n - 1][context]
            memo[gram] = (counts[n - 1][gram] + distinct * lower) / (total + distinct) if total else lower
        return memo[gram]

    vocab = [BOS] + predicted
    index = {word: i for i, word in enumerate(vocab)}
    ngrams = []
    for n in range(1, order + 1):
        grams = sorted(set(counts[n - 1]) | ({(w,) for w in predicted} | {(BOS,)} if n == 1 else set()))
        logp = [-99.0 if gram == (BOS,) else math.log10(prob(gram)) for gram in grams]
        backoff = [math.log10(gamma(n + 1, gram)) if n < order and context_total[n][gram] else 0.0
                   for gram in grams]
        ids = torch.tensor([[index[w] for w in gram] for gram in grams], dtype=torch.long).reshape(-1, n)
        ngrams.append((ids, torch.tensor(logp, dtype=torch.float64), torch.tensor(backoff, dtype=torch.float64)))
    return NGramLM(vocab, ngrams)


def read_text_lines(path: Path) -> list[str]:
    """The non-blank lines of a UTF-8 text file; a byte that is not UTF-8 is an error naming the file and line."""
    lines = []
    for number, encoded in enumerate(path.read_bytes().removeprefix(b"\xef\xbb\xbf").splitlines(), start=1):
        try:
            line = encoded.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{number}: not UTF-8 text (byte {encoded[e.start]:#04x} at byte {e.start + 1} of "
                             "the line): save the text as UTF-8") from None
        if line.strip():
            lines.append(line)
    return lines


def _text_file(text: str) -> Path:
    problem = input_file_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return Path(text)


def _order(text: str) -> int:
    try:
        order = int(text)
    except ValueError:
        order = 0
    if order < 1:
        raise argparse.ArgumentTypeError(f"the n-gram order is a whole number >= 1 (e.g. 3), got {text!r}")
    return order


def main(argv: list[str] | None = None, prog: str = "python -m ctcrnn.decoding.lm") -> None:
    parser = argparse.ArgumentParser(prog=prog, description="n-gram language model tools")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="Witten-Bell n-gram ARPA model from a text file, one sentence a line")
    build.add_argument("text", type=_text_file)
    build.add_argument("--order", type=_order, default=3)
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--unit", choices=["word", "char"], default="word",
                       help="word: whitespace-separated words; char: every character, spaces written as --space")
    build.add_argument("--space", default="|", help="the token that stands for a space in char models")
    args = parser.parse_args(argv)
    # Both files are checked before the counting starts, which can take minutes on a large corpus. Errors
    # found here exit with 1, argparse's own (the text file missing, a bad --order) with 2, as in ``ctcrnn``.
    try:
        check_output(args.out, "--out")
        lines = [line.split() for line in read_text_lines(args.text)]
        if not lines:
            raise ValueError(f"text {args.text} has no sentences (every line is blank): give one sentence a line")
    except ValueError as e:
        build.exit(1, f"{build.prog}: error: {e}\n")
    if args.unit == "char":
        lines = [[c for word in words for c in (*word, args.space)][:-1] for words in lines]
    lm = build_ngram_lm(lines, args.order)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_arpa(lm, args.out)
    sizes = ", ".join(f"{len(ids)} {n}-grams" for n, (ids, _, _) in enumerate(lm.ngrams, start=1))
    print(f"wrote {args.out}: {sizes} from {len(lines)} sentences")


if __name__ == "__main__":
    main()

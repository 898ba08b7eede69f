"""SyntheticTextLines: printed text lines generated on the fly, offline, from the fonts matplotlib ships.

Each line is a pure function of (seed, split, index): a few tokens (common English words and names in
lower, title or upper case, random letter strings, numbers, times and dates, with punctuation, quotes and
brackets) rendered with Pillow in one of the split's fonts at a random size, with random margins. The
training split is augmented like any line dataset (:mod:`ctcrnn.image.augment`).

**Font split.** The test and validation splits are rendered in font files the training split never sees, so
the test score measures reading typefaces the model was not trained on (``FONT_SPLITS``):

* train (14): DejaVu Sans (regular, bold, oblique), DejaVu Sans Mono (regular, bold oblique), DejaVu Serif
  (regular, bold, bold italic), STIX General (regular, italic, bold italic), Computer Modern Roman (cmr10),
  Bold Extended (cmb10) and Typewriter (cmtt10);
* validation (3): DejaVu Sans Bold Oblique, DejaVu Sans Mono Oblique, Computer Modern Text Italic (cmti10);
* test (4): DejaVu Sans Mono Bold, DejaVu Serif Italic, STIX General Bold, Computer Modern Sans (cmss10, the
  only sans-serif Computer Modern face: a design seen in no other split).

Left out: matplotlib's symbol-only fonts (STIXSize*, STIXNonUni*, cmex10, cmsy10), cmmi10 (math italic: its
punctuation positions hold math symbols) and the Display/LastResort fonts (few or placeholder glyphs).
Must never import the core training code or another modality.
"""
from __future__ import annotations

import functools
import logging
import random
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..config import Options
from ..data import BLANK_LABEL
from .datasets import Line, build_line_dataset, read_image_manifest
from .io import LineConfig
from .wordlist import COMMON_WORDS, PROPER_NAMES

PUNCTUATION = ".,;:!?'\"-()/&"
ALPHABET = sorted(set(string.ascii_letters + string.digits + " " + PUNCTUATION))

log = logging.getLogger(__name__)

FONT_SPLITS = {
    "train": ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSansMono.ttf",
              "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-BoldItalic.ttf",
              "STIXGeneral.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf",
              "cmtt10.ttf"],
    "val": ["DejaVuSans-BoldOblique.ttf", "DejaVuSansMono-Oblique.ttf", "cmti10.ttf"],
    "test": ["DejaVuSansMono-Bold.ttf", "DejaVuSerif-Italic.ttf", "STIXGeneralBol.ttf", "cmss10.ttf"],
}

# Where a font's writing starts and ends vertically: the tallest ascenders and deepest descenders of the
# alphabet, so every line of one font at one size gets the same canvas height whatever its words (a line
# of "ooo" keeps its x-height and is not mistaken for "OOO").
_ASCENDERS, _DESCENDERS = "bdfhklABHT(/'\"0", "gjpqy(),"


@dataclass
class TextConfig(Options):
    min_chars: int = 4        # a line is tokens added until it holds at least this many characters ...
    max_chars: int = 32       # ... and never more than this many (a long token is cut)
    font_size: list = field(default_factory=lambda: [1.0, 1.8])  # rendering size in units of the line height
                              # (before the resize to it): larger sizes give finer anti-aliasing
    words: float = 0.6        # share of tokens drawn from the word list (the rest: random letters, numbers)
    numbers: float = 0.2      # share of numbers, times and dates

    def __post_init__(self):
        if not 1 <= self.min_chars <= self.max_chars:
            raise ValueError(f"text.min_chars and text.max_chars must satisfy 1 <= min <= max, got "
                             f"{self.min_chars}, {self.max_chars}")
        if len(self.font_size) != 2 or not 0 < self.font_size[0] <= self.font_size[1]:
            raise ValueError(f"text.font_size must be [low, high] with 0 < low <= high, got {self.font_size}")
        if not (0 <= self.words and 0 <= self.numbers and self.words + self.numbers <= 1):
            raise ValueError(f"text.words and text.numbers are shares of tokens: both >= 0, sum <= 1, got "
                             f"{self.words}, {self.numbers}")


def font_folder() -> Path:
    """matplotlib's bundled TrueType fonts (a dependency of ctcrnn: always there, no download)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font_path(name: str) -> Path:
    """A font file: a path, or a file name in matplotlib's font folder."""
    path = Path(name)
    return path if path.is_absolute() or path.exists() else font_folder() / name


def check_fonts(fonts: list[str], alphabet: list[str], where: str) -> None:
    """Every font exists and draws every character of the alphabet (not a placeholder box)."""
    from fontTools.ttLib import TTFont

    if not fonts:
        raise ValueError(f"{where}: no fonts given")
    for name in fonts:
        path = font_path(name)
        if not path.is_file():
            raise ValueError(f"{where}: font {name} not found (looked for {path}); give a .ttf path or a file name "
                             f"in {font_folder()}")
        cmap = TTFont(path, lazy=True).getBestCmap() or {}
        missing = [c for c in alphabet if c != " " and ord(c) not in cmap]
        if missing:
            raise ValueError(f"{where}: font {name} has no glyph for {''.join(missing[:20])!r}: pick another font")


@functools.lru_cache(maxsize=512)
def load_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), size)


@functools.lru_cache(maxsize=512)
def vertical_extent(name: str, size: int) -> tuple[int, int]:
    """(ascent, descent) in pixels above and below the baseline, from the alphabet's tallest glyphs."""
    font = load_font(name, size)
    return -font.getbbox(_ASCENDERS, anchor="ls")[1], font.getbbox(_DESCENDERS, anchor="ls")[3]


def random_number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        return str(rng.randint(0, 10 ** rng.randint(1, 5) - 1))
    if kind < 0.55:
        return f"{rng.randint(0, 99)}.{rng.randint(0, 99):02d}"
    if kind < 0.7:
        return f"{rng.randint(0, 23)}:{rng.randint(0, 59):02d}"
    if kind < 0.85:
        return f"{rng.randint(1, 31)}/{rng.randint(1, 12)}/{rng.randint(0, 99):02d}"
    return str(rng.randint(1800, 2099))


def random_word(rng: random.Random) -> str:
    word = rng.choice(PROPER_NAMES) if rng.random() < 0.1 else rng.choice(COMMON_WORDS)
    case = rng.random()
    if case < 0.1:
        return word.upper()
    if case < 0.35:
        return word[:1].upper() + word[1:]
    return word


def random_letters(rng: random.Random) -> str:
    letters = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 8)))
    case = rng.random()
    return letters.upper() if case < 0.1 else letters.capitalize() if case < 0.3 else letters


def random_token(rng: random.Random, config: TextConfig) -> str:
    """A word, random letters or a number, sometimes quoted, bracketed or followed by punctuation."""
    draw = rng.random()
    if draw < config.words:
        token = random_word(rng)
    elif draw < config.words + config.numbers:
        token = random_number(rng)
    else:
        token = random_letters(rng)
    wrap = rng.random()
    if wrap < 0.04:
        token = f"({token})"
    elif wrap < 0.07:
        token = f'"{token}"'
    elif wrap < 0.08:
        token = f"'{token}'"
    elif wrap < 0.10:
        token = f"{token}-{random_word(rng)}"
    if rng.random() < 0.22:
        token += rng.choice(".,.,.,;:!?")  # full stops and commas most often
    return token


def random_text(rng: random.Random, config: TextConfig) -> str:
    """Tokens joined by spaces (now and then a lone '-' or '&') until the line holds ``min_chars``, never
    more than ``max_chars`` characters."""
    tokens, length = [], 0
    while length < config.min_chars or (rng.random() < 0.75 and length < config.max_chars * 0.8):
        token = "&" if rng.random() < 0.02 else "-" if rng.random() < 0.01 else random_token(rng, config)
        if tokens and length + 1 + len(token) > config.max_chars:
            if length >= config.min_chars:
                break
            token = token[: max(1, config.max_chars - length - 1)]
        tokens.append(token)
        length += len(token) + (len(tokens) > 1)
    return " ".join(tokens)[: config.max_chars].strip() or "a"


@dataclass
class LinePlan:
    """Everything needed to render one line (cheap to compute: no pixels)."""
    text: str
    font: str
    size: int          # font size in pixels
    width: int         # canvas in pixels
    height: int
    origin: tuple      # where the baseline of the first character starts


def plan_line(seed: int, split: str, index: int, fonts: list[str], config: TextConfig, line_height: int) -> LinePlan:
    """The text, font, size and canvas of line ``index`` of ``split``: a pure function of its arguments."""
    rng = random.Random(f"synthetic_textlines/{seed}/{split}/{index}")
    text = random_text(rng, config)
    font_name = rng.choice(fonts)
    size = max(6, round(rng.uniform(*config.font_size) * line_height))
    ascent, descent = vertical_extent(font_name, size)
    left, _, right, _ = load_font(font_name, size).getbbox(text, anchor="ls")
    writing = ascent + descent
    top, bottom = (round(rng.uniform(0.04, 0.25) * writing) for _ in range(2))
    margin_left, margin_right = (round(rng.uniform(0.1, 0.6) * size) for _ in range(2))
    width = margin_left + (right - min(left, 0)) + margin_right
    return LinePlan(text, font_name, size, max(2, width), top + writing + bottom,
                    (margin_left - min(left, 0), top + ascent))


def render_line(plan: LinePlan) -> np.ndarray:
    """(height, width) uint8 grey image of a plan: black writing on white paper."""
    image = Image.new("L", (plan.width, plan.height), 255)
    ImageDraw.Draw(image).text(plan.origin, plan.text, font=load_font(plan.font, plan.size), fill=0, anchor="ls")
    return np.asarray(image)


class LineRenderer:
    """The dataset's ``load``: renders a generated line from its plan (picklable, for DataLoader workers)."""

    def __init__(self, plans: dict[str, LinePlan]):
        self.plans = plans

    def __call__(self, line) -> np.ndarray:
        return render_line(self.plans[line.id]) / 255.0



def synthetic_textlines(split: str, train_size: int = 8000, val_size: int = 300, test_size: int = 600, seed: int = 0,
                        text: dict | None = None, fonts: dict | None = None, line: dict | None = None,
                        augment: dict | None = None, stride: int = 4, fitted: dict | None = None):
    """Generated printed lines (see the module docstring), in the fonts of ``FONT_SPLITS`` (``fonts``
    replaces a split's list: {"test": ["my.ttf"]}). ``text``: :class:`TextConfig` fields; ``line``:
    :class:`~ctcrnn.image.io.LineConfig` fields (height); ``augment``: training augmentation; ``stride``:
    the model's width stride (see :func:`~ctcrnn.image.datasets.image_manifest`). ``split`` may also be a
    JSON Lines manifest of line images, read with the model's vocabulary (to score real lines)."""
    labels = [BLANK_LABEL, *ALPHABET]
    if split.endswith((".jsonl", ".json")):
        return build_line_dataset("synthetic_textlines", split, read_image_manifest(split), line, augment, None,
                                  fitted, stride, labels=labels, source=f"manifest {split}")
    sizes = {"train": train_size, "val": val_size, "test": test_size}
    if split not in sizes:
        raise ValueError(f"synthetic_textlines has splits {list(sizes)} (or a .jsonl manifest path), not {split!r}")
    if sizes[split] < 1:
        raise ValueError(f"synthetic_textlines: {split}_size must be positive, got {sizes[split]}")
    unknown = sorted(set(fonts or {}) - set(sizes))
    if unknown:
        raise ValueError(f"synthetic_textlines: fonts has splits {unknown}; use train, val and test")
    font_lists = {**FONT_SPLITS, **(fonts or {})}
    where = f"synthetic_textlines/{split}"
    check_fonts(font_lists[split], ALPHABET, where)
    if split != "train" and set(font_lists[split]) & set(font_lists["train"]):
        log.warning("%s: fonts %s are also training fonts: the score no longer measures unseen typefaces", where,
                    sorted(set(font_lists[split]) & set(font_lists["train"])))
    config = TextConfig.from_dict(text or {})
    height = (fitted["input_spec"].get("line", {}) if fitted else line or {}).get("height", LineConfig.height)
    plans = {f"textline-{split}-{i:05d}": plan_line(seed, split, i, font_lists[split], config, height)
             for i in range(sizes[split])}
    lines = [Line(line_id, plan.text, width=plan.width, height=plan.height, source=Path(plan.font).stem)
             for line_id, plan in plans.items()]
    return build_line_dataset("synthetic_textlines", split, lines, line, augment, None, fitted, stride,
                              load=LineRenderer(plans), labels=labels)

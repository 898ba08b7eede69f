"""Reading text-line images (PNG, JPEG, BMP, TIFF: whatever Pillow opens) into the model's input.

A line is read with Pillow, turned upright by its EXIF orientation, converted to grey whatever its mode
(16-bit, palette, CMYK, RGBA and LA composited on white paper, bilevel), made *ink = 1, paper = 0*
(dark-on-light and light-on-dark pages alike: the majority of pixels is taken to be paper), stretched to use
the full [0, 1] range, and resized to a fixed height keeping its aspect ratio. Width is time: the model
reads ``(W, 1, H)``, one column of pixels per step. Paper is 0 so that zero padding beside a short line in
a batch is blank paper, the same as the margin of a line read alone.

Sizes come from the file header (:func:`line_size`) without decoding the pixels, for batching by length.
Every failure is an :class:`ImageError` naming the file; Pillow's own exceptions never escape.
Must never import the core training code or another modality; the core never imports this.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..config import Options
from ..data import stat_media

# EXIF orientations that turn the image by 90 degrees (5-8): width and height swap once it is upright.
_TRANSPOSING = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
MIN_SIDE = 2  # a line image needs at least 2 x 2 pixels; anything smaller holds no writing


class ImageError(ValueError):
    """A line image that cannot be used: missing, not an image, truncated, or too small to hold writing."""


@dataclass
class LineConfig(Options):
    args_key = "line"
    height: int = 32          # pixels: every line is resized to this height, keeping its aspect ratio
    polarity: str = "auto"    # auto: the majority of pixels is paper (dark or light); dark: dark ink on
                              # light paper; light: light ink on dark paper
    stretch_contrast: bool = True  # map paper to 0 and the strongest ink to 1 (scans differ in contrast)

    def __post_init__(self):
        if not isinstance(self.height, int) or isinstance(self.height, bool) or self.height < MIN_SIDE:
            raise ValueError(f"line.height must be an integer >= {MIN_SIDE} (pixels), got {self.height!r}")
        if self.polarity not in ("auto", "dark", "light"):
            raise ValueError(f"line.polarity must be 'auto', 'dark' or 'light', got {self.polarity!r}")


def scaled_width(width: int, height: int, target_height: int) -> int:
    """Width of a ``width`` x ``height`` image resized to ``target_height`` rows, aspect kept (>= 1).

    >>> scaled_width(1661, 89, 32), scaled_width(100, 32, 32), scaled_width(2, 200, 32)
    (597, 100, 1)
    """
    return max(1, int(width * target_height / height + 0.5))


def _open(path: str | Path) -> Image.Image:
    stat_media(str(path), "line image", ImageError)
    if Path(path).is_dir():
        raise ImageError(f"line image {path} is a directory: point the manifest at an image file")
    try:
        return Image.open(path)
    except Exception as e:  # noqa: BLE001  UnidentifiedImageError, SyntaxError (a zero-width header), ...
        raise ImageError(f"line image {path} cannot be read as an image ({type(e).__name__}: {e}): "
                         f"check that it is a PNG/JPEG file and not truncated") from None


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation found while reading the header (1 = upright), without decoding any pixel."""
    raw = image.info.get("exif")
    if not raw:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001  a damaged EXIF block only loses its orientation
        return 1


def line_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the upright image from its header alone (EXIF rotation applied); ImageError if
    the file is missing, not an image, or smaller than 2 x 2 pixels."""
    with _open(path) as image:
        width, height = image.size
        if _orientation(image) in _TRANSPOSING:
            width, height = height, width
    check_size(path, width, height)
    return width, height


def check_size(path, width: int, height: int) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(f"line image {path} is {width} x {height} pixels: too small to hold a line of writing "
                         f"(at least {MIN_SIDE} x {MIN_SIDE}); drop it from the manifest")


def to_grey(image: Image.Image) -> np.ndarray:
    """(h, w) float64 grey levels in [0, 1] (1 = white) from any Pillow mode: 16-bit and 32-bit integer
    (scaled by their own full range, where ``convert("L")`` would clip them to white), float, palette and
    transparency (composited on white paper), CMYK and RGB (ITU-R 601 luma, as Pillow's ``L``)."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image, dtype=np.float64) / 65535.0
    if mode == "I":  # 16-bit PNGs open as "I" in some Pillow versions; wider data scaled by its own maximum
        values = np.asarray(image, dtype=np.float64)
        return values / (65535.0 if values.max(initial=0) <= 65535 else values.max())
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        return values if values.max(initial=0) <= 1.0 else values / 255.0
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("L", "1") and "transparency" in image.info:
        image = image.convert("LA")
    elif mode == "RGB" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    if image.mode != "L":
        image = image.convert("L")  # CMYK, RGB, YCbCr, 1, LAB... -> luma
    return np.asarray(image, dtype=np.float64) / 255.0


def read_grey(path: str | Path) -> np.ndarray:
    """(h, w) grey levels in [0, 1] of an upright line image (EXIF orientation applied)."""
    image = _open(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd EXIF/ICC blocks: not the reader's concern
            image.load()  # truncated or corrupt data fails here, naming the file below
            image = ImageOps.exif_transpose(image)
        grey = to_grey(image)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001  Pillow raises OSError, ValueError, EOFError, ... for damaged data
        raise ImageError(f"line image {path} is truncated or corrupt ({type(e).__name__}: {e})") from None
    finally:
        image.close()
    check_size(path, grey.shape[1], grey.shape[0])
    bad = int(grey.size - np.isfinite(grey).sum())
    if bad:  # only float ("F" mode) images can hold them; NaN ink would make the whole line's features NaN
        raise ImageError(f"line image {path} has {bad} NaN/inf pixels: re-export it (as 8- or 16-bit grey) or drop "
                         f"it from the manifest")
    return grey


def ink_map(grey: np.ndarray | torch.Tensor, config: LineConfig) -> torch.Tensor:
    """(h, w) grey in [0, 1] -> (h, w) float32 ink in [0, 1] (paper 0): inverted unless the paper is dark,
    then (``stretch_contrast``) paper at 0 and the strongest ink at 1. Paper is the median grey level,
    since writing covers a minority of a line image."""
    grey = torch.as_tensor(grey, dtype=torch.float32)
    dark_paper = config.polarity == "light" or (config.polarity == "auto" and float(grey.median()) < 0.5)
    ink = grey if dark_paper else 1.0 - grey
    if config.stretch_contrast:
        paper, strongest = float(ink.median()), float(ink.max())
        if strongest - paper < 1e-3:  # blank: nothing to stretch
            return torch.zeros_like(ink)
        ink = ((ink - paper) / (strongest - paper)).clamp(0.0, 1.0)
    return ink


def resize_to_height(ink: torch.Tensor, height: int, width: int | None = None) -> torch.Tensor:
    """(h, w) -> (height, width or the aspect-kept width): bilinear, antialiased when shrinking."""
    h, w = ink.shape
    width = width or scaled_width(w, h, height)
    if (h, w) == (height, width):
        return ink
    return F.interpolate(ink[None, None], size=(height, width), mode="bilinear", align_corners=False,
                         antialias=True)[0, 0].clamp(0.0, 1.0)


def prepare_line(grey: np.ndarray | torch.Tensor, config: LineConfig) -> torch.Tensor:
    """Grey (h, w) in [0, 1], 1 = white -> normalised ink (H, W') at ``config.height``. The ink map is made
    after the resize: the median and maximum are then taken over the pixels the model will see."""
    grey = torch.as_tensor(grey, dtype=torch.float32)
    return ink_map(resize_to_height(grey, config.height), config)


def as_steps(line: torch.Tensor) -> torch.Tensor:
    """(H, W) image -> (W, 1, H) model input: one (1, H) column per time step."""
    return line.t().unsqueeze(1).contiguous()


def read_line(path: str | Path, config: LineConfig) -> torch.Tensor:
    """One line image file as model input (W, 1, H), float32 in [0, 1] with ink 1 and paper 0."""
    return as_steps(prepare_line(read_grey(path), config))


def line_spec(config: LineConfig) -> dict:
    """What a checkpoint needs to read new line images the way it was trained (plain types only).

    ``fps`` = 1 input step per unit: ``ctcrnn align``/``transcribe`` then report spans in pixel columns of the
    line at the model's height (``frame_unit``), the frontend's stride included.
    """
    return {"modality": "image", "step_shape": [1, config.height], "line": dataclasses.asdict(config),
            "value_range": [0.0, 1.0], "ink": "light on dark (ink 1, paper 0)", "fps": 1.0, "frame_unit": "px",
            "word_delimiter": " "}

"""argparse ``type=`` functions that range-check a number as it is parsed, so a bad value is refused with the
option's name (argparse adds it) before any work: ``--lm-weight nan``, ``--seeds 0``, ``--chunk-seconds -1``.
Shared by the ``ctcrnn`` command and ``ctcrnn compare``.
"""
from __future__ import annotations

import argparse
import math


def parse_number(text: str, kind: type = float):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {'whole number' if kind is int else 'number'}, got {text!r}") \
            from None


def finite_float(text: str) -> float:
    value = parse_number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = parse_number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def nonneg_int(text: str) -> int:
    value = parse_number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = parse_number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def nonneg_float(text: str) -> float:
    value = parse_number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value

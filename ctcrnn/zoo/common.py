"""Helpers shared by zoo entries of every modality: the ``cell`` shortcut and (B, T, F) input sizes."""
from __future__ import annotations

from ..nn.encoder import EncoderConfig


def feature_bins(entry: str, in_shape: tuple[int, ...]) -> int:
    """The F of ``in_shape=(F,)``; anything else is a (B, T, F) feature mismatch worth naming."""
    if len(in_shape) != 1:
        raise ValueError(f"{entry} reads (B, T, F) features and takes in_shape=(F,), got in_shape={tuple(in_shape)}: "
                         f"check the dataset's step_shape")
    return int(in_shape[0])


def encoder_with_cell(defaults: dict, encoder: dict | EncoderConfig | None, cell: str | None) -> EncoderConfig:
    """The entry's encoder defaults, updated by ``encoder``; ``cell`` sets ``encoder.cell`` and must not
    contradict a cell given there (the same cell twice is fine: a rebuilt ``arch`` carries both)."""
    if cell is not None:
        given = encoder.cell if isinstance(encoder, EncoderConfig) else (encoder or {}).get("cell")
        if given is not None and given != cell:
            raise ValueError(f"cell={cell!r} conflicts with encoder.cell={given!r}: set only one of them")
        if not isinstance(encoder, EncoderConfig):
            encoder = {**(encoder or {}), "cell": cell}
    return EncoderConfig.resolve(defaults, encoder)

"""Per-beam search state that is cut and reordered generically. A dataclass declares each tensor with a
leading (B, K) axis (B utterances × K beams) once, as a :func:`per_beam` field; :class:`BeamState` then
selects utterances (those that end leave the search) and gathers beams (each new beam continues an old
one) over every such field, nested states included. No list of fields is kept by hand, so a new per-beam
tensor cannot be left behind when utterances end or beams move.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import TypeVar

import torch

__all__ = ["BeamState", "per_beam", "per_beam_fields"]

_META = "per_beam"
State = TypeVar("State", bound="BeamState")


def per_beam():
    """A dataclass field holding a (B, K, ...) tensor, or a nested :class:`BeamState`; None: not in use."""
    return dataclasses.field(default=None, metadata={_META: True})


@functools.cache
def per_beam_fields(cls: type) -> tuple[str, ...]:
    """Names of the :func:`per_beam` fields of dataclass ``cls``, in declaration order (read once per class)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(_META))


class BeamState:
    """Base of dataclasses whose :func:`per_beam` fields all have the leading shape ``shape`` (B, K).
    Other attributes (tables, caches) are shared by the copies these methods make. A per-beam field keeps
    its kind (None, a (B, K) tensor, a longer one, a nested state) for the life of a state and its copies:
    gathers look the kinds up once (:meth:`_plan_gather`)."""

    shape: tuple[int, int]

    def select(self: State, rows: slice | torch.Tensor) -> State:
        """The state of utterances ``rows`` (a slice: views; an index tensor (n,): copies)."""
        new = self._copy()
        for name in per_beam_fields(type(self)):
            value = getattr(self, name)
            if value is not None:
                setattr(new, name, value.select(rows) if isinstance(value, BeamState) else value[rows])
        count = len(range(self.shape[0])[rows]) if isinstance(rows, slice) else len(rows)
        new.shape = (count, self.shape[1])
        return new

    def split(self: State, n: int) -> tuple[State, State]:
        """(the first ``n`` utterances, the others)."""
        return self.select(slice(None, n)), self.select(slice(n, None))

    def gather(self: State, source: torch.Tensor) -> State:
        """The state where beam k of utterance b is old beam ``source[b, k]`` ((B, K) long). Every
        per-beam tensor is a new one, so that its owner may update it in place."""
        new = self._copy()
        new.gather_(source)
        return new

    def gather_(self, source: torch.Tensor) -> None:
        """:meth:`gather` in place: the fields are replaced, the tensors they held are left as they were."""
        fields = self.__dict__
        flat, deep, nested = fields.get("_gather_plan") or self._plan_gather()
        for name in flat:
            fields[name] = fields[name].gather(1, source)
        for name in deep:
            fields[name] = _gather_beams(fields[name], source)
        for name in nested:
            fields[name] = fields[name].gather(source)

    def _plan_gather(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """The per-beam fields that hold (B, K) tensors, (B, K, ...) tensors and nested states. Gathers
        run on every frame of a search: looking each field's kind up once per state (its copies share
        the plan) instead of on every gather made the search measurably slower on small batches. So a
        field keeps its kind, and whether it is None, for the life of a state."""
        values = {name: getattr(self, name) for name in per_beam_fields(type(self))}
        for name, value in values.items():
            if not (value is None or isinstance(value, BeamState) or (torch.is_tensor(value) and value.dim() >= 2)):
                raise TypeError(f"{type(self).__name__}.{name} is declared per_beam() but holds {type(value).__name__} "
                                f"{getattr(value, 'shape', '')}: a per-beam field holds None, a (B, K, ...) tensor or "
                                f"a nested BeamState")
        plan = (tuple(name for name, v in values.items() if torch.is_tensor(v) and v.dim() == 2),
                tuple(name for name, v in values.items() if torch.is_tensor(v) and v.dim() > 2),
                tuple(name for name, v in values.items() if isinstance(v, BeamState)))
        self.__dict__["_gather_plan"] = plan
        return plan

    def replace(self: State, **fields) -> State:
        """A copy with ``fields`` replaced, each by a value of the same kind (cheaper per frame than
        ``dataclasses.replace``, and no __init__)."""
        new = self._copy()
        new.__dict__.update(fields)
        return new

    def _copy(self: State) -> State:
        """A shallow copy (cheaper than ``copy.copy``)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new


def _gather_beams(values: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """values (B, K, ...) reordered along K by source (B, K)."""
    dims = values.dim()
    index = source.unsqueeze(-1) if dims == 3 else source.view(source.shape + (1,) * (dims - 2))
    return values.gather(1, index.expand_as(values))

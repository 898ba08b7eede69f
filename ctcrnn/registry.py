"""Name -> builder registries for models and datasets (timm-style).

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
Modalities and the zoo register their builders here on import.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
import math
import types
import typing
from typing import Any, Callable


def closest(name: str, choices) -> str:
    """A ' (did you mean X?)' hint, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def drop_none(kwargs: dict) -> dict:
    """Recursively drop None values so unset CLI/config fields never mask a builder's defaults."""
    return {k: drop_none(v) if isinstance(v, dict) else v for k, v in kwargs.items() if v is not None}


class RegistryError(ValueError):
    """An unknown or duplicate name, or an argument the builder does not take."""


def type_name(kind: Any) -> str:
    """``int``, ``list of int``, ``dict or None``: an annotation as a message says it."""
    if kind is type(None):
        return "None"
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin in (list, tuple) and args:
        return f"list of {type_name(args[0])}"
    return getattr(origin or kind, "__name__", str(kind))


MISMATCH = object()  # what conform() returns for a value that does not fit (None may be one that does)


def conform(value: Any, kind: Any) -> Any:
    """``value`` (as YAML or a config gives it) made to fit the annotation ``kind``, or ``MISMATCH``.

    Checked: int, float (finite; an int will do, and a number written as text: YAML reads ``1e-3`` as a
    string), str (a number will do: YAML reads ``root=2024`` as one), bool, None, lists and tuples (of checked
    items; a builder checks lengths itself), dicts, dataclasses (a dict of their fields will do) and unions of
    these. Other annotations pass unchecked."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        for member in sorted(args, key=lambda a: a is str):  # "1e-3" for float | str stays text only last
            fitted = conform(value, member)
            if fitted is not MISMATCH:
                return fitted
        return MISMATCH
    if kind is type(None):
        return value if value is None else MISMATCH
    if kind is bool:
        return value if isinstance(value, bool) else MISMATCH
    if kind is int:  # bool is an int to Python, never to a user
        return value if isinstance(value, int) and not isinstance(value, bool) else MISMATCH
    if kind is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return MISMATCH
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return value if ok else MISMATCH
    if kind is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return value if isinstance(value, str) else MISMATCH
    if (origin or kind) in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return MISMATCH
        items = tuple(a for a in args if a is not Ellipsis)
        if not items:
            return value
        fitted = [conform(v, typing.Union[items] if len(set(items)) > 1 else items[0]) for v in value]
        return MISMATCH if any(v is MISMATCH for v in fitted) else type(value)(fitted)
    if (origin or kind) is dict:
        return value if isinstance(value, dict) else MISMATCH
    if dataclasses.is_dataclass(kind):
        return value if isinstance(value, (dict, kind)) else MISMATCH
    return value


def conform_arguments(fn: Callable, kwargs: dict, where: Callable[[str], str]) -> dict:
    """``kwargs`` with each value made to fit ``fn``'s annotation of that argument (:func:`conform`), or a
    RegistryError naming it by ``where(key)`` (``data.args.train_size``). Unannotated arguments pass as given."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001  an annotation that cannot be resolved here: nothing to check against
        return dict(kwargs)
    fitted = {}
    for key, value in kwargs.items():
        fitted[key] = value if key not in hints else conform(value, hints[key])
        if fitted[key] is MISMATCH:
            raise RegistryError(f"{where(key)} expects {type_name(hints[key])}, got {value!r:.80}")
    return fitted


class Registry:
    """A named table of builder functions; refuses duplicates and unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}

    def register(self, fn: Callable | None = None, *, name: str | None = None):
        def add(f: Callable) -> Callable:
            key = name or f.__name__
            if key in self._entries:
                raise RegistryError(f"{self.kind} {key!r} is already registered by {self._entries[key].__module__}")
            self._entries[key] = f
            return f
        return add(fn) if fn is not None else add

    def get(self, name: str) -> Callable:
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} {name!r}{closest(name, self._entries)}; "
                           f"known: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def check(self, name: str, kwargs: dict, prefix: str = "") -> dict:
        """``kwargs`` fitted to the builder's annotations (:func:`conform`); RegistryError for an unknown name,
        an argument the builder does not take (naming the closest valid one) or a value that does not fit.
        ``prefix`` is where the arguments come from in the config (``data.args.``), for the messages."""
        fn = self.get(name)
        params = inspect.signature(fn).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            for key in kwargs:
                if key not in params:
                    raise RegistryError(f"{self.kind} {name!r} has no argument {key!r}{closest(key, params)}; "
                                        f"it takes: {', '.join(params)}")
        return conform_arguments(fn, kwargs, lambda key: f"{prefix}{key}" if prefix else
                                 f"{self.kind} {name!r}: argument {key!r}")

    def build(self, name: str, **kwargs) -> Any:
        """Call the builder with None-free kwargs, checked and fitted first (:meth:`check`)."""
        return self.get(name)(**self.check(name, drop_none(kwargs)))


MODELS = Registry("model")
DATASETS = Registry("dataset")
READERS = Registry("reader")


def register_model(fn: Callable | None = None, *, name: str | None = None):
    """Decorator: ``@register_model`` on a keyword-only function returning a :class:`~ctcrnn.model.CTCModel`."""
    return MODELS.register(fn, name=name)


def register_dataset(fn: Callable | None = None, *, name: str | None = None):
    """Decorator: ``@register_dataset`` on ``fn(split, **args) -> dataset`` (see :mod:`ctcrnn.data`)."""
    return DATASETS.register(fn, name=name)


def register_reader(modality: str):
    """Decorator: ``@register_reader("audio")`` on ``fn(path, input_spec) -> Tensor (T, *step_shape)``, which
    reads one media file the way a checkpoint's ``input_spec`` says (``ctcrnn transcribe`` and ``align``)."""
    return READERS.register(name=modality)


def create_model(name: str, **overrides):
    """Build a registered model; ``None`` overrides are dropped so the entry's defaults stand.

    The returned model remembers ``arch = {"name": name, "kwargs": ...}`` with *every* builder
    argument resolved (defaults included, the encoder as the plain dict of its resolved config), so
    a checkpoint rebuilds the same network even if an entry's defaults change later.

    >>> import torch
    >>> model = create_model("weak_action_bigru", num_classes=6, in_shape=(16,), encoder={"hidden_size": 8})
    >>> log_probs, out_lengths = model(torch.randn(2, 12, 16), torch.tensor([12, 7]))
    >>> tuple(log_probs.shape), out_lengths.tolist()   # (B, T', V): blank is index 0
    ((2, 12, 6), [12, 7])
    >>> model.arch["kwargs"]["encoder"]["cell"], model.arch["kwargs"]["encoder"]["hidden_size"]
    ('gru', 8)
    """
    overrides = MODELS.check(name, drop_none(overrides))  # fitted to the annotations: arch records what was built
    model = MODELS.get(name)(**overrides)
    bound = inspect.signature(MODELS.get(name)).bind(**overrides)
    bound.apply_defaults()
    kwargs = dict(bound.arguments)
    for param in inspect.signature(MODELS.get(name)).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            kwargs.update(kwargs.pop(param.name, {}))
    encoder = getattr(model, "encoder", None)
    if "encoder" in kwargs and hasattr(encoder, "config"):
        kwargs["encoder"] = dataclasses.asdict(encoder.config)
    model.arch = {"name": name, "kwargs": kwargs}
    return model


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted.

    >>> import ctcrnn  # the zoo fills the registry
    >>> list_models("deepspeech2_small*")
    ['deepspeech2_small', 'deepspeech2_small_streaming']
    """
    return MODELS.list(pattern)

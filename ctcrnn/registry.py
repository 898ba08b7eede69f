"""Name -> builder registries for models and datasets (timm-style).

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
Modalities and the zoo register their builders here on import.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
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

    def build(self, name: str, **kwargs) -> Any:
        """Call the builder with None-free kwargs; an unknown keyword names the closest valid one."""
        fn = self.get(name)
        kwargs = drop_none(kwargs)
        params = inspect.signature(fn).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            for key in kwargs:
                if key not in params:
                    raise RegistryError(f"{self.kind} {name!r} has no argument {key!r}{closest(key, params)}; "
                                    f"it takes: {', '.join(params)}")
        return fn(**kwargs)


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
    overrides = drop_none(overrides)
    model = MODELS.build(name, **overrides)
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
    >>> list_models("deepspeech2*")
    ['deepspeech2', 'deepspeech2_small']
    """
    return MODELS.list(pattern)

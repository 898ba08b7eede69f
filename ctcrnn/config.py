"""Typed run configuration: dataclasses with defaults, YAML recipes, ``key.sub=value`` overrides.

The defaults below *are* the embedded default recipe (``python train.py`` with no arguments);
``configs/synthetic_actions_gru.yaml`` spells the same values out. Every key is checked against
the dataclass types; an unknown key names the closest valid one, a key written twice in a YAML file is
an error, and every value is checked for type and range when the config is loaded (``validate_config``),
the free-form ``data.args`` and ``model.args`` against their builder's annotations; so a bad value is
refused before a run folder is made, naming its dotted key.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from .nn.encoder import EncoderConfig
from .registry import MISMATCH, DATASETS, MODELS, RegistryError, closest, conform, type_name


@dataclass
class ModelConfig:
    name: str = "frame_cnn_rnn"                                   # registry entry, see ctcrnn.list_models()
    encoder: dict = field(default_factory=dict, metadata={"schema": EncoderConfig})  # EncoderConfig fields; unset ones keep the entry's defaults
    args: dict = field(default_factory=dict)                      # other keyword arguments of the entry


@dataclass
class DataConfig:
    name: str = "synthetic_actions"   # dataset registry entry
    args: dict = field(default_factory=dict)  # keyword arguments of the dataset builder (root, sizes, ...)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    batch_size: int = 8
    eval_batch_size: int = 32
    max_frames: int = 0               # > 0: batch items of similar length, at most this many padded input steps per
                                      # batch (batch_size still caps the count); needs a dataset that knows its lengths
    sortagrad: bool = False           # with max_frames: first epoch shortest batches first (DeepSpeech2's SortaGrad)
    num_workers: int = 0              # DataLoader workers (clips are made/decoded there, not in the step); 0 = in process


@dataclass
class TrainerConfig:
    max_epochs: int = 7
    optimizer: str = "adamw"          # adamw | sgd (with momentum, DeepSpeech 2's choice)
    lr: float = 5e-3                  # peak learning rate
    momentum: float = 0.9             # sgd only
    weight_decay: float = 0.01        # decoupled (AdamW) or L2 (SGD)
    warmup_steps: int = 200           # linear warm-up, then cosine decay to 0 at the last step
    grad_clip: float = 5.0            # max global gradient norm; 0 = off
    seed: int = 0
    device: str = "auto"              # auto (CUDA when present) | cpu | cuda | cuda:N
    threads: int = 0                  # torch CPU threads; 0 = torch's default
    out_dir: str = "runs"             # runs are written to out_dir/run_name
    run_name: str = ""                # default: <dataset>-<model>-<cell>
    progress: bool = True             # a progress bar on a terminal; a plain line every progress_every_s otherwise
    progress_every_s: float = 60.0    # seconds between progress lines when stderr is not a terminal (nohup, CI)
    max_bad_steps: int = 20           # stop after this many non-finite steps in a row
    grad_accum: int = 1               # batches per optimizer step (effective batch = batch_size x grad_accum;
                                      # under torchrun each rank takes a share of every batch)
    precision: str = "fp32"           # fp32 | bf16 (autocast, CPU or GPU) | fp16 (autocast + grad scaler, CUDA);
                                      # the CTC loss is computed in float32 either way
    compile: bool = False             # torch.compile the frontend (needs a C++ compiler on the CPU)
    checkpoint_every_steps: int = 0   # also checkpoint every N optimizer steps (0: at epoch ends only)
    checkpoint_every_minutes: float = 0.0  # ... and/or every M minutes (0: off)
    keep_checkpoints: int = 3         # newest step checkpoints kept in <run>/checkpoints (older ones are deleted)
    log_every_steps: int = 50         # a row of steps.csv/.jsonl every N optimizer steps (0: off)
    tensorboard: bool = False         # also write TensorBoard events to <run>/tensorboard (pip install tensorboard)
    init_from: str = ""               # start from this checkpoint's or bundle's weights (fresh optimizer and schedule;
                                      # labels in both vocabularies keep their output rows: training/finetune.py)
    freeze: list = field(default_factory=list, metadata={"items": str})  # module name prefixes kept fixed,
                                      # e.g. [frontend, encoder.layers.0]
    max_skipped_share: float = 0.5    # stop when more than this share of an epoch's training clips cannot be used
                                      # (unreadable, non-finite, transcript too long); a run that can use none stops
                                      # whatever this says (training/skips.py)


@dataclass
class EvalConfig:
    background: list = field(default_factory=list, metadata={"items": str})  # labels left out of "without
                                      # background" scores
    num_plots: int = 6                # clips drawn in segments.png


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


class ConfigError(ValueError):
    pass


class Options:
    """Mixin for the small option dataclasses that modalities read from ``data.args`` (features,
    augmentation, video reading): ``from_dict`` refuses unknown keys, naming the closest field, and values
    that do not fit a field's type, naming it as ``where.field`` (``data.args.features.n_mels``; default:
    ``data.args.<args_key>``, or the class name)."""

    args_key = ""  # the data.args key a subclass is read from ("video"), to name its fields in messages

    @classmethod
    def from_dict(cls, d: dict, where: str = ""):
        return cls(**checked_options(cls, d, where))


def checked_options(cls, d, where: str = "") -> dict:
    """``d`` (a dict of ``cls``'s fields, ``cls`` an option dataclass) with each value fitted to its field's type
    (an int for a float, a number written as text); ValueError naming ``where.field`` for an unknown key
    or a value of the wrong type (a list for an int, text for a number, NaN or inf)."""
    where = where or (f"data.args.{cls.args_key}" if getattr(cls, "args_key", "") else cls.__name__)
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a mapping of {cls.__name__} fields, got {d!r:.80}")
    refuse_unknown_keys(cls, d)
    hints = typing.get_type_hints(cls)
    fitted = {key: conform(value, hints[key]) for key, value in d.items()}
    for key, value in fitted.items():
        if value is MISMATCH:
            raise ValueError(f"{where}.{key} expects {type_name(hints[key])}, got {d[key]!r:.80}")
    return fitted


def refuse_unknown_keys(cls, d: dict) -> None:
    """ValueError naming the closest field when ``d`` has a key ``cls`` (a dataclass) does not; for the
    small option dataclasses that modalities read from ``data.args`` (features, augmentation, video)."""
    names = [f.name for f in dataclasses.fields(cls)]
    for key in d:
        if key not in names:
            raise ValueError(f"{cls.__name__} has no field {key!r}{closest(key, names)}; "
                             f"valid fields: {', '.join(names)}")


def _coerce(value: Any, kind: type, key: str, items: type | None = None) -> Any:
    """Convert a YAML or command-line value to the declared type (``items``: of a list's items), or explain
    what is wrong."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "on"):
            return True
        if str(value).lower() in ("false", "0", "no", "off"):
            return False
    elif kind is int and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            pass
    elif kind is float and not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
        else:
            if math.isfinite(number):
                return number
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
    elif kind is str:
        if not isinstance(value, (list, dict)):  # a number or a word YAML read as a bool is still a name
            return "" if value is None else str(value)
    elif kind is list:
        if isinstance(value, (list, tuple)):
            wrong = [v for v in value if items is not None and not isinstance(v, items)]
            if wrong:
                raise ConfigError(f"{key} expects a list of {items.__name__}, got {wrong[0]!r} in {list(value)!r}")
            return list(value)
    elif kind is dict:
        if isinstance(value, dict):
            return value
    raise ConfigError(f"{key} expects {kind.__name__}, got {value!r}")


class RawText(str):
    """An override's text before YAML parsing: a ``str`` field takes it verbatim (``run_name=no`` stays "no")."""

    def __new__(cls, raw: str, parsed: Any):
        text = super().__new__(cls, raw)
        text.parsed = parsed
        return text


def _value_for(value: Any, kind: type, key: str, items: type | None = None) -> Any:
    if isinstance(value, RawText):
        if kind in (str, int, float):  # the text itself: no YAML octal, "no" -> False or 1e-3 -> "1e-3" surprises
            return _coerce(str(value), kind, key)
        return _coerce(value.parsed, kind, key, items)
    return _coerce(value, kind, key, items)


def _set(node: Any, parts: list[str], value: Any, path: str, schema: type | None = None) -> None:
    key = parts[0]
    where = path + key
    if isinstance(node, dict):  # a free-form (or schema-checked) mapping such as model.args
        if schema is not None:
            hints = typing.get_type_hints(schema)
            if key not in hints:
                raise ConfigError(f"unknown key {where!r}{closest(key, hints)}")
            node[key] = _value_for(value, hints[key], where)
        elif len(parts) > 1:
            _set(node.setdefault(key, {}), parts[1:], value, where + ".")
        else:
            node[key] = value.parsed if isinstance(value, RawText) else value
        return
    hints = typing.get_type_hints(type(node))
    if key not in hints:
        raise ConfigError(f"unknown key {where!r}{closest(key, hints)}")
    current = getattr(node, key)
    if isinstance(value, RawText) and (dataclasses.is_dataclass(current) or hints[key] is dict) and len(parts) == 1:
        value = value.parsed
    if dataclasses.is_dataclass(current):
        if len(parts) == 1:
            if not isinstance(value, dict):
                raise ConfigError(f"{where} is a section; set its keys ({where}.<key>=...)")
            for sub, v in value.items():
                _set(current, [sub], v, where + ".")
        else:
            _set(current, parts[1:], value, where + ".")
        return
    meta = next(f for f in dataclasses.fields(node) if f.name == key).metadata
    if hints[key] is dict and (len(parts) > 1 or isinstance(value, dict)):
        items = [(parts[1:], value)] if len(parts) > 1 else [([k], v) for k, v in value.items()]
        for sub_parts, v in items:
            _set(current, sub_parts, v, where + ".", meta.get("schema"))
        return
    if len(parts) > 1:
        raise ConfigError(f"{where} is a {hints[key].__name__}, it has no key {parts[1]!r}")
    setattr(node, key, _value_for(value, hints[key], where, meta.get("items")))


def apply_override(cfg: Config, override: str) -> None:
    """Apply one ``key.sub=value`` override; the value is read as YAML (``[1, 2]``, ``true``, ``3``)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.sub=value")
    key, raw = override.split("=", 1)
    try:
        parsed = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else ""
    except DuplicateKeyError as e:
        raise ConfigError(f"override {override!r}: {e}") from None
    except yaml.YAMLError:
        parsed = raw
    _set(cfg, key.strip().split("."), RawText(raw, parsed), "")


# Lower bounds of numeric settings: (minimum, inclusive). A zero batch or a negative clip norm must be
# refused when the config is read, not met mid-run (a negative max_norm would flip every gradient).
LIMITS = {
    "data.batch_size": (1, True), "data.eval_batch_size": (1, True), "data.num_workers": (0, True),
    "data.max_frames": (0, True), "trainer.max_epochs": (1, True), "trainer.lr": (0, False),
    "trainer.weight_decay": (0, True), "trainer.warmup_steps": (0, True), "trainer.grad_clip": (0, True),
    "trainer.threads": (0, True), "trainer.max_bad_steps": (1, True), "trainer.grad_accum": (1, True),
    "trainer.checkpoint_every_steps": (0, True), "trainer.checkpoint_every_minutes": (0, True),
    "trainer.keep_checkpoints": (1, True), "trainer.log_every_steps": (0, True), "eval.num_plots": (0, True),
    "trainer.momentum": (0, True), "trainer.progress_every_s": (0, False), "trainer.max_skipped_share": (0, True),
}
UPPER_LIMITS = {"trainer.max_skipped_share": 1.0}  # a share
# Names that cannot be empty: an empty split or registry name fails later with a message about something else.
NON_EMPTY = ("model.name", "data.name", "data.train_split", "data.val_split", "data.test_split")
# trainer.precision -> the dtype the forward runs under autocast (None: no autocast). The one list of
# precisions: the config check below and training/stepping.py both read it.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CHOICES = {"trainer.precision": tuple(PRECISIONS), "trainer.optimizer": ("adamw", "sgd")}
# What trainer.device may say; whether this machine has it is checked when a run starts (inference.resolve_device).
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def validate_config(cfg: Config) -> Config:
    """Refuse a value of the wrong type (any field, ``model.encoder`` keys and the ``data.args``/``model.args``
    of registered builders included) or outside its range (``LIMITS``, ``CHOICES``), naming the dotted key and
    what it must be. Run on every loaded config and again when a run starts (a Config built in Python)."""
    for section in dataclasses.fields(cfg):
        node = getattr(cfg, section.name)
        hints = typing.get_type_hints(type(node))
        for f in dataclasses.fields(node):
            key, value = f"{section.name}.{f.name}", getattr(node, f.name)
            if conform(value, hints[f.name]) is MISMATCH:
                raise ConfigError(f"{key} expects {type_name(hints[f.name])}, got {value!r:.80}")
            items = f.metadata.get("items")
            if items is not None and any(not isinstance(v, items) for v in value):
                raise ConfigError(f"{key} expects a list of {items.__name__}, got {value!r:.80}")
    schema = typing.get_type_hints(EncoderConfig)
    for name, value in cfg.model.encoder.items():
        if name not in schema:
            raise ConfigError(f"unknown key 'model.encoder.{name}'{closest(name, schema)}")
        if conform(value, schema[name]) is MISMATCH:
            raise ConfigError(f"model.encoder.{name} expects {type_name(schema[name])}, got {value!r:.80}")
    for key, (low, inclusive) in LIMITS.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value < low or (not inclusive and value == low) or value > UPPER_LIMITS.get(key, math.inf):
            bounds = f"{'>=' if inclusive else '>'} {low}" + (f" and <= {UPPER_LIMITS[key]}" if key in UPPER_LIMITS
                                                               else "")
            raise ConfigError(f"{key} must be {bounds}, got {value}")
    for key in NON_EMPTY:
        section, name = key.split(".")
        if not getattr(getattr(cfg, section), name).strip():
            raise ConfigError(f"{key} must not be empty")
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}{closest(value, allowed)}")
    if not DEVICE_PATTERN.fullmatch(cfg.trainer.device):
        raise ConfigError(f"trainer.device must be auto, cpu, cuda, cuda:N or mps, got {cfg.trainer.device!r}")
    check_builder_arguments(cfg)
    return cfg


def check_builder_arguments(cfg: Config) -> None:
    """``data.args`` and ``model.args`` against the annotations of their builders, when those are registered
    (an unknown name is refused, naming the known ones, when the dataset or model is built)."""
    for registry, name, args, prefix in ((DATASETS, cfg.data.name, cfg.data.args, "data.args."),
                                         (MODELS, cfg.model.name, cfg.model.args, "model.args.")):
        if name in registry.list():
            try:
                registry.check(name, args, prefix)
            except RegistryError as e:
                raise ConfigError(str(e)) from None


class DuplicateKeyError(yaml.YAMLError):
    pass


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key written twice in one mapping is an error (PyYAML keeps the
    last silently, so a recipe edited in two places trains with whichever came later)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            lines: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # "<<: *defaults" may be overridden by the keys beside it
                key = self.construct_object(key_node, deep=True)
                try:
                    first = lines.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:
                    continue  # an unhashable key: the base class refuses it with its own message
                if first != key_node.start_mark.line + 1:
                    raise DuplicateKeyError(f"key {key!r} appears twice (lines {first} and "
                                            f"{key_node.start_mark.line + 1}): keep one")
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """A YAML config file's contents; ConfigError naming the file when it is missing, a directory, unreadable,
    not YAML, or has a key written twice."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=UniqueKeyLoader)
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory: give the path of a YAML recipe "
                          f"(e.g. configs/synthetic_actions_gru.yaml)") from None
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"config file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"config file {path} cannot be read (permission denied): check its permissions") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except DuplicateKeyError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML recipe (if any), then the command-line overrides; then type and range checks.

    >>> cfg = load_config(None, ["trainer.max_epochs=3", "model.encoder.cell=lstm"])
    >>> cfg.trainer.max_epochs, cfg.model.encoder, cfg.model.name
    (3, {'cell': 'lstm'}, 'frame_cnn_rnn')
    >>> load_config(None, ["trainer.max_epoch=3"])
    Traceback (most recent call last):
    ...
    ctcrnn.config.ConfigError: unknown key 'trainer.max_epoch' (did you mean 'max_epochs'?)
    """
    cfg = Config()
    if path is not None:
        path = Path(path)
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections (model, data, trainer, eval)")
        try:
            for section, value in data.items():
                _set(cfg, [section], value, "")
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    for override in overrides:
        apply_override(cfg, override)
    return validate_config(cfg)


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict) -> Config:
    cfg = Config()
    for section, value in data.items():
        _set(cfg, [section], value, "")
    return cfg


def save_config(cfg: Config, path: str | Path) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)

"""The dataset contract, batching, label vocabularies and the JSON Lines manifest reader every modality uses.

A dataset (built by a ``@register_dataset`` builder as ``builder(split, **args)``) is a
``torch.utils.data.Dataset`` whose items are dicts::

    {"id": str, "input": Tensor (T, *step_shape), "target": list[int] (no blank),
     "frame_labels": list[int] (optional, len T, for segmentation metrics),
     "text": str (optional: the raw reference, scored as text when targets spell characters)}

or, for an item that cannot be read (missing or broken file), ``{"id": str, "error": str}``: the batch
drops it and lists it under ``skipped``, so one bad file costs one counted, logged skip, never an epoch.
A dataset has ``labels`` (list[str], index 0 = "<blank>") and ``input_spec`` (dict: at least
``modality`` and ``step_shape``; plus the preprocessing a checkpoint needs to read new data the same way;
``word_delimiter`` when labels are characters that spell words, e.g. " "). It may have ``lengths``
(list[int], input steps per item, known without loading it) for batching by length.

Optional hooks: ``set_epoch(epoch, seed)`` (the trainer calls it before each epoch's loader, so per-item
randomness can be seeded by (seed, epoch, index) and stay the same in any worker and after a resume) and
``write_predictions(results, out_dir)`` (``ctcrnn evaluate`` calls it with its per-clip results: id,
ref, hyp and, with frame labels, truth/segmentation/alignment frames, to write a dataset's own format).

Builders that take a ``fitted`` argument receive what was fitted on the training split
(``{"labels": ..., "input_spec": ...}``: a vocabulary, normalisation statistics), so validation, test and
new data are read exactly as the model was trained.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import random
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .randomness import mix_seed, seeded_generator
from .registry import DATASETS

log = logging.getLogger(__name__)

BLANK_LABEL = "<blank>"


def stat_media(path: str, noun: str, error: type[Exception]) -> os.stat_result:
    """``os.stat`` of a media file or folder, raising ``error`` with a message naming it when it is missing
    or cannot be read. ``os.stat``, not ``os.path.exists``: exists() answers False for a file in a folder
    we may not search, which would send the user hunting for a file that is there."""
    try:
        return os.stat(path)
    except PermissionError:
        raise error(f"{noun} {path} cannot be read (permission denied): check its permissions or its "
                    f"folder's") from None
    except (FileNotFoundError, NotADirectoryError):
        hint = "" if os.path.isabs(path) else f" (relative paths are resolved from {os.getcwd()})"
        raise error(f"{noun} {path} does not exist: check the path{hint}") from None
    except OSError as err:
        raise error(f"{noun} {path} cannot be read ({err.strerror}): check the path") from None


def read_jsonl(path: str | Path, example: str) -> list[tuple[int, object]]:
    """The entries of a JSON Lines manifest as (line number, parsed value), blank lines skipped.

    A manifest is written by hand or by a script, so anything wrong is an error naming the file and line
    (a silent skip would hide the bug that wrote it): missing or unreadable file, a line that is not UTF-8
    or not JSON, no entries at all. ``example`` is a valid line, quoted in the messages. The caller checks
    the keys. Bytes are split before decoding, so a bad byte is reported with its line, and U+2028 inside
    a JSON string (a line break to str.splitlines) does not cut a line in two.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()  # not is_file() first: it raises a bare PermissionError in unsearchable folders
    except PermissionError:
        raise ValueError(f"manifest {path} cannot be read (permission denied): check its permissions or its "
                         f"folder's") from None
    except IsADirectoryError:
        raise ValueError(f"manifest {path} is a directory: point it at a .jsonl file") from None
    except (FileNotFoundError, NotADirectoryError):
        raise ValueError(f"manifest {path} does not exist") from None
    except OSError as e:
        raise ValueError(f"manifest {path} cannot be read ({e.strerror})") from None
    entries = []
    for number, encoded in enumerate(raw.removeprefix(b"\xef\xbb\xbf").splitlines(), start=1):
        try:
            line = encoded.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{number}: not UTF-8 text (byte {encoded[e.start]:#04x} at byte {e.start + 1} "
                             f"of the line): save the manifest as UTF-8") from None
        if not line.strip():
            continue
        try:
            entries.append((number, json.loads(line)))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{number}: not a JSON object ({e.msg}); each line must look like {example}") from None
    if not entries:
        raise ValueError(f"manifest {path} has no entries: write one JSON object per line, like {example}")
    return entries


def label_names(value) -> bool:
    """A list of label names, each non-empty and without whitespace: names are joined with spaces in
    hypotheses.tsv and in MS-TCN's result files, so a name holding a space would read back as two."""
    return isinstance(value, list) and all(isinstance(x, str) and x.split() == [x] for x in value)


# What a manifest key must hold: (check, what it must be, for the message). One table for every modality, so
# a key means the same in an audio, a video and a features manifest.
MANIFEST_FIELDS = {
    "text": (lambda v: isinstance(v, str), 'a string (the transcript in quotes; "" if there is none)'),
    "labels": (label_names, 'a list of label names without spaces, like ["open", "pour"]'),
    "frame_labels_path": (lambda v: isinstance(v, str) and bool(v),
                          "a string naming a file with one label per frame (relative to the manifest's folder)"),
}


@dataclass
class ManifestEntry:
    """One checked line of a manifest."""
    id: str                                 # the line's "id", else its path without the suffix (see read_manifest)
    path: str                               # the media path, resolved against the manifest's folder
    fields: dict                            # the parsed line; the keys the caller named are checked
    where: str                              # "manifest:line", for messages about this entry
    frame_labels: list[str] | None = None   # the lines of "frame_labels_path": one label per source frame
    frame_labels_path: str | None = None    # that file, resolved against the manifest's folder


def resolve(manifest: Path, value: str) -> Path:
    """A path written in a manifest: absolute as it is, relative from the manifest's folder."""
    return Path(value) if Path(value).is_absolute() else manifest.parent / value


def default_id(media: Path, suffixes: tuple[str, ...] | None) -> str:
    """A line's id when it gives none: its path as written (relative to the manifest) without the suffix, so
    ``clips/a.wav`` and ``other/a.wav`` stay apart; the file name alone for an absolute path. ``suffixes``: the
    only suffixes dropped (None: any), so a frame folder ``take.2`` keeps its dot."""
    if suffixes is None or media.suffix.lower() in suffixes:
        media = media.with_suffix("")
    return media.name if media.is_absolute() else str(media)


def read_manifest(path: str | Path, example: str, required: tuple = (), optional: tuple = (),
                  media: str = "the media file", suffixes: tuple[str, ...] | None = None,
                  hint: str = "") -> list[ManifestEntry]:
    """The lines of a JSON Lines manifest (:func:`read_jsonl`) as checked :class:`ManifestEntry` objects.

    Every line needs ``"path"`` (a non-empty string naming ``media``, relative to the manifest's folder) and the
    ``required`` keys; an element of ``required`` may be a tuple of keys of which any one will do. Keys of
    :data:`MANIFEST_FIELDS` among ``required`` and ``optional`` are checked when present; ``"frame_labels_path"``
    files are read (:func:`read_label_lines`). An optional ``"id"`` must be a non-empty string or an integer;
    without one, :func:`default_id` names the line (``suffixes`` as there). Ids must be unique. Anything wrong
    is an error naming the file and line (a silent skip would hide the bug in whatever wrote the manifest);
    ``example`` is a valid line and ``hint`` extra advice, quoted in the messages.
    """
    path = Path(path)
    groups = [("path",), *(k if isinstance(k, tuple) else (k,) for k in required)]
    checked = [key for k in (*required, *optional) for key in (k if isinstance(k, tuple) else (k,))]

    def name(group: tuple) -> str:
        return repr(group[0]) if len(group) == 1 else f"one of {', '.join(map(repr, group))}"

    entries, seen = [], {}
    for number, line in read_jsonl(path, example):
        where = f"{path}:{number}"
        missing = [name(g) for g in groups if not isinstance(line, dict) or not any(key in line for key in g)]
        if missing:
            raise ValueError(f"{where}: missing key(s) [{', '.join(missing)}]; each line needs "
                             f"{' and '.join(name(g) for g in groups)}, like {example}{hint}")
        if not isinstance(line["path"], str) or not line["path"]:
            raise ValueError(f"{where}: 'path' must be a string naming {media} (relative to the manifest's folder), "
                             f"got {json.dumps(line['path'])}")
        for key in checked:
            check, expected = MANIFEST_FIELDS.get(key, (None, ""))
            if key in line and check is not None and not check(line[key]):
                raise ValueError(f"{where}: {key!r} must be {expected}, got {json.dumps(line[key])[:80]}")
        if "id" in line and (not isinstance(line["id"], (str, int)) or isinstance(line["id"], bool) or line["id"] == ""):
            raise ValueError(f"{where}: 'id' must be a non-empty string or an integer, got {json.dumps(line['id'])}; "
                             f"or leave it out to name the line by its path")
        entry = ManifestEntry(str(line.get("id", default_id(Path(line["path"]), suffixes))),
                              str(resolve(path, line["path"])), line, where)
        if entry.id in seen:
            raise ValueError(f"{where}: id {entry.id!r} was already used on line {seen[entry.id]}; ids must be "
                             f"unique (give the lines distinct 'id's)")
        seen[entry.id] = number
        if "frame_labels_path" in checked and "frame_labels_path" in line:
            entry.frame_labels_path = str(resolve(path, line["frame_labels_path"]))
            try:
                entry.frame_labels = read_label_lines(Path(entry.frame_labels_path))
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        entries.append(entry)
    return entries


def read_label_lines(path: Path) -> list[str]:
    """One label per line (MS-TCN's groundTruth files, a manifest's ``frame_labels_path``); trailing blank
    lines are ignored, inner ones are errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise ValueError(f"ground truth {path} does not exist: every listed video needs one label per frame "
                         f"there (or remove the video from the split)") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"ground truth {path} is not UTF-8 text ({e.reason} at byte {e.start}): save it as "
                         f"UTF-8") from None
    except OSError as e:
        raise ValueError(f"ground truth {path} cannot be read ({e.strerror}): check the path and its "
                         f"permissions") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ValueError(f"ground truth {path} is empty: expected one action label per frame")
    if "" in lines:
        raise ValueError(f"{path}:{lines.index('') + 1}: empty line inside the ground truth (one label per frame)")
    return lines


def collapse_runs(frame_labels) -> list:
    """The transcript of a frame labelling: one entry per run of equal labels (``a a b b a`` -> ``a b a``).

    >>> collapse_runs(["SIL", "SIL", "pour", "pour", "SIL"])
    ['SIL', 'pour', 'SIL']
    """
    return [label for i, label in enumerate(frame_labels) if i == 0 or label != frame_labels[i - 1]]


def manifest_for_split(name: str, split: str, manifests: dict[str, str]) -> str:
    """The manifest a split reads: ``data.args.<split>`` (``manifests``: train/val/test paths), or the split
    itself when it is a .jsonl/.json path (evaluating a checkpoint on any manifest)."""
    path = manifests.get(split) or (split if split.endswith((".jsonl", ".json")) else None)
    if not path:
        raise ValueError(f"{name} has no manifest for split {split!r}: set data.args.{split}=path.jsonl "
                         f"or pass a .jsonl path as the split")
    return path


def check_unique_ids(name: str, ids, noun: str) -> None:
    """Refuse a dataset whose sample ids repeat: ids key skipped.tsv, hypotheses.tsv and per-clip outputs."""
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    if repeated:
        raise ValueError(f"{name}: {noun} ids must be unique, these repeat: {repeated[:5]}")


def build_dataset(name: str, split: str, args: dict, fitted: dict | None = None):
    """Build a registered dataset split and check that it honours the contract.

    fitted: ``{"labels", "input_spec"}`` of the training split or of a checkpoint; passed on to builders
    that take it (and ignored by those that derive nothing from the training data).
    """
    takes_fitted = "fitted" in inspect.signature(DATASETS.get(name)).parameters
    dataset = DATASETS.build(name, split=split, **args, **({"fitted": fitted} if takes_fitted and fitted else {}))
    labels = getattr(dataset, "labels", None)
    if not labels or labels[0] != BLANK_LABEL:
        raise ValueError(f"dataset {name!r} must expose labels with {BLANK_LABEL!r} at index 0, got {labels!r:.80}")
    if "step_shape" not in getattr(dataset, "input_spec", {}):
        raise ValueError(f"dataset {name!r} must expose input_spec with a 'step_shape'")
    return dataset


def input_problem(item: dict, step_shape: tuple | None) -> str | None:
    """Why an item's input cannot go into a batch (wrong step shape, NaN/inf values), or None."""
    x = item["input"]
    if step_shape is not None and tuple(x.shape[1:]) != tuple(step_shape):
        return (f"input has step shape {tuple(x.shape[1:])} but the dataset declares {tuple(step_shape)}: "
                f"regenerate its features with the dataset's settings or drop it")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        return f"input has {bad} non-finite values (NaN/inf): fix the features or drop the item"
    return None


def collate(items: list[dict], step_shape: tuple | None = None) -> dict:
    """Pad a list of items along time.

    Returns ``inputs`` (B, T_max, *step_shape) zero-padded, ``lengths`` (B,), ``targets`` (list of
    label lists), ``ids``, ``skipped`` (list of (id, reason) for items left out: unreadable, NaN/inf
    values, or a step shape other than ``step_shape``), and ``frame_labels`` / ``texts`` when every item
    has them. When no item is usable, ``inputs`` is None and the batch only reports its skips.
    """
    skipped = [(item["id"], item["error"]) for item in items if "error" in item]
    items = [item for item in items if "error" not in item]
    problems = [input_problem(item, step_shape) for item in items]
    skipped += [(item["id"], problem) for item, problem in zip(items, problems) if problem]
    items = [item for item, problem in zip(items, problems) if not problem]
    if not items:
        return {"inputs": None, "lengths": None, "ids": [], "targets": [], "skipped": skipped}
    lengths = torch.tensor([item["input"].shape[0] for item in items], dtype=torch.long)
    first = items[0]["input"]
    inputs = first.new_zeros((len(items), int(lengths.max()), *first.shape[1:]))
    for i, item in enumerate(items):
        inputs[i, : item["input"].shape[0]] = item["input"]
    batch = {"inputs": inputs, "lengths": lengths, "ids": [item["id"] for item in items],
             "targets": [list(item["target"]) for item in items], "skipped": skipped}
    if all("frame_labels" in item for item in items):
        batch["frame_labels"] = [list(item["frame_labels"]) for item in items]
    if all("text" in item for item in items):
        batch["texts"] = [item["text"] for item in items]
    return batch


def label_difference(expected: list[str], given: list[str], names: tuple[str, str] = ("the checkpoint", "the data")
                     ) -> str:
    """How two label lists differ, for a message: the labels only one of them has, else the first index where
    their order differs. ``names`` say what each list is.

    >>> label_difference(["<blank>", "a", "b", "c"], ["<blank>", "a", "b", "d"])
    "only in the checkpoint: 'c'; only in the data: 'd'"
    >>> label_difference(["<blank>", "a", "b", "c"], ["<blank>", "c", "b", "a"])
    "the same 3 labels in another order: index 1 is 'a' in the checkpoint but 'c' in the data"
    """
    def listed(labels: list[str]) -> str:
        return ", ".join(repr(x) for x in labels[:10]) + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")

    only = [(name, [x for x in mine if x not in others]) for name, mine, others in
            ((names[0], expected, set(given)), (names[1], given, set(expected)))]
    parts = [f"only in {name}: {listed(labels)}" for name, labels in only if labels]
    if parts:
        return "; ".join(parts)
    if len(expected) != len(given):  # the same names, one repeated
        return f"{len(expected)} labels in {names[0]}, {len(given)} in {names[1]}"
    index = next((i for i, (a, b) in enumerate(zip(expected, given)) if a != b), None)
    if index is None:
        return "none"
    return (f"the same {len(expected) - 1} labels in another order: index {index} is {expected[index]!r} in "
            f"{names[0]} but {given[index]!r} in {names[1]}")


def labels_to_text(ids: list[int], labels: list[str], input_spec: dict) -> str:
    """A transcript as text: characters joined as they are when the labels spell words
    (``input_spec["word_delimiter"]`` set), otherwise label names separated by spaces."""
    glue = "" if input_spec.get("word_delimiter") is not None else " "
    return glue.join(labels[i] for i in ids)


class LengthBucketSampler(torch.utils.data.Sampler):
    """Batches of items of similar length, bounded by padded input steps per batch (B · T_max ≤
    ``max_steps``) and by ``max_batch`` items; an item longer than ``max_steps`` gets a batch of its own.

    Items are sorted by length (ties in random order) and cut into batches; the batch order is then
    shuffled. The draw depends only on ``seed`` and ``epoch``, so a resumed run sees the same batches.
    With ``sortagrad`` the first epoch keeps the batches shortest first (Amodei et al. 2016, DeepSpeech2):
    short utterances are easier, which steadies early CTC training.
    """

    def __init__(self, lengths: list[int], max_steps: int, max_batch: int, seed: int = 0, epoch: int = 0,
                 sortagrad: bool = False, shuffle: bool = True):
        if max_steps <= 0 or max_batch <= 0:
            raise ValueError(f"max_steps and max_batch must be positive, got {max_steps} and {max_batch}")
        rng = random.Random(mix_seed(seed, epoch))
        order = list(range(len(lengths)))
        if shuffle:
            rng.shuffle(order)
        order.sort(key=lambda i: lengths[i])  # stable: equal lengths keep the shuffled order
        self.batches, batch, longest = [], [], 0
        for i in order:
            longest_if_added = max(longest, lengths[i])
            if batch and (longest_if_added * (len(batch) + 1) > max_steps or len(batch) == max_batch):
                self.batches.append(batch)
                batch, longest_if_added = [], lengths[i]
            batch.append(i)
            longest = longest_if_added
        if batch:
            self.batches.append(batch)
        if shuffle and not (sortagrad and epoch == 0):
            rng.shuffle(self.batches)

    def __iter__(self):
        return iter([list(b) for b in self.batches])

    def __len__(self) -> int:
        return len(self.batches)


def plan_batches(dataset, batch_size: int, seed: int | None = None, epoch: int = 0, max_frames: int = 0,
                 sortagrad: bool = False) -> list[list[int]]:
    """An epoch's batches as lists of item indices: shuffled when ``seed`` is given (the draw depends only
    on seed and epoch), by length buckets when ``max_frames`` > 0 and the dataset knows its ``lengths``,
    else ``batch_size`` items at a time in index order."""
    if max_frames > 0 and getattr(dataset, "lengths", None) is not None:
        return LengthBucketSampler(dataset.lengths, max_frames, batch_size, seed=seed or 0, epoch=epoch,
                                   sortagrad=sortagrad, shuffle=seed is not None).batches
    order = list(range(len(dataset)))
    if seed is not None:
        # Its own multiplier (100_003, where the rest of ctcrnn uses 1_000_003) and no reduction: the order
        # every run without length buckets trains in, the published default's included, comes from it.
        generator = torch.Generator().manual_seed(mix_seed(seed, epoch, multipliers=(100_003,)))
        order = torch.randperm(len(dataset), generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def make_loader(dataset, batch_size: int, num_workers: int, device: torch.device, seed: int | None = None,
                epoch: int = 0, max_frames: int = 0, sortagrad: bool = False, start: int = 0,
                shard: tuple[int, int] = (0, 1), split_batches: bool = True) -> DataLoader:
    """A DataLoader over :func:`~ctcrnn.data.plan_batches`, from batch ``start`` on.

    ``shard`` = (rank, world): under torchrun each rank takes its share of every batch (``split_batches``,
    for training: the global batch stays the same) or every world-th whole batch (for evaluation). Worker seeds come from the
    loader's own generator (seeded by seed and epoch), so creating a loader never consumes the global RNG.
    """
    rank, world = shard
    batches = plan_batches(dataset, batch_size, seed, epoch, max_frames, sortagrad)[start:]
    if world > 1:
        if split_batches:  # a rank's share may be empty (a one-item batch): it then steps with zero gradients
            batches = [b[rank::world] for b in batches]
        else:
            batches = batches[rank::world]
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch, seed or 0)
    generator = seeded_generator(seed or 0, epoch)
    step_shape = getattr(dataset, "input_spec", {}).get("step_shape")
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                      collate_fn=functools.partial(collate, step_shape=step_shape),
                      pin_memory=device.type == "cuda", generator=generator,
                      worker_init_fn=ignore_interrupts if num_workers else None)


def ignore_interrupts(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process: a worker that died of it would make the trainer's
    next fetch fail while it finishes its step (``training/interrupt.py``); the main process stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

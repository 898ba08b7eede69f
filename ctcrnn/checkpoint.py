"""Self-describing checkpoints: written atomically, read with ``weights_only=True`` and checked key by key.

A checkpoint is one dict: ``arch`` (registry name + builder kwargs), ``model`` (state_dict),
``labels`` (index 0 = blank), ``input_spec`` (what one time step looks like and how it was
preprocessed), ``config`` (the resolved run config), plus optimizer/scheduler/RNG state for resume. A file
whose keys are missing or malformed (edited by hand, written by something else) is refused when loaded,
naming the file and the key, rather than failing later with a KeyError or an index out of range.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import inspect
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch

FORMAT = "ctcrnn-checkpoint-1"


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write to a temp file in the same folder, fsync, then rename: a crash never leaves a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the rename itself durable
        finally:
            os.close(directory)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def link_latest(target: str | Path, link: str | Path) -> None:
    """Atomically make ``link`` (e.g. last.pt) hold the same bytes as ``target``: a hard link when the
    filesystem has them (no copy), else a copy; through a temp name and a rename either way."""
    target, link = Path(target), Path(link)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:
        shutil.copyfile(target, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, link)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", verify: bool = True) -> dict:
    """Load a ctcrnn checkpoint with ``weights_only=True`` (no code from the file ever runs). ``verify``
    checks every record of the archive against the CRC-32 torch.save wrote for it (torch.load does
    not: a flipped bit inside a tensor would load silently); it costs one extra read of the file.
    A bundle folder (or a shipped bundle's name, see :mod:`ctcrnn.bundle`) gives the same dict."""
    from .bundle import looks_like_bundle_name, read_bundle

    path = Path(path)
    if path.is_dir() or looks_like_bundle_name(path):
        state = read_bundle(path)  # a bundle folder or a shipped bundle's name: the same dict (BundleError if not)
        check_checkpoint(state, Path(state.get("bundle_dir", path)) / "config.json")
        return state
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" if not path.exists() else
                              f"checkpoint {path} is not a regular file")
    try:
        if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is damaged or foreign
            raise CheckpointError(f"{path} is truncated or corrupted and cannot be read (not a torch archive)")
        if verify:
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
            if damaged is not None:
                raise CheckpointError(f"{path} is corrupted: its record {damaged!r} fails its CRC-32 check")
        state = torch.load(path, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path} holds objects other than tensors and plain containers and was refused "
                              f"(loaded with weights_only=True; a code payload is never run): {e}") from None
    except Exception as e:  # a damaged archive fails in many ways (BadZipFile, EOFError, KeyError, ...)
        raise CheckpointError(f"{path} is truncated or corrupted and cannot be read: {type(e).__name__}: {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ctcrnn checkpoint (no '{FORMAT}' format tag)")
    check_checkpoint(state, path)
    return state


def check_checkpoint(state: dict, path: str | Path) -> None:
    """CheckpointError naming ``path`` and the key when what rebuilds the model is missing or malformed, as in
    a hand-edited file: ``arch`` (a registered model's name and arguments that fit it), ``model`` (a dict of
    tensors), ``labels`` (names, the blank first, one per output of the model) and ``input_spec``."""
    from .registry import MODELS, RegistryError  # the registry is filled by the zoo, imported by ctcrnn/__init__

    def refuse(key: str, problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: {key} {problem}; the file was edited or written by something else: "
                               f"use an unmodified checkpoint of the run")

    for key, kind in (("arch", dict), ("model", dict), ("labels", list), ("input_spec", dict)):
        if key not in state:
            raise refuse(f"key {key!r}", "is missing")
        if not isinstance(state[key], kind):
            raise refuse(f"key {key!r}", f"must be a {kind.__name__}, got {type(state[key]).__name__}")
    arch, labels, spec = state["arch"], state["labels"], state["input_spec"]
    if not isinstance(arch.get("name"), str) or not isinstance(arch.get("kwargs"), dict):
        raise refuse("'arch'", f"must hold a model 'name' (text) and its 'kwargs' (a dict), got {arch!r:.120}")
    try:
        MODELS.check(arch["name"], {k: v for k, v in arch["kwargs"].items() if k != "weights_path"}, "arch.kwargs.")
    except RegistryError as e:
        raise refuse("'arch'", f"does not describe a model this ctcrnn can build ({e})") from None
    wrong = next((k for k, v in state["model"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)),
                 None)
    if wrong is not None:
        raise refuse("'model'", f"must map parameter names to tensors, but {wrong!r} holds "
                     f"{type(state['model'][wrong]).__name__}")
    if len(labels) < 2 or not all(isinstance(x, str) and x for x in labels) or labels[0] != "<blank>":
        raise refuse("'labels'", f"must be label names with '<blank>' first, got {labels!r:.120}")
    if len(set(labels)) != len(labels):
        raise refuse("'labels'", f"repeat {sorted({x for x in labels if labels.count(x) > 1})!r:.120}")
    classes = arch["kwargs"].get("num_classes")
    if classes is not None and classes != len(labels):
        raise refuse("'labels'", f"has {len(labels)} names but the model ('arch' num_classes) has {classes} "
                     f"outputs")
    shape = spec.get("step_shape")
    if not isinstance(shape, list | tuple) or not shape or not all(isinstance(n, int) and n > 0 for n in shape):
        raise refuse("'input_spec'", f"must hold a 'step_shape' (positive sizes), got {shape!r:.80}")


# Builder arguments added after checkpoints were first written, with the value that rebuilds the networks
# of checkpoints that predate them (an older checkpoint's arch does not name them).
ARGUMENTS_ADDED_LATER = {"aux_ctc_weight": 0.0}


def model_from_checkpoint(state: dict):
    """Rebuild the model from ``arch`` and load its weights; returns the model in eval mode."""
    from .registry import MODELS, create_model  # the registry is filled by the zoo, imported by ctcrnn/__init__

    arch = state["arch"]  # checked by load_checkpoint (check_checkpoint)
    # Pretrained-weight files only initialise a fresh model; the checkpoint's weights replace them,
    # so never go looking for that file again (it may not exist on this machine).
    kwargs = {k: v for k, v in arch["kwargs"].items() if k != "weights_path"}
    params = inspect.signature(MODELS.get(arch["name"])).parameters
    for key, value in ARGUMENTS_ADDED_LATER.items():
        if key in params and key not in kwargs:
            kwargs[key] = value
    model = create_model(arch["name"], **kwargs)
    problems = weight_mismatches(model.state_dict(), state["model"])
    if problems:
        raise CheckpointError(f"weights do not fit architecture {arch['name']!r} {arch['kwargs']}: {problems}")
    model.load_state_dict(state["model"])
    return model.eval()


def weight_mismatches(expected: dict, given: dict, skip: tuple[str, ...] = ()) -> str:
    """What keeps the tensors ``given`` from loading into a model whose state_dict is ``expected``, naming
    every missing, unexpected and mis-shaped tensor ('' when they fit); names in ``skip`` are not compared."""
    missing = [k for k in expected if k not in given and k not in skip]
    unexpected = [k for k in given if k not in expected and k not in skip]
    shapes = [f"{k} {tuple(given[k].shape)} where the model has {tuple(expected[k].shape)}"
              for k in expected if k in given and k not in skip and tuple(given[k].shape) != tuple(expected[k].shape)]
    parts = [f"{label} {', '.join(names)}" for label, names in
             (("missing tensors:", missing), ("unexpected tensors:", unexpected), ("mis-shaped tensors:", shapes))
             if names]
    return "; ".join(parts)

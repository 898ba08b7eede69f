"""Bundles: a trained model shipped as a folder, the torchaudio-bundle way (``ctcrnn bundle``, ``ctcrnn.load_bundle``).

A bundle folder holds ``model.safetensors`` (the weights: tensors only, no pickle anywhere) and ``config.json``:
format version, the registry name and builder arguments (``arch``), labels with the blank index, input spec
and preprocessing, suggested decoder settings, the run config, the test metrics recorded in the run folder
(with the command that produced them) and optionally a reference score on a small fixed part of the test
split; an LM and a lexicon may be copied in beside them. ``load_checkpoint`` reads a bundle folder into the
same dict as a checkpoint (``arch``, ``model``, ``labels``, ``input_spec``, ``config``, ``epoch``), so every
command that takes a checkpoint takes a bundle. Bundles shipped inside the package (``ctcrnn/bundles/<name>``)
are found by name: ``load_bundle("dtmf")``.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...); a modality that
can turn a tensor of its raw media into model input registers that in :data:`TENSOR_READERS`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from .checkpoint import CheckpointError
from .data import labels_to_text
from .decoding.decoders import greedy_decode
from .decoding.factory import make_decoder
from .registry import READERS, Registry
from .paths import check_output

__all__ = [
    "TENSOR_READERS",
    "Bundle",
    "BundleError",
    "deployment_config",
    "load_bundle",
    "read_bundle",
    "save_bundle",
    "shipped_bundles",
]

log = logging.getLogger(__name__)

FORMAT = "ctcrnn-bundle"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
SHIPPED = Path(__file__).parent / "bundles"

# modality -> fn(tensor of raw media, input_spec) -> model input (T, *step_shape); e.g. audio: a waveform (N,)
TENSOR_READERS = Registry("tensor reader")


class BundleError(CheckpointError):
    """A bundle folder that cannot be used: missing, damaged, of a newer format, or not a bundle."""


def deployment_config(state: dict) -> dict:
    """What a runtime needs beside the weights or graph: architecture, labels with the blank index, input
    spec, preprocessing, decoder defaults (greedy; the word delimiter for character models)."""
    spec = dict(state["input_spec"])
    return {"arch": state["arch"], "labels": list(state["labels"]), "blank": 0, "input_spec": spec,
            "preprocessing": {"modality": spec.get("modality"),
                              "reader": f"ctcrnn.registry.READERS[{spec.get('modality')!r}](path, input_spec): "
                                        f"a file -> (T, {', '.join(map(str, spec['step_shape']))}) model input",
                              "in_graph": False},
            "decoder": {"type": "greedy", "blank": 0, "word_delimiter": spec.get("word_delimiter")}}


def shipped_bundles() -> list[str]:
    """Names of the bundles shipped inside the package (``ctcrnn/bundles/<name>/config.json``)."""
    return sorted(p.parent.name for p in SHIPPED.glob("*/config.json"))


def resolve_bundle(path_or_name: str | Path) -> Path:
    """A bundle folder: ``path_or_name`` itself, or the shipped bundle of that name."""
    path = Path(path_or_name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            run = f"; a run folder's checkpoint is {path / 'best.pt'}" if (path / "best.pt").is_file() else ""
            raise BundleError(f"{path} is a folder but not a bundle (no config.json): make one with "
                              f"'ctcrnn bundle CHECKPOINT --out {path}'{run}")
        return path
    if str(path_or_name) in shipped_bundles():
        return SHIPPED / str(path_or_name)
    raise BundleError(f"no bundle folder {str(path_or_name)!r}, and no shipped bundle of that name; shipped "
                      f"bundles: {', '.join(shipped_bundles()) or 'none'}")


def looks_like_bundle_name(path: str | Path) -> bool:
    """A bare name such as "dtmf" (no folder part, no suffix) that is not a file here."""
    path = Path(path)
    return not path.exists() and path.name == str(path) and not path.suffix


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{folder / 'config.json'} cannot be read as JSON: {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise BundleError(f"{folder / 'config.json'} is not a ctcrnn bundle config (no format {FORMAT!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(f"{folder} is a bundle of format version {version}, newer than this ctcrnn reads "
                          f"(up to {FORMAT_VERSION}): upgrade ctcrnn to load it")
    missing = [k for k in ("arch", "labels", "input_spec", "config") if k not in config]
    if missing:
        raise BundleError(f"{folder / 'config.json'} lacks {', '.join(missing)}: re-create the bundle")
    return config


def read_bundle(path_or_name: str | Path) -> dict:
    """A bundle folder (or shipped name) as the dict :func:`ctcrnn.checkpoint.load_checkpoint` returns:
    ``arch``, ``model`` (state_dict), ``labels``, ``input_spec``, ``config``, ``epoch``; plus ``bundle``
    (its config.json) and ``bundle_dir``. The weights must be the file config.json was written with
    (SHA-256); whether they fit ``arch`` is checked when the model is built (``model_from_checkpoint``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = resolve_bundle(path_or_name)
    config = read_config(folder)
    weights = folder / config.get("weights", {}).get("file", WEIGHTS)
    if not weights.is_file():
        raise BundleError(f"bundle {folder} has no weights file {weights.name}")
    expected = config.get("weights", {}).get("sha256")
    if expected and file_sha256(weights) != expected:
        raise BundleError(f"{weights} does not match its bundle's config.json (SHA-256 differs): the file is "
                          f"damaged or was replaced; re-create the bundle")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{weights} cannot be read as safetensors: {e}") from None
    return {"format": FORMAT, "arch": config["arch"], "model": tensors, "labels": list(config["labels"]),
            "input_spec": config["input_spec"], "config": config["config"], "epoch": config.get("epoch", 0),
            "step": config.get("step", 0), "bundle": config, "bundle_dir": str(folder)}


def run_dir_of(checkpoint: Path) -> Path:
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def recorded_test_metrics(checkpoint: Path, state: dict) -> dict | None:
    """The run folder's eval-<test split>/summary.json when it scored this very checkpoint file, with the
    command that produced it; a bundle passes its own on."""
    if "bundle" in state:
        return state["bundle"].get("metrics")
    split = state["config"].get("data", {}).get("test_split", "test")
    summary_path = run_dir_of(checkpoint) / f"eval-{split.replace('/', '_')}" / "summary.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    scored = Path(summary.get("checkpoint", ""))
    if not scored.exists() or not os.path.samefile(scored, checkpoint):
        log.warning("%s scored %s, not %s: its metrics are not recorded in the bundle", summary_path,
                    summary.get("checkpoint"), checkpoint)
        return None
    command = f"ctcrnn evaluate --checkpoint {summary['checkpoint']} --split {summary['split']}"
    result = {k: v for k, v in summary.items() if k not in ("out_dir", "checkpoint")}
    return {"test": result, "command": command, "source": str(summary_path),
            **({"decoder": summary["beam"].get("decoder")} if "beam" in summary else {})}


def save_bundle(checkpoint: str | Path, out_dir: str | Path, lm: str | Path | None = None,
                lexicon: str | Path | None = None, decoder: dict | None = None, recipe: str | None = None,
                name: str | None = None) -> Path:
    """Write a bundle folder from a checkpoint (or another bundle); returns the folder.

    decoder: suggested beam-search settings (``beam_size``, ``lm_weight``, ``word_bonus``, ...); an ``lm``
    or ``lexicon`` is copied in and named in them. recipe: the command that trained the checkpoint.
    """
    from safetensors.torch import save_file

    from .checkpoint import load_checkpoint, model_from_checkpoint

    checkpoint = Path(checkpoint)
    check_output(out_dir, "--out", folder=True, inside=(WEIGHTS, "config.json", "lexicon.txt"))
    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state)  # refuses weights that do not fit their arch before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(out / WEIGHTS, 0o666 & ~umask)  # safetensors writes 0600 files; a bundle is meant to be shared
    suggested = deployment_config(state)
    files = {}
    for key, source, target in (("lm", lm, "lm" + "".join(Path(lm).suffixes) if lm else None),
                                ("lexicon", lexicon, "lexicon.txt")):
        if source:
            if not Path(source).is_file():
                raise BundleError(f"--{key} {source} is not a file")
            shutil.copyfile(source, out / target)
            files[key] = target
    options = dict(decoder or {})
    if files or options.get("beam_size"):
        options.setdefault("beam_size", 16)
        delimiter = options.get("word_delimiter") or state["input_spec"].get("word_delimiter")
        suggested["decoder"] = {"type": "beam", "blank": 0, **options, **files, "word_delimiter": delimiter}
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": name or out.name,
              "weights": {"file": WEIGHTS, "sha256": file_sha256(out / WEIGHTS),
                          "parameters": sum(p.numel() for p in model.parameters())},
              **suggested, "files": files, "config": state["config"], "epoch": state.get("epoch", 0),
              "step": state.get("step", 0), "source": str(checkpoint),
              "recipe": recipe or state.get("bundle", {}).get("recipe"),
              "metrics": recorded_test_metrics(checkpoint, state),
              "created_with": {"ctcrnn": package_version(), "torch": torch.__version__}}
    write_config(out, config)
    return out


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ctcrnn")
    except PackageNotFoundError:
        return "unknown"


def write_config(folder: Path, config: dict) -> None:
    tmp = folder / ".config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, folder / "config.json")


def update_bundle_config(folder: str | Path, **fields) -> None:
    """Add fields to a bundle's config.json (e.g. ``reference``: a spot-check score made after bundling)."""
    folder = Path(folder)
    write_config(folder, {**read_config(folder), **fields})


class Bundle:
    """A loaded bundle: ``.model`` (eval mode), ``.labels`` (blank = ``.blank``), ``.input_spec``, ``.config``,
    ``.decoder`` (the suggested one: greedy, or beam search with the bundled LM/lexicon), and
    ``.transcribe(path_or_tensor) -> str``. A path is read with the modality's registered reader, exactly
    as the model's training data was; a tensor is either model input (T, *step_shape) or raw media its
    modality can preprocess (audio: a mono waveform (N,) at ``input_spec["sample_rate"]``)."""

    def __init__(self, path_or_name: str | Path, device: str | torch.device = "cpu"):
        from .checkpoint import model_from_checkpoint

        state = read_bundle(path_or_name)
        self.path, self.config = Path(state["bundle_dir"]), state["bundle"]
        self.labels, self.blank, self.input_spec = state["labels"], 0, state["input_spec"]
        self.device = torch.device(device)
        self.model = model_from_checkpoint(state).to(self.device)
        self.decoder = self.suggested_decoder()

    def get_model(self) -> torch.nn.Module:
        return self.model

    def suggested_decoder(self):
        """None (greedy) or a beam-search decoder from config.json's ``decoder``, bundled files resolved."""
        options = {k: v for k, v in self.config.get("decoder", {}).items() if k not in ("type", "blank")}
        if self.config.get("decoder", {}).get("type") != "beam":
            return None
        for key in ("lm", "lexicon"):
            if options.get(key):
                options[key] = str(self.path / options[key])
        return make_decoder(self.labels, **options)

    def preprocess(self, media: str | Path | torch.Tensor) -> torch.Tensor:
        """Model input (T, *step_shape) of one file or tensor."""
        if not isinstance(media, torch.Tensor):
            return READERS.get(self.input_spec["modality"])(media, self.input_spec)
        step_shape = tuple(self.input_spec["step_shape"])
        if tuple(media.shape[1:]) == step_shape:
            return media.float()
        modality = self.input_spec.get("modality")
        if modality in TENSOR_READERS.list():
            return TENSOR_READERS.get(modality)(media, self.input_spec)
        raise ValueError(f"a tensor of shape {tuple(media.shape)} is neither model input (T, {step_shape}) nor "
                         f"raw media this bundle's {modality!r} modality can preprocess")

    @torch.no_grad()
    def log_probs(self, media: str | Path | torch.Tensor) -> torch.Tensor:
        """(T', V) log-probabilities of one file or tensor."""
        x = self.preprocess(media).to(self.device)
        log_probs, out_lengths = self.model(x[None], torch.tensor([x.shape[0]], device=self.device))
        return log_probs[0, : int(out_lengths[0])].cpu()

    def transcribe(self, media: str | Path | torch.Tensor) -> str:
        log_probs = self.log_probs(media)
        lengths = torch.tensor([log_probs.shape[0]])
        if self.decoder is not None:
            tokens = self.decoder(log_probs[None], lengths)[0][0].tokens
        else:
            tokens = greedy_decode(log_probs[None], lengths)[0]
        return labels_to_text(tokens, self.labels, self.input_spec)

    def __repr__(self) -> str:
        return (f"Bundle({str(self.path)!r}: {self.config['arch']['name']}, {len(self.labels)} labels, "
                f"{self.input_spec.get('modality')})")


def load_bundle(path_or_name: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """A bundle folder, or the name of a bundle shipped with ctcrnn (:func:`shipped_bundles`), ready to use.

    >>> import ctcrnn
    >>> "dtmf" in ctcrnn.shipped_bundles()
    True
    """
    return Bundle(path_or_name, device)

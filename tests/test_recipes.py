"""Smoke test of every recipe in configs/: its dataset builds (shrunk; LibriSpeech, Breakfast, GRID and
PHOENIX from fixture trees in their published layouts), its model builds from the dataset's input spec, and one batch gives a finite
CTC loss and gradients. Catches a recipe that no longer matches the code before anyone spends GPU hours."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import ctcrnn  # noqa: F401  (registries)
from ctcrnn.config import load_config
from ctcrnn.nn.ctc import ctc_loss
from ctcrnn.data import build_dataset, collate
from ctcrnn.registry import create_model

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
SHRINK = {"synthetic_actions": ["data.args.train_size=4", "data.args.frame_size=16", "data.args.max_frames=48"],
          "synthetic_dtmf": ["data.args.train_size=4"], "synthetic_textlines": ["data.args.train_size=4"]}


def librispeech_fixture(root: Path) -> None:
    folder = root / "train-clean-100" / "19" / "198"
    folder.mkdir(parents=True)
    lines = []
    for n, text in enumerate(["HELLO WORLD", "A TEST"]):
        t = np.arange(int(16000 * (1.0 + 0.2 * n))) / 16000
        sf.write(folder / f"19-198-{n:04d}.flac", (0.2 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000)
        lines.append(f"19-198-{n:04d} {text}")
    (folder / "19-198.trans.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_recipe_builds_and_takes_a_step(path, tmp_path):
    cfg = load_config(path)
    overrides = list(SHRINK.get(cfg.data.name, []))
    if cfg.data.name == "librispeech":
        librispeech_fixture(tmp_path)
        overrides.append(f"data.args.root={tmp_path}")
    if cfg.data.name == "breakfast":
        from tests.fixtures.features import write_breakfast
        write_breakfast(tmp_path)
        overrides.append(f"data.args.root={tmp_path}")
    if cfg.data.name == "grid":
        from tests.fixtures.video import write_grid
        write_grid(tmp_path)
        overrides += [f"data.args.root={tmp_path}", "data.args.test_per_speaker=1"]
    if cfg.data.name == "iam_lines":
        from tests.fixtures.image import write_iam
        write_iam(tmp_path)  # the recipe's split files (splits/aachen/*.lst) are read relative to the root
        overrides.append(f"data.args.root={tmp_path}")
    if cfg.data.name == "phoenix2014":
        from tests.fixtures.video import write_phoenix2014
        write_phoenix2014(tmp_path, frames=32)  # CSLR divides time by 4: enough frames for five glosses
        overrides.append(f"data.args.root={tmp_path}")
    cfg = load_config(path, overrides)
    dataset = build_dataset(cfg.data.name, cfg.data.train_split, cfg.data.args)
    model = create_model(cfg.model.name, num_classes=len(dataset.labels), in_shape=tuple(dataset.input_spec["step_shape"]),
                         encoder=cfg.model.encoder, **cfg.model.args)
    batch = collate([dataset[i] for i in range(min(4, len(dataset)))])  # fixtures hold a broken file or two
    log_probs, out_lengths = model(batch["inputs"], batch["lengths"])
    result = ctc_loss(log_probs, out_lengths, batch["targets"], batch["ids"])
    assert result.kept >= 2 and torch.isfinite(result.loss)
    result.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

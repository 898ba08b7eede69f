import os
import random

import numpy as np
import pytest
import torch

# Tests run on the CPU unless they are about CUDA: with CUDA hidden, `device: auto` (the config default,
# `evaluate --device auto`, the torchrun subprocesses, which inherit the environment) means the CPU, so a
# GPU machine runs the same deterministic kernels as CI. CUDA is initialised lazily, so hiding it here,
# before any test touches it, is enough. CTCRNN_TEST_CUDA=1 leaves the devices visible for CUDA tests.
if not os.environ.get("CTCRNN_TEST_CUDA"):
    os.environ["CUDA_VISIBLE_DEVICES"] = ""


@pytest.fixture(autouse=True)
def _isolated_global_state():
    """Every test starts from torch seed 0 and leaves the global state as it found it: torch's thread
    count (a training run sets trainer.threads), the Python, NumPy and torch RNGs, and the working folder."""
    threads, cwd = torch.get_num_threads(), os.getcwd()
    rngs = random.getstate(), np.random.get_state(), torch.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
    random.setstate(rngs[0])
    np.random.set_state(rngs[1])
    torch.set_rng_state(rngs[2])
    os.chdir(cwd)


def tiny_config_overrides(tmp_path, **extra) -> list[str]:
    """A SyntheticActions run small enough for a test: few short clips, small model, on the CPU."""
    overrides = {
        "data.args.train_size": 48, "data.args.val_size": 8, "data.args.test_size": 8,
        "data.args.frame_size": 16, "data.args.min_frames": 20, "data.args.max_frames": 32,
        "data.batch_size": 8, "data.eval_batch_size": 8, "data.num_workers": 0,
        "model.args.widths": "[8, 16]", "model.args.feature_dim": 32, "model.encoder.hidden_size": 32,
        "trainer.max_epochs": 2, "trainer.warmup_steps": 2, "trainer.progress": "false",
        "trainer.out_dir": str(tmp_path), "trainer.run_name": "tiny", "trainer.device": "cpu",
    }
    overrides.update(extra)
    return [f"{k}={v}" for k, v in overrides.items()]

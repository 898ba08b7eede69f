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

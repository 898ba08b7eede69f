"""Train a CNN-RNN CTC model: ``python train.py [--config configs/X.yaml] [key.sub=value ...]``.

With no arguments it trains the embedded default (SyntheticActions, BiGRU) on the CPU or GPU.
Same as ``ctcrnn train``. Ctrl-C stops after the current step with a checkpoint of it, prints where it
stopped and the command that resumes, and exits with status 130 (128 + SIGINT, the shell's convention).
"""
import sys

from ctcrnn.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])

"""Train a CNN-RNN CTC model: ``python train.py [--config configs/X.yaml] [key.sub=value ...]``.

With no arguments it trains the embedded default (SyntheticActions, BiGRU) on the CPU or GPU.
Same as ``ctcrnn train``.
"""
import sys

from ctcrnn.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])

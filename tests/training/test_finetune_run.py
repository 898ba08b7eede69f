"""trainer.init_from and trainer.freeze through the trainer: a new run starts from another run's weights
(fresh optimizer), frozen parameters end exactly as they started, the others move."""
import logging

import torch

from ctcrnn.checkpoint import load_checkpoint
from ctcrnn.config import load_config
from ctcrnn.training.trainer import train
from tests.fixtures import tiny_config_overrides


def test_a_run_starts_from_another_runs_weights_with_frozen_parts(tmp_path, caplog):
    first = train(load_config(None, tiny_config_overrides(tmp_path, **{"trainer.max_epochs": 1,
                                                                      "trainer.run_name": "first"})))
    source = load_checkpoint(first / "last.pt")["model"]
    with caplog.at_level(logging.INFO):
        second = train(load_config(None, tiny_config_overrides(tmp_path, **{
            "trainer.max_epochs": 1, "trainer.run_name": "second", "trainer.init_from": str(first / "last.pt"),
            "trainer.freeze": "[frontend]", "trainer.seed": 1})))
    assert "initialised from" in caplog.text and "frozen:" in caplog.text
    state = load_checkpoint(second / "last.pt")
    tuned = state["model"]
    frontend = [k for k in tuned if k.startswith("frontend.") and tuned[k].is_floating_point()]
    assert any("running_mean" in k for k in frontend)  # BatchNorm statistics are held as well as the weights
    assert frontend and all(torch.equal(tuned[k], source[k]) for k in frontend)
    assert not torch.equal(tuned["head.weight"], source["head.weight"])  # the rest trained on
    assert state["step"] == 6  # a fresh schedule: one epoch of 48 clips in batches of 8

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_config_overrides(tmp_path, **extra) -> list[str]:
    """A SyntheticActions run small enough for a test: few short clips, small model, one thread."""
    overrides = {
        "data.args.train_size": 48, "data.args.val_size": 8, "data.args.test_size": 8,
        "data.args.frame_size": 16, "data.args.min_frames": 20, "data.args.max_frames": 32,
        "data.batch_size": 8, "data.eval_batch_size": 8, "data.num_workers": 0,
        "model.args.widths": "[8, 16]", "model.args.feature_dim": 32, "model.encoder.hidden_size": 32,
        "trainer.max_epochs": 2, "trainer.warmup_steps": 2, "trainer.progress": "false",
        "trainer.out_dir": str(tmp_path), "trainer.run_name": "tiny",
    }
    overrides.update(extra)
    return [f"{k}={v}" for k, v in overrides.items()]

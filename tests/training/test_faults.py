"""Runs that get killed: a real training subprocess SIGKILLed at random points and resumed ends with
weights bitwise equal to an uninterrupted run; a corrupted last checkpoint falls back to the previous
good one; step checkpoints keep the newest K."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ctcrnn.checkpoint import CheckpointError, load_checkpoint
from ctcrnn.config import load_config
from ctcrnn.training.trainer import train

from tests.fixtures import tiny_config_overrides

REPO = Path(__file__).resolve().parents[2]  # the repository: tests/training/../..


def run_cli(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ctcrnn.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


def last_inode(run_dir: Path) -> int | None:
    try:
        return (run_dir / "last.pt").stat().st_ino
    except FileNotFoundError:
        return None


def weights(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def kill_run_overrides(tmp_path, name):
    return tiny_config_overrides(tmp_path, **{
        "trainer.run_name": name, "trainer.max_epochs": 3, "trainer.threads": 1, "data.args.train_size": 64,
        "trainer.checkpoint_every_steps": 1, "trainer.keep_checkpoints": 2, "trainer.log_every_steps": 1})


def test_sigkill_at_random_points_then_resume_is_bitwise_equal(tmp_path):
    reference = run_cli(["train", "--no-eval", *kill_run_overrides(tmp_path, "whole")])
    assert reference.wait(timeout=300) == 0, reference.stderr.read().decode()[-2000:]

    run_dir, rng, kills = tmp_path / "killed", random.Random(7), 0
    args = ["train", "--no-eval", *kill_run_overrides(tmp_path, "killed")]
    while True:
        proc = run_cli(args)
        if kills < 4:
            # Wait for this life's first checkpoint (last.pt replaced), then kill at a random moment after it.
            before, deadline = last_inode(run_dir), time.time() + 120
            while proc.poll() is None and last_inode(run_dir) == before and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                args = ["train", "--no-eval", "--resume", str(run_dir)]
                continue
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
        break
    assert kills >= 2, "the run finished before it could be killed twice: make it longer"
    whole, resumed = weights(tmp_path / "whole" / "last.pt"), weights(run_dir / "last.pt")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole), "resumed weights differ from the unbroken run"
    # The logs were cut back at each resume: one row per epoch and per step, none twice.
    assert [r.split(",")[0] for r in (run_dir / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2", "3"]
    steps = [int(r.split(",")[0]) for r in (run_dir / "steps.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, len(steps) + 1)) == list(range(1, 25))
    assert len(list((run_dir / "checkpoints").glob("step-*.pt"))) == 2  # keep_checkpoints


def test_corrupted_last_checkpoint_falls_back_to_the_previous_good_one(tmp_path, caplog):
    run_dir = train(load_config(None, tiny_config_overrides(
        tmp_path, **{"trainer.checkpoint_every_steps": 2, "trainer.keep_checkpoints": 3})))
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    assert [p.name for p in checkpoints] == ["step-00000008.pt", "step-00000010.pt", "step-00000012.pt"]
    # last.pt is the newest step checkpoint; truncate it (and with it, step-12: they share their bytes).
    data = (run_dir / "last.pt").read_bytes()
    (run_dir / "last.pt").unlink()
    (run_dir / "last.pt").write_bytes(data[: len(data) // 3])
    checkpoints[-1].unlink()
    checkpoints[-1].write_bytes(data[: len(data) // 3])
    with caplog.at_level("WARNING"):
        train(None, resume=run_dir, overrides=["trainer.max_epochs=2"])
    assert "falling back to" in caplog.text and "step-00000010.pt" in caplog.text
    state = load_checkpoint(run_dir / "last.pt")
    assert state["epoch"] == 1 and state["epoch_done"] and state["step"] == 12
    for path in (run_dir / "checkpoints").glob("*.pt"):
        path.write_bytes(b"broken")
    (run_dir / "last.pt").write_bytes(b"broken")
    with pytest.raises(CheckpointError, match="no readable checkpoint to resume from"):
        train(None, resume=run_dir)


def test_non_finite_steps_leave_the_weights_alone_and_stop_the_run_when_they_persist(tmp_path, monkeypatch, caplog):
    import ctcrnn.training.stepping as stepping

    real_loss, calls = stepping.ctc_loss, {"n": 0}

    def poisoned(log_probs, *args, **kwargs):  # from the 3rd batch on, every loss is NaN
        calls["n"] += 1
        return real_loss(log_probs * (float("nan") if calls["n"] > 2 else 1.0), *args, **kwargs)

    monkeypatch.setattr(stepping, "ctc_loss", poisoned)
    overrides = tiny_config_overrides(tmp_path, **{"trainer.max_bad_steps": 3, "trainer.checkpoint_every_steps": 1,
                                                   "model.args.aux_ctc_weight": 0})  # one ctc_loss call per batch
    with caplog.at_level("WARNING"), pytest.raises(ValueError, match="3 non-finite steps in a row: stopping"):
        train(load_config(None, overrides))
    assert caplog.text.count("non-finite loss/gradient at step 2 (ids ['train_") == 3  # logged with sample ids
    state = load_checkpoint(tmp_path / "tiny" / "last.pt")  # the last good step, untouched by the NaN ones
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_time_based_checkpoints(tmp_path, monkeypatch):
    import ctcrnn.training.checkpoints as checkpoints

    clock = {"now": 1000.0}
    monkeypatch.setattr(checkpoints.time, "time", lambda: clock["now"])
    checkpointer = checkpoints.Checkpointer(tmp_path, keep=2, every_steps=0, every_minutes=5)
    assert not checkpointer.due(1)
    clock["now"] += 299
    assert not checkpointer.due(2)
    clock["now"] += 1
    assert checkpointer.due(3)


def test_mid_epoch_resume_refuses_overrides_that_change_the_batches(tmp_path):
    run_dir = train(load_config(None, tiny_config_overrides(tmp_path, **{"trainer.checkpoint_every_steps": 2,
                                                                         "trainer.max_epochs": 1})))
    mid_epoch = run_dir / "checkpoints" / "step-00000004.pt"
    assert not load_checkpoint(mid_epoch)["epoch_done"]
    with pytest.raises(ValueError, match="middle of an epoch.*data.batch_size=4"):
        train(None, resume=mid_epoch, overrides=["data.batch_size=4"])
    train(None, resume=run_dir, overrides=["trainer.max_epochs=2", "data.batch_size=4"])  # fine at an epoch end


def test_keep_checkpoints_never_deletes_the_new_one_and_drops_an_abandoned_future(tmp_path):
    from ctcrnn.training.checkpoints import Checkpointer

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for step in (3, 4, 9):  # 9: written by a life of the run that a resume from step 4 abandoned
        (folder / f"step-{step:08d}.pt").write_bytes(b"old")
    checkpointer = Checkpointer(tmp_path, keep=2, every_steps=1, every_minutes=0)
    checkpointer.save({"step": 5, "model": {}})
    assert sorted(p.name for p in folder.glob("*.pt")) == ["step-00000004.pt", "step-00000005.pt"]
    Checkpointer(tmp_path, keep=1, every_steps=1, every_minutes=0).save({"step": 6, "model": {}})
    assert [p.name for p in folder.glob("*.pt")] == ["step-00000006.pt"]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 6  # not a whole checkpoint: no arch


def test_temp_files_of_an_interrupted_write_are_cleared_at_start(tmp_path):
    from ctcrnn.training.checkpoints import Checkpointer

    (tmp_path / "checkpoints").mkdir()
    leftovers = [tmp_path / ".last.pt.1234.tmp", tmp_path / "checkpoints" / ".step-00000002.pt.abcd.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")
    (tmp_path / "keep.tmp").write_bytes(b"not ours")
    Checkpointer(tmp_path, keep=1, every_steps=1, every_minutes=0)
    assert not any(path.exists() for path in leftovers) and (tmp_path / "keep.tmp").exists()

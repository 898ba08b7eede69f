"""Hostile input, round two (issue 16): the training, config, reader and checkpoint half.

Each class of bad input is fed through the real entry points (``ctcrnn train`` in process, ``python train.py``
in a subprocess where the exit status and stderr matter) and must end in a clear error naming the key, file
or process and the fix, with no traceback and no run folder left behind by a refused config; or, for a bad
clip, in a counted skip naming its file. The classes: config values of the wrong type or range (nested and in
YAML files), devices, output folders, hand-edited checkpoints, training data that is mostly or wholly
unusable, NaN/inf in audio and images, a vocabulary changed under a resumed run, Ctrl-C, and two processes
in one run folder.

Training runs use ``hostile_toy``, a dataset registered here: (12-14, 8) random features whose unreadable
items are chosen by index, and which sends itself SIGINT (a deterministic Ctrl-C) at the training fetches
listed in the environment variable HOSTILE_SIGINT_AT.
"""
import json
import logging
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from torch.utils.data import Dataset

import ctcrnn  # noqa: F401  (fills the registries)
from ctcrnn.audio.io import AudioError
from ctcrnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ctcrnn.cli import main
from ctcrnn.config import ConfigError, load_config
from ctcrnn.data import build_dataset
from ctcrnn.image.io import ImageError, read_grey
from ctcrnn.registry import DATASETS, READERS, register_dataset
from ctcrnn.training.runlock import RunLock
from ctcrnn.training.skips import EARLY_CLIPS, TooManySkipped, probe_size
from ctcrnn.training.trainer import train

REPO = Path(__file__).resolve().parents[2]


class HostileToy(Dataset):
    """``size`` items of (12-14, 8) random features with 2-label targets from ``labels``; the items in ``bad``
    are unreadable, and the ``short`` ones declare length 1 (as unreadable audio does) for length buckets."""

    fetched = 0  # training items fetched in this process (the SIGINT schedule counts these)

    def __init__(self, split: str, size: int, bad: list, labels: list):
        self.split, self.size, self.bad = split, size, set(bad)
        self.labels = ["<blank>", *labels]
        self.input_spec = {"modality": "toy", "step_shape": [8]}
        self.lengths = [1 if i in self.bad else 12 + i % 3 for i in range(size)]
        self.sigint_at = {int(n) for n in os.environ.get("HOSTILE_SIGINT_AT", "").split(",") if n}

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        if self.split == "train":
            HostileToy.fetched += 1
            if HostileToy.fetched in self.sigint_at:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, at a known point of the run
        if i in self.bad:
            return {"id": f"toy-{self.split}-{i}", "error": f"toy-{self.split}-{i}.wav does not exist"}
        x = torch.randn(12 + i % 3, 8, generator=torch.Generator().manual_seed(i))
        return {"id": f"toy-{self.split}-{i}", "input": x, "target": [1 + i % 3, 1 + (i + 1) % 3]}


def hostile_toy(split: str, size: int = 8, bad: list = (), labels: list = ("a", "b", "c")) -> HostileToy:
    return HostileToy(split, size if split == "train" else 4, list(bad) if split == "train" else [], list(labels))


if "hostile_toy" not in DATASETS.list():
    register_dataset(hostile_toy)

TOY = {
    "data.name": "hostile_toy", "data.batch_size": 2, "data.eval_batch_size": 4, "data.num_workers": 0,
    "model.name": "weak_action_bigru", "model.args.proj_dim": 8, "model.args.input_dropout": 0.0,
    "model.encoder.hidden_size": 8, "model.encoder.num_layers": 1,
    "trainer.max_epochs": 1, "trainer.warmup_steps": 1, "trainer.progress": "false", "trainer.threads": 1,
    "trainer.device": "cpu",
}


def toy_overrides(out_dir, run_name: str = "toy", **extra) -> list[str]:
    values = {**TOY, "trainer.out_dir": str(out_dir), "trainer.run_name": run_name, **extra}
    return [f"{k}={v}" for k, v in values.items()]


def cli_error(args: list[str]) -> str:
    """The message of a ``ctcrnn`` command that must fail cleanly (SystemExit with the text, no traceback)."""
    with pytest.raises(SystemExit) as info:
        main(args)
    assert isinstance(info.value.code, str), info.value.code
    return info.value.code


def run_train_py(args: list[str], sigint_at: str = "") -> subprocess.CompletedProcess:
    """``python train.py ARGS`` in a subprocess with hostile_toy registered (and its SIGINT schedule)."""
    code = ("import runpy, sys; import tests.training.test_hostile_training; sys.argv = ['train.py', *sys.argv[1:]]; "
            "runpy.run_path('train.py', run_name='__main__')")
    env = {**os.environ, "HOSTILE_SIGINT_AT": sigint_at, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A finished 1-epoch hostile_toy run (8 clips, 4 steps)."""
    return train(load_config(None, toy_overrides(tmp_path_factory.mktemp("toy"))))


# ---------------------------------------------------------------------------------------------------------
# Config values: refused at load time, naming the dotted key, before any run folder exists


@pytest.mark.parametrize("override, message", [
    pytest.param("trainer.lr=nan", "trainer.lr must be a finite number, got 'nan'", id="nan_for_a_float"),
    pytest.param("trainer.grad_clip=inf", "trainer.grad_clip must be a finite number, got 'inf'", id="inf_for_a_float"),
    pytest.param("trainer.max_skipped_share=1.5", "trainer.max_skipped_share must be >= 0 and <= 1.0, got 1.5",
                 id="share_above_one"),
    pytest.param("trainer.freeze=[1]", "trainer.freeze expects a list of str, got 1 in [1]", id="list_of_wrong_items"),
    pytest.param("data.args.size=[3]", "data.args.size expects int, got [3]", id="list_for_a_dataset_int"),
    pytest.param("data.args.size=many", "data.args.size expects int, got 'many'", id="text_for_a_dataset_int"),
    pytest.param("model.args.proj_dim=[8, 8]", "model.args.proj_dim expects int, got [8, 8]",
                 id="list_for_a_model_int"),
    pytest.param("model.args.input_dropout=.nan", "model.args.input_dropout expects float, got nan",
                 id="nan_for_a_model_float"),
    pytest.param("model.args.in_shape=[9]", "model.args.in_shape=[9] but the dataset sets in_shape from the step "
                 "shape of its input: [8]; drop model.args.in_shape", id="model_argument_the_dataset_sets"),
    pytest.param("model.args.num_classes=7", "model.args.num_classes=7 but the dataset sets num_classes from the "
                 "number of labels: 4", id="num_classes_the_dataset_sets"),
    pytest.param("trainer.device=tpu", "trainer.device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'",
                 id="unknown_device"),
    pytest.param("trainer.device=cuda:1", "trainer.device=cuda:1 but this machine has no CUDA device: use "
                 "trainer.device=auto or cpu", id="cuda_without_cuda",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_bad_config_value_is_refused_before_a_run_folder_exists(tmp_path, override, message):
    out = tmp_path / "runs"
    assert message in cli_error(["train", "--no-eval", *toy_overrides(out), override])
    assert not out.exists()


def test_nested_feature_setting_of_the_wrong_type_names_its_dotted_key(tmp_path):
    """data.args.features.n_mels=[3] used to fail in FeatureConfig's range check with a TypeError traceback."""
    manifest = write_calls(tmp_path, 1)
    message = cli_error(["train", "--no-eval", f"trainer.out_dir={tmp_path / 'runs'}", "trainer.device=cpu",
                         "data.name=audio_manifest", f"data.args.train={manifest}", f"data.args.val={manifest}",
                         "data.args.features.n_mels=[3]"])
    assert "data.args.features.n_mels expects int, got [3]" in message
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, message", [
    pytest.param("trainer:\n  lr: 0.1\n  max_epochs: 1\n  lr: 0.2\n", "key 'lr' appears twice (lines 2 and 4)",
                 id="duplicate_key"),
    pytest.param("trainer:\n  lr: 0.1\ntrainer:\n  seed: 3\n", "key 'trainer' appears twice (lines 1 and 3)",
                 id="duplicate_section"),
    pytest.param("data:\n  args:\n    size: [3]\n", "data.args.size expects int, got [3]", id="nested_list_for_int"),
    pytest.param("trainer:\n  weight_decay: .inf\n", "trainer.weight_decay must be a finite number, got inf",
                 id="inf_in_file"),
])
def test_bad_config_file_names_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    overrides = [o for o in toy_overrides(tmp_path / "runs") if not o.startswith("data.args")]
    error = cli_error(["train", "--no-eval", "--config", str(path), *overrides])
    assert message in error and (str(path) in error or "data.args" in message), error
    assert not (tmp_path / "runs").exists()


def test_config_path_that_is_a_directory_says_so(tmp_path):
    assert f"config file {tmp_path} is a directory" in cli_error(["train", "--config", str(tmp_path)])


@pytest.mark.parametrize("layout", ["out_dir_is_a_file", "out_dir_under_a_file"])
def test_out_dir_that_cannot_hold_runs_is_a_clear_error(tmp_path, layout):
    (tmp_path / "taken").write_text("not a folder")
    out = tmp_path / "taken" if layout == "out_dir_is_a_file" else tmp_path / "taken" / "runs"
    message = cli_error(["train", "--no-eval", *toy_overrides(out)])
    assert "trainer.out_dir" in message and "is a file, not a folder" in message, message


# ---------------------------------------------------------------------------------------------------------
# Hand-edited checkpoints: CheckpointError naming the file and the key


def drop(key):
    return lambda state: state.pop(key)


@pytest.mark.parametrize("edit, message, resume_only", [
    pytest.param(lambda s: s.__setitem__("labels", s["labels"][:-1]),
                 "'labels' has 3 names but the model ('arch' num_classes) has 4 outputs", False, id="labels_shortened"),
    pytest.param(lambda s: s.__setitem__("labels", "<blank> a b c"), "key 'labels' must be a list, got str", False,
                 id="labels_not_a_list"),
    pytest.param(drop("model"), "key 'model' is missing", False, id="model_removed"),
    pytest.param(drop("arch"), "key 'arch' is missing", False, id="arch_removed"),
    pytest.param(drop("input_spec"), "key 'input_spec' is missing", False, id="input_spec_removed"),
    pytest.param(lambda s: s["arch"]["kwargs"].__setitem__("proj_dim", "eight"),
                 "arch.kwargs.proj_dim expects int, got 'eight'", False, id="arch_argument_of_wrong_type"),
    pytest.param(lambda s: s["arch"].__setitem__("name", "no_such_model"), "unknown model 'no_such_model'", False,
                 id="arch_of_unknown_model"),
    pytest.param(lambda s: s["model"].__setitem__("head.bias", [0.0] * 4), "'model' must map parameter names to "
                 "tensors, but 'head.bias' holds list", False, id="weights_not_tensors"),
    pytest.param(drop("step"), "key 'step' is missing, so training cannot resume from it", True, id="step_removed"),
    pytest.param(lambda s: s.__setitem__("epoch", "0"), "key 'epoch' must be int, got str", True,
                 id="epoch_of_wrong_type"),
    pytest.param(lambda s: s.__setitem__("optimizer", {"state": {}, "param_groups": []}),
                 "its 'optimizer' state does not fit this run", True, id="optimizer_of_another_model"),
])
def test_hand_edited_checkpoint_is_refused_naming_file_and_key(toy_run, tmp_path, edit, message, resume_only):
    state = load_checkpoint(toy_run / "last.pt")
    edit(state)
    path = tmp_path / "edited.pt"
    save_checkpoint(state, path)
    with pytest.raises(CheckpointError) as info:
        train(None, resume=path)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)
    if not resume_only:
        error = cli_error(["evaluate", "--checkpoint", str(path), "--out", str(tmp_path / "ev")])
        assert str(path) in error and message in error, error


# ---------------------------------------------------------------------------------------------------------
# Resuming with another vocabulary: the message shows the difference


@pytest.mark.parametrize("labels, difference", [
    pytest.param("[a, b, d]", "only in the checkpoint: 'c'; only in the data: 'd'", id="a_label_replaced"),
    pytest.param("[a, b, c, d]", "only in the data: 'd'", id="a_label_added"),
    pytest.param("[c, b, a]", "the same 3 labels in another order: index 1 is 'a' in the checkpoint but 'c' in "
                 "the data", id="same_labels_reordered"),
])
def test_vocabulary_mismatch_on_resume_shows_the_difference(toy_run, labels, difference):
    message = cli_error(["train", "--no-eval", "--resume", str(toy_run), f"data.args.labels={labels}",
                         "trainer.max_epochs=2"])
    assert difference in message and str(toy_run) in message, message


# ---------------------------------------------------------------------------------------------------------
# Training data that cannot be used: stop with the count and the list, never "train" on nothing


@pytest.mark.parametrize("bad, share, message", [
    pytest.param(list(range(8)), 0.5, "epoch 1: 6 of its 8 training clips could not be used, more than "
                 "trainer.max_skipped_share=0.5 allows", id="every_clip_unreadable"),
    pytest.param(list(range(8)), 1.0, "epoch 1 trained on no clip: 8 of its 8 training clips could not be used",
                 id="every_clip_unreadable_whatever_the_share"),
    pytest.param([0, 1, 2, 3, 5], 0.5, "epoch 1: 5 of its 8 training clips could not be used",
                 id="more_than_the_share_unreadable"),
])
def test_run_on_unusable_clips_stops_naming_count_and_list(tmp_path, bad, share, message):
    error = cli_error(["train", *toy_overrides(tmp_path, **{"data.args.bad": json.dumps(bad),
                                                            "trainer.max_skipped_share": share})])
    assert message in error and f"they are listed in {tmp_path / 'toy' / 'skipped.tsv'}" in error, error
    listed = (tmp_path / "toy" / "skipped.tsv").read_text().splitlines()[1:]
    assert len(listed) == int(message.split(" of its")[0].split()[-1])  # the count the message gives
    assert not (tmp_path / "toy" / "last.pt").exists() and not (tmp_path / "toy" / "best.pt").exists()


def test_skips_within_the_share_are_counted_and_training_goes_on(tmp_path):
    run_dir = train(load_config(None, toy_overrides(tmp_path, **{"data.args.bad": "[0, 1, 2, 3, 5]",
                                                                 "trainer.max_skipped_share": 0.75})))
    row = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert row["skipped_samples"] == 5 and math.isfinite(row["train_loss"])


def test_a_split_of_unreadable_clips_stops_early_without_reading_an_epoch(tmp_path, monkeypatch):
    """400 unreadable clips: after the first EARLY_CLIPS, probe_size(0.5) = 20 clips drawn at random are read,
    and the run stops there: 52 fetches, not the 201 that reaching the share (> 200) would take."""
    monkeypatch.setattr(HostileToy, "fetched", 0)
    overrides = toy_overrides(tmp_path, **{"data.args.size": 400, "data.args.bad": json.dumps(list(range(400))),
                                           "data.batch_size": 4})
    with pytest.raises(TooManySkipped) as info:
        train(load_config(None, overrides))
    assert probe_size(0.5) == 20 and EARLY_CLIPS == 32
    assert HostileToy.fetched == EARLY_CLIPS + 20
    assert (f"none of the first {EARLY_CLIPS} training clips could be used, nor any of 20 more drawn at random "
            f"from the 400 of the split") in str(info.value)


def test_unreadable_clips_bunched_first_do_not_stop_a_run_whose_others_are_fine(tmp_path, caplog):
    """Length buckets with SortaGrad put the 48 unreadable clips (length 1) first, so the run meets 32 bad clips
    before any good one; the clips drawn at random are fine, so it goes on, and says so."""
    overrides = toy_overrides(tmp_path, **{"data.args.size": 160, "data.args.bad": json.dumps(list(range(0, 160, 10))
                                                                                              + list(range(1, 160, 5))),
                                           "data.max_frames": 56, "data.sortagrad": "true", "data.batch_size": 4})
    with caplog.at_level(logging.INFO, logger="ctcrnn"):
        run_dir = train(load_config(None, overrides))
    assert json.loads((run_dir / "metrics.jsonl").read_text())["skipped_samples"] == 48
    assert (f"the first {EARLY_CLIPS} training clips could not be used, but some of 20 drawn at random from the "
            f"split can: training goes on") in caplog.text


# ---------------------------------------------------------------------------------------------------------
# NaN/inf between the file and the features: an error naming the file


RATE = 8000


def write_calls(folder: Path, count: int, loud: str = "") -> str:
    """``count`` one-second tones as 16-bit WAVs (and a float WAV of amplitude 1e30 named ``loud``) in a
    manifest; returns its path."""
    entries = []
    t = np.arange(RATE) / RATE
    for i in range(count):
        sf.write(folder / f"tone{i}.wav", 0.3 * np.sin(2 * np.pi * (400 + 100 * i) * t), RATE)
        entries.append({"path": f"tone{i}.wav", "text": "ab"[i % 2]})
    if loud:
        sf.write(folder / loud, (1e30 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE, subtype="FLOAT")
        entries.append({"path": loud, "text": "a"})
    (folder / "calls.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return str(folder / "calls.jsonl")


def test_float_wav_of_huge_amplitude_is_an_error_naming_it_and_spoils_no_statistics(tmp_path):
    """A float WAV holding 1e30 has finite samples whose power spectrum overflows: its features were NaN, and
    with global normalisation they made every clip's features NaN through the statistics."""
    manifest = write_calls(tmp_path, 3, loud="loud.wav")
    dataset = build_dataset("audio_manifest", "train", {"train": manifest, "features": {
        "sample_rate": RATE, "n_mels": 20, "normalize": "global"}})
    items = [dataset[i] for i in range(len(dataset))]
    assert str(tmp_path / "loud.wav") in items[3]["error"] and "NaN/inf" in items[3]["error"]
    assert "peak at 1e+30" in items[3]["error"]
    assert all(torch.isfinite(item["input"]).all() for item in items[:3])
    with pytest.raises(AudioError, match="NaN/inf"):
        READERS.get("audio")(tmp_path / "loud.wav", dataset.input_spec)


def test_float_image_with_nan_pixels_is_an_error_naming_it(tmp_path):
    pixels = np.full((32, 96), 0.9, dtype=np.float32)
    pixels[10:20, 10:80] = 0.1
    pixels[5, 5] = np.nan
    Image.fromarray(pixels).save(tmp_path / "line.tif")  # float32: a mode "F" TIFF
    with pytest.raises(ImageError) as info:
        read_grey(tmp_path / "line.tif")
    assert str(tmp_path / "line.tif") in str(info.value) and "1 NaN/inf pixels" in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# Run names and logs name the encoder that runs


def test_run_name_and_log_name_the_encoder_type(tmp_path, caplog):
    overrides = [o for o in toy_overrides(tmp_path) if not o.startswith("trainer.run_name")]
    with caplog.at_level(logging.INFO, logger="ctcrnn"):
        run_dir = train(load_config(None, [*overrides, "trainer.run_name=", "model.encoder.type=tcn"]))
    assert run_dir.name == "hostile_toy-weak_action_bigru-tcn"
    assert "model weak_action_bigru (tcn, " in caplog.text


# ---------------------------------------------------------------------------------------------------------
# Ctrl-C: one line, exit status 130, a whole checkpoint of the last step, and the command that resumes


def final_weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "last.pt")["model"]


def test_ctrl_c_stops_after_the_step_with_a_checkpoint_that_resumes_exactly(tmp_path):
    """SIGINT while fetching the 3rd training item of epoch 2 (fetch 11: 8 per epoch, 2 per batch): the step of
    that batch (step 6) finishes, is checkpointed and the run stops; resumed, it ends bitwise equal to an
    uninterrupted run."""
    args = ["--no-eval", *toy_overrides(tmp_path, "cut", **{"trainer.max_epochs": 3})]
    result = run_train_py(args, sigint_at="11")
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr[-3000:]
    checkpoint = tmp_path / "cut" / "checkpoints" / "step-00000006.pt"
    assert result.stderr.splitlines()[-1] == (
        f"interrupted at step 6 (epoch 2); the last checkpoint is {checkpoint}; resume with: python train.py "
        f"--resume {tmp_path / 'cut'}")
    state = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (state["step"], state["epoch"], state["position"], state["epoch_done"]) == (6, 1, 2, False)
    resumed = train(None, resume=tmp_path / "cut")
    whole = train(load_config(None, toy_overrides(tmp_path, "whole", **{"trainer.max_epochs": 3})))
    cut, reference = final_weights(resumed), final_weights(whole)
    assert all(torch.equal(cut[k], reference[k]) for k in reference)


def test_second_ctrl_c_stops_at_once_naming_the_last_checkpoint(tmp_path):
    """A second SIGINT (fetch 12) stops inside the step; nothing more is written: last.pt stays epoch 1's."""
    result = run_train_py(["--no-eval", *toy_overrides(tmp_path, "cut", **{"trainer.max_epochs": 3})],
                          sigint_at="11,12")
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1] == (
        f"interrupted at step 5 (epoch 2); the last checkpoint is {tmp_path / 'cut' / 'checkpoints' / 'step-00000004.pt'}"
        f"; resume with: python train.py --resume {tmp_path / 'cut'}")
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step"] == 4


# ---------------------------------------------------------------------------------------------------------
# One writer per run folder


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """A process that holds ``run_dir``'s lock until killed; returns once it holds it."""
    code = ("import sys; from ctcrnn.training.runlock import RunLock; RunLock().acquire(sys.argv[1]); "
            "print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_second_process_in_a_run_folder_is_refused_until_the_holder_dies(toy_run, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("last.pt", "config.yaml"):
        (run_dir / name).write_bytes((toy_run / name).read_bytes())
    holder = hold_lock(run_dir)
    try:
        message = cli_error(["train", "--no-eval", "--resume", str(run_dir), "trainer.max_epochs=2"])
        assert f"run folder {run_dir} is in use by process {holder.pid} on " in message, message
        assert "two processes must not train in one run" in message
    finally:
        holder.kill()  # SIGKILL: no chance to clean up; the OS releases the lock
        holder.wait()
    run = train(None, resume=run_dir, overrides=["trainer.max_epochs=2"])
    assert load_checkpoint(run / "last.pt")["epoch"] == 1


def test_new_run_beside_a_starting_one_takes_the_next_name(tmp_path):
    """A run starting in out_dir/toy (locked, no config.yaml yet) sends a second run of that name to toy-2."""
    (tmp_path / "toy").mkdir()
    lock = RunLock()
    lock.acquire(tmp_path / "toy")
    try:
        assert train(load_config(None, toy_overrides(tmp_path))) == tmp_path / "toy-2"
    finally:
        lock.release()

"""Bad-input corpus (issue 6): broken media, transcripts, manifests, configs, features and checkpoints fed
through the real code paths (dataset builders, DataLoader + collate, ``train``, ``evaluate``, the CLI,
checkpoint save/load, config loading).

Each case asserts its outcome exactly: either a clear error whose message names the item (file, line, id
or key) and the fix, or a counted skip listed in ``skipped.tsv`` / ``metrics.jsonl``; never a crash
mid-epoch, never non-finite weights in a saved checkpoint, never a lost checkpoint.

Media fixtures are real WAV files (DTMF calls written with soundfile); feature-level faults come from a
tiny dataset registered here (``bad_inputs_toy``).
"""
import errno
import io
import json
import logging
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tests.fixtures import assert_reports_add_up
from torch.utils.data import DataLoader, Dataset

import ctcrnn  # noqa: F401  (fills the registries, the audio datasets included)
from ctcrnn.audio.datasets import read_manifest
from ctcrnn.audio.dtmf import DTMFConfig, dtmf_dataset_item
from ctcrnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ctcrnn.cli import main
from ctcrnn.config import ConfigError, load_config
from ctcrnn.data import build_dataset, collate
from ctcrnn.evaluation.scoring import evaluate
from ctcrnn.registry import DATASETS, register_dataset
from ctcrnn.training.trainer import train

RATE = 8000
KEYS = "0123456789*#ABCD"
DTMF = DTMFConfig(max_groups=1, max_keys_per_group=2)

# A model small enough for a one-epoch test on one thread.
TINY = {
    "data.batch_size": 4, "data.eval_batch_size": 4, "data.num_workers": 0,
    "model.name": "deepspeech2_small", "model.args.conv_channels": 2, "model.args.freq_kernels": "[5, 5]",
    "model.encoder.hidden_size": 8, "model.encoder.num_layers": 1,
    "trainer.max_epochs": 1, "trainer.warmup_steps": 1, "trainer.progress": "false", "trainer.threads": 1,
    "trainer.device": "cpu",
}


def overrides(out_dir, run_name: str, **extra) -> list[str]:
    return [f"{k}={v}" for k, v in {**TINY, "trainer.out_dir": str(out_dir), "trainer.run_name": run_name,
                                     **extra}.items()]


def audio_overrides(out_dir, run_name: str, train_manifest, val_manifest=None, **extra) -> list[str]:
    return overrides(out_dir, run_name, **{
        "data.name": "audio_manifest", "data.args.train": str(train_manifest),
        "data.args.val": str(val_manifest or train_manifest), "data.args.test": str(val_manifest or train_manifest),
        "data.args.features.sample_rate": RATE, "data.args.features.n_mels": 20, **extra})


def toy_overrides(out_dir, run_name: str, corrupt: str = "", **extra) -> list[str]:
    return overrides(out_dir, run_name, **{"data.name": "bad_inputs_toy", "data.args.corrupt": corrupt or "none",
                                           **extra})


def write_manifest(path, entries) -> str:
    """JSON Lines; a str entry is written verbatim (for broken lines)."""
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in entries))
    return str(path)


def assert_finite_checkpoint(path) -> dict:
    state = load_checkpoint(path)
    for key, value in state["model"].items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), f"{path}: {key} holds non-finite values"
    return state


def skipped_rows(run_dir) -> list[list[str]]:
    return [line.split("\t") for line in (run_dir / "skipped.tsv").read_text().splitlines()[1:]]


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------------------
# A registered toy dataset of (T, 8) features with one item corrupted on request


class ToyFeatures(Dataset):
    """8 items of (12-14, 8) random features, targets of 2 labels from "abc"; item 3 carries ``corrupt``."""

    BAD = 3
    interrupt_after = None  # a test sets it: the item fetched after this many fetches raises KeyboardInterrupt
    fetched = 0

    def __init__(self, split: str, corrupt: str, labels: list):
        self.split, self.corrupt = split, corrupt
        self.labels = ["<blank>", *labels]
        self.input_spec = {"modality": "toy", "step_shape": [8]}

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        ToyFeatures.fetched += 1
        if self.interrupt_after is not None and ToyFeatures.fetched > self.interrupt_after:
            raise KeyboardInterrupt("killed while reading a batch")
        x = torch.randn(12 + i % 3, 8, generator=torch.Generator().manual_seed(i))
        target = [1 + i % 3, 1 + (i + 1) % 3]
        if i == self.BAD:
            if self.corrupt == "nan":
                x[5, 2] = float("nan")
            elif self.corrupt == "inf":
                x[0, 0] = float("inf")
            elif self.corrupt == "dim":
                x = torch.randn(13, 9)
            elif self.corrupt == "label_range":
                target = [1, 7]
            elif self.corrupt == "label_negative":
                target = [-1, 2]
            elif self.corrupt == "blank":
                target = [1, 0, 2]
        return {"id": f"toy-{self.split}-{i}", "input": x, "target": target}


def bad_inputs_toy(split: str, corrupt: str = "none", labels: list = ("a", "b", "c")) -> ToyFeatures:
    return ToyFeatures(split, corrupt, list(labels))


if "bad_inputs_toy" not in DATASETS.list():
    register_dataset(bad_inputs_toy)


# ---------------------------------------------------------------------------------------------------------
# Real audio: a few good DTMF calls, and one bad file of each kind


def good_calls(folder, count: int = 6) -> list[dict]:
    entries = []
    for i in range(count):
        item = dtmf_dataset_item(7, "train", i, DTMF)
        sf.write(folder / f"ok{i}.wav", item.wave, RATE)
        entries.append({"path": f"ok{i}.wav", "text": item.text})
    return entries


def write_bad_media(folder, kind: str) -> str:
    """Write the bad file of ``kind`` (named after it) into ``folder``; returns its file name."""
    good = (folder / "ok0.wav").read_bytes()
    name = f"{kind}.wav"
    path = folder / name
    if kind == "missing_file":
        pass
    elif kind == "empty_file":
        path.write_bytes(b"")
    elif kind == "truncated_audio":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "header_only":
        path.write_bytes(good[:60])
    elif kind == "wrong_container_text":
        path.write_text("this is a transcript, not audio\n")
    elif kind == "wrong_container_mp3":
        path.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x0f" + bytes(range(256)) * 4)
    elif kind == "zero_length_media":
        sf.write(path, np.zeros(0, dtype=np.float32), RATE)
    elif kind == "nan_samples":
        wave = dtmf_dataset_item(7, "train", 0, DTMF).wave.astype(np.float32)
        wave[100] = np.nan
        sf.write(path, wave, RATE, subtype="FLOAT")
    elif kind == "inf_samples":
        wave = dtmf_dataset_item(7, "train", 0, DTMF).wave.astype(np.float32)
        wave[-1] = np.inf
        sf.write(path, wave, RATE, subtype="FLOAT")
    elif kind == "huge_amplitude":  # finite samples whose power spectrum overflows float32: NaN features
        wave = dtmf_dataset_item(7, "train", 0, DTMF).wave.astype(np.float32)
        sf.write(path, wave * np.float32(1e30), RATE, subtype="FLOAT")
    elif kind == "path_is_directory":
        path.mkdir()
    else:  # pragma: no cover
        raise KeyError(kind)
    return name


# kind -> phrases the skip reason must hold (besides the file's path)
MEDIA_KINDS = {
    "missing_file": ["does not exist", "check the path"],
    "empty_file": ["is empty (0 bytes)", "re-create it or drop it"],
    "truncated_audio": ["is truncated", "re-copy or re-encode"],
    "header_only": ["is truncated", "re-copy or re-encode"],
    "wrong_container_text": ["is not a readable audio file", "convert it"],
    "wrong_container_mp3": ["is not a readable audio file", "convert it"],
    "zero_length_media": ["holds no audio samples (0 frames)", "drop it"],
    "nan_samples": ["non-finite samples", "re-encode it"],
    "inf_samples": ["non-finite samples", "re-encode it"],
    "huge_amplitude": ["NaN/inf values", "its samples peak at", "re-encode it"],
    "path_is_directory": ["is a directory, not a file", "point it at"],
}


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def bad_corpus_run(tmp_path_factory):
    """One real training run (1 epoch, a DataLoader worker) over good calls plus every bad media kind and
    every bad transcript kind; returns (run folder, data folder, log warnings)."""
    root = tmp_path_factory.mktemp("bad_corpus")
    data = root / "data"
    data.mkdir()
    entries = good_calls(data)
    entries += [{"path": write_bad_media(data, kind), "text": "12"} for kind in MEDIA_KINDS]
    short = dtmf_dataset_item(7, "train", 0, DTMF).wave[:240]  # 30 ms: 4 feature frames, 2 after the conv stride
    sf.write(data / "too_long_transcript.wav", short, RATE)
    entries.append({"path": "too_long_transcript.wav", "text": "1234567"})
    entries.append({"path": "ok1.wav", "text": "", "id": "empty_transcript"})
    entries.append({"path": "ok2.wav", "text": "1x2", "id": "unknown_symbols"})
    # Handled, not skipped: a 16 kHz file in an 8 kHz corpus is resampled, a stereo file mixed down.
    call = dtmf_dataset_item(7, "train", 3, DTMF)
    sf.write(data / "rate_16k.wav", np.repeat(call.wave, 2), 2 * RATE)
    sf.write(data / "stereo.wav", np.stack([call.wave, 0.5 * call.wave], axis=1), RATE, subtype="FLOAT")
    entries += [{"path": "rate_16k.wav", "text": call.text}, {"path": "stereo.wav", "text": call.text}]
    manifest = write_manifest(data / "all.jsonl", entries)
    handler = Records()
    logging.getLogger("ctcrnn").addHandler(handler)
    try:  # 13 of its 22 clips are skipped: more than the default trainer.max_skipped_share (0.5) allows
        run_dir = train(load_config(None, audio_overrides(root, "bad", manifest, **{
            "data.args.tokens": f"[{', '.join(repr(k) for k in KEYS + ' ')}]", "data.num_workers": 1,
            "trainer.max_skipped_share": 0.9})))
    finally:
        logging.getLogger("ctcrnn").removeHandler(handler)
    return run_dir, data, handler.messages


@pytest.mark.parametrize("kind", list(MEDIA_KINDS))
def test_bad_media_is_a_counted_skip_naming_the_file_and_fix(bad_corpus_run, kind):
    run_dir, data, _ = bad_corpus_run
    rows = [r for r in skipped_rows(run_dir) if r[1] == kind]
    assert len(rows) == 1, rows  # once in the one training epoch (validation counts go to metrics)
    reason = rows[0][2]
    assert str(data / f"{kind}.wav") in reason
    for phrase in MEDIA_KINDS[kind]:
        assert phrase in reason, reason


@pytest.mark.parametrize("kind, reason", [
    pytest.param("empty_transcript", "empty transcript", id="empty_transcript"),
    pytest.param("too_long_transcript", "7 labels (0 repeats) need 7 frames but the model outputs 2: shorten the "
                 "subsampling or drop the clip", id="transcript_longer_than_output_frames"),
])
def test_infeasible_transcript_is_a_counted_skip_with_its_reason(bad_corpus_run, kind, reason):
    run_dir, _, _ = bad_corpus_run
    rows = [r for r in skipped_rows(run_dir) if r[1] == kind]
    assert rows == [["1", kind, reason]]


def test_bad_corpus_run_counts_every_skip_and_keeps_finite_weights(bad_corpus_run):
    run_dir, _, _ = bad_corpus_run
    expected = len(MEDIA_KINDS) + 2  # the media kinds, the empty and the too-long transcript
    row = metrics(run_dir)[0]
    assert row["skipped_samples"] == expected and row["val_skipped"] == expected
    assert {r[1] for r in skipped_rows(run_dir)} == set(MEDIA_KINDS) | {"empty_transcript", "too_long_transcript"}
    for name in ("last.pt", "best.pt"):
        assert_finite_checkpoint(run_dir / name)


@pytest.mark.parametrize("kind", ["sample_rate_mismatch", "stereo"])
def test_other_rate_and_stereo_files_are_read_not_skipped(bad_corpus_run, kind):
    """A 16 kHz file in an 8 kHz corpus is resampled and a stereo file is mixed down: both give the
    features of the same call read as 8 kHz mono (stereo: the channel mean)."""
    run_dir, data, _ = bad_corpus_run
    assert {"rate_16k", "stereo"}.isdisjoint(r[1] for r in skipped_rows(run_dir))
    call = dtmf_dataset_item(7, "train", 3, DTMF)
    mono = {"path": "mono.wav", "text": call.text}
    scale = 1.0 if kind == "sample_rate_mismatch" else 0.75
    sf.write(data / "mono.wav", scale * call.wave, RATE, subtype="FLOAT" if kind == "stereo" else "PCM_16")
    other = {"path": "rate_16k.wav" if kind == "sample_rate_mismatch" else "stereo.wav", "text": call.text}
    args = {"train": write_manifest(data / f"{kind}.jsonl", [mono, other]),
            "features": {"sample_rate": RATE, "n_mels": 20, "normalize": "none"}}
    dataset = build_dataset("audio_manifest", "train", args)
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate)))
    assert batch["skipped"] == [] and batch["lengths"].tolist() == dataset.lengths
    a, b = batch["inputs"][0, : batch["lengths"][0]], batch["inputs"][1, : batch["lengths"][1]]
    assert a.shape == b.shape
    if kind == "stereo":  # mean of (w, w/2) is exactly 0.75 w
        torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-3)
    else:  # resampling 16k -> 8k of a sample-doubled signal is close to, not equal to, the original
        assert (b - a).abs().median() < 0.5


def test_unknown_symbols_are_reported_with_counts_and_left_out_of_targets(bad_corpus_run):
    _, data, warnings = bad_corpus_run
    assert any("1 characters in 1 transcripts are not in the vocabulary ('x'x1)" in m for m in warnings), warnings
    dataset = build_dataset("audio_manifest", "train", {"train": str(data / "all.jsonl"), "tokens": list(KEYS + " ")})
    index = [u.id for u in dataset.utterances].index("unknown_symbols")
    assert [dataset.labels[t] for t in dataset.targets[index]] == ["1", "2"]


def test_unknown_symbols_warning_names_the_utterances(bad_corpus_run):
    _, _, warnings = bad_corpus_run
    assert any("'x'x1" in m and "unknown_symbols" in m for m in warnings), warnings


def test_evaluate_lists_unreadable_clips_and_charges_unknown_symbols(bad_corpus_run, tmp_path):
    run_dir, data, _ = bad_corpus_run
    summary = evaluate(run_dir / "last.pt", split=str(data / "all.jsonl"), out_dir=tmp_path / "ev", device="cpu")
    assert summary["unreadable"] == len(MEDIA_KINDS)
    listed = {row[0]: row[1] for row in skipped_rows(tmp_path / "ev")}
    assert sorted(listed) == sorted(MEDIA_KINDS)
    for kind, reason in listed.items():
        assert str(data / f"{kind}.wav") in reason and all(phrase in reason for phrase in MEDIA_KINDS[kind]), reason
    # Every readable entry is scored (evaluation drops no clip for its transcript), each against its raw text:
    # "1x2" with the 'x' the model cannot write, "" for the empty transcript; CER and WER add up from the rows.
    entries = [json.loads(line) for line in (data / "all.jsonl").read_text().splitlines()]
    references = {e.get("id", Path(e["path"]).stem): e["text"] for e in entries
                  if Path(e["path"]).stem not in MEDIA_KINDS}
    assert references["unknown_symbols"] == "1x2" and references["empty_transcript"] == ""
    saved, _ = assert_reports_add_up(tmp_path / "ev", references)
    assert saved["clips"] == summary["clips"] == len(entries) - len(MEDIA_KINDS)


def test_evaluate_on_a_split_where_nothing_is_readable_names_the_files(bad_corpus_run, tmp_path):
    run_dir, data, _ = bad_corpus_run
    manifest = write_manifest(tmp_path / "bad.jsonl", [{"path": str(data / "empty_file.wav"), "text": "1"},
                                                       {"path": str(data / "missing_file.wav"), "text": "2"}])
    with pytest.raises(ValueError) as info:
        evaluate(run_dir / "last.pt", split=manifest, out_dir=tmp_path / "ev", device="cpu")
    assert "empty_file" in str(info.value) and "is empty (0 bytes)" in str(info.value)


def test_evaluate_with_other_feature_settings_uses_the_models(bad_corpus_run, tmp_path, caplog):
    """A wrong feature dimension at evaluation (data.args.features.n_mels=40 against a 20-bin model) is
    refused in favour of the checkpoint's preprocessing, with a warning."""
    run_dir, data, _ = bad_corpus_run
    manifest = write_manifest(tmp_path / "ok.jsonl", [{"path": str(data / "ok0.wav"), "text": "1"}])
    with caplog.at_level(logging.WARNING, logger="ctcrnn"):
        summary = evaluate(run_dir / "last.pt", split=manifest, out_dir=tmp_path / "ev", device="cpu",
                           overrides=["data.args.features.n_mels=40"])
    assert summary["clips"] == 1 and summary["unreadable"] == 0
    assert_reports_add_up(tmp_path / "ev", {"ok0": "1"})
    assert "data.args.features differ from the model's; the model's (its input_spec) are used" in caplog.text


# ---------------------------------------------------------------------------------------------------------
# Transcripts and manifests: errors that name the file and line


def test_all_transcripts_empty_is_an_error_naming_the_manifest(tmp_path):
    entries = good_calls(tmp_path, 2)
    for e in entries:
        e["text"] = ""
    manifest = write_manifest(tmp_path / "train.jsonl", entries)
    with pytest.raises(ValueError, match="every training transcript is empty") as info:
        build_dataset("audio_manifest", "train", {"train": manifest})
    assert manifest in str(info.value)


MANIFEST_CASES = [
    pytest.param(['{"path": "ok0.wav", "text": "1"}', '{"path": "ok1.wav", "text": "2"'],
                 [":2: not a JSON object", 'each line must look like {"path"'], id="line_not_json"),
    pytest.param(['["ok0.wav", "1"]'], [":1: missing key(s) ['path', 'text']"], id="line_not_an_object"),
    pytest.param(['{"path": "ok0.wav"}'], [":1: missing key(s) ['text']", "needs 'path' and 'text'"],
                 id="missing_text_key"),
    pytest.param(['{"path": "ok0.wav", "text": "1"}', '{"file": "ok1.wav", "text": "2"}'],
                 [":2: missing key(s) ['path']"], id="missing_path_key"),
    pytest.param(['{"path": "ok0.wav", "text": "1", "id": "a"}', '{"path": "ok1.wav", "text": "2", "id": "a"}'],
                 [":2: id 'a' was already used on line 1", "distinct 'id's"], id="duplicate_ids"),
    pytest.param(['{"path": "ok0.wav", "text": "1"}', '{"path": "sub/ok0.wav", "text": "2"}',
                  '{"path": "ok0.wav", "text": "3"}'],
                 [":3: id 'ok0' was already used on line 1", "distinct 'id's"], id="duplicate_ids_same_file_twice"),
    pytest.param(None, ["does not exist"], id="missing_manifest"),
    pytest.param(['{"path": null, "text": "1"}'], [":1:", "'path'"], id="path_not_a_string"),
    pytest.param([], ["has no entries"], id="empty_manifest"),
    pytest.param(b'{"path": "ok0.wav", "text": "\xff"}\n', [":1:", "UTF-8"], id="manifest_not_utf8"),
]


@pytest.mark.parametrize("lines, phrases", MANIFEST_CASES)
def test_broken_manifest_is_an_error_naming_file_and_line(tmp_path, lines, phrases):
    good_calls(tmp_path, 2)
    (tmp_path / "sub").mkdir()
    shutil.copy(tmp_path / "ok0.wav", tmp_path / "sub" / "ok0.wav")
    manifest = tmp_path / "train.jsonl"
    if isinstance(lines, bytes):
        manifest.write_bytes(lines)
    elif lines is not None:
        write_manifest(manifest, lines)
    with pytest.raises(ValueError) as info:
        build_dataset("audio_manifest", "train", {"train": str(manifest)})
    message = str(info.value)
    assert str(manifest) in message, message
    for phrase in phrases:
        assert phrase in message, message


def test_cli_reports_a_broken_manifest_without_traceback(tmp_path):
    manifest = write_manifest(tmp_path / "train.jsonl", ["not json"])
    with pytest.raises(SystemExit, match=r"error: .*train\.jsonl:1: not a JSON object"):
        main(["train", "--no-eval", *audio_overrides(tmp_path, "cli", manifest)])


# ---------------------------------------------------------------------------------------------------------
# Unreadable directories and files (permissions): checked as an unprivileged user when run as root


def run_unprivileged(fn):
    """``fn()`` as it behaves for a user without the permissions; forks and drops to nobody under root."""
    if os.geteuid() != 0:
        return fn()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                result = ("ok", fn())
            except Exception as e:  # re-raised in the parent, to be asserted there
                result = ("error", e)
            os.write(write, pickle.dumps(result))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    if status == "error":
        raise value
    return value


@pytest.fixture
def locked_tree():
    """A world-traversable temp tree (pytest's own is 0700 under root) with a good call in ``audio/``."""
    root = tempfile.mkdtemp(prefix="ctcrnn-locked-")
    os.chmod(root, 0o755)
    root = Path(root)
    (root / "audio").mkdir(mode=0o755)
    good_calls(root / "audio", 1)
    os.chmod(root / "audio" / "ok0.wav", 0o644)
    yield root
    for folder in (root, root / "audio"):
        os.chmod(folder, 0o755)
    shutil.rmtree(root)


def test_audio_in_unreadable_directory_is_skipped_with_permission_reason(locked_tree):
    manifest = write_manifest(locked_tree / "train.jsonl", [{"path": "audio/ok0.wav", "text": "1"}])
    os.chmod(manifest, 0o644)
    os.chmod(locked_tree / "audio", 0o000)
    error = run_unprivileged(lambda: read_manifest(manifest)[0].error)
    assert "ok0.wav" in error and "permission" in error.lower(), error


def test_manifest_in_unreadable_directory_names_the_permission_problem(locked_tree):
    manifest = write_manifest(locked_tree / "audio" / "train.jsonl", [{"path": "ok0.wav", "text": "1"}])
    os.chmod(locked_tree / "audio", 0o000)
    with pytest.raises(ValueError) as info:
        run_unprivileged(lambda: read_manifest(manifest))
    assert "train.jsonl" in str(info.value) and "permission" in str(info.value).lower()


def test_out_dir_without_write_permission_is_refused_before_any_work(locked_tree):
    """trainer.out_dir in a folder the user may not write: an error naming the option, not a PermissionError
    traceback from mkdir once the data and model are built."""
    os.chmod(locked_tree / "audio", 0o555)
    config = load_config(None, toy_overrides(locked_tree / "audio" / "runs", "perm"))
    with pytest.raises(ValueError) as info:
        run_unprivileged(lambda: train(config))
    assert "trainer.out_dir" in str(info.value) and str(locked_tree / "audio") in str(info.value), str(info.value)
    assert not (locked_tree / "audio" / "runs").exists()


# ---------------------------------------------------------------------------------------------------------
# Configs: unknown keys, wrong types, zero and negative sizes


@pytest.mark.parametrize("override, message", [
    pytest.param("trainer.max_epoch=1", "unknown key 'trainer.max_epoch' (did you mean 'max_epochs'?)",
                 id="unknown_key"),
    pytest.param("trainer.max_epochs=ten", "trainer.max_epochs expects int, got 'ten'", id="wrong_type_int"),
    pytest.param("trainer.max_epochs=2.5", "trainer.max_epochs expects int, got '2.5'", id="float_for_int"),
    pytest.param("trainer.lr=fast", "trainer.lr expects float, got 'fast'", id="wrong_type_float"),
    pytest.param("trainer.progress=maybe", "trainer.progress expects bool, got 'maybe'", id="wrong_type_bool"),
    pytest.param("data.batch_size=[4, 8]", "data.batch_size expects int, got '[4, 8]'", id="list_for_int"),
    pytest.param("trainer=3", "trainer is a section; set its keys", id="value_for_section"),
    pytest.param("trainer.lr.peak=1", "trainer.lr is a float, it has no key 'peak'", id="key_under_scalar"),
    pytest.param("model.encoder.hidden_sise=8", ("unknown key 'model.encoder.hidden_sise' (did you mean "
                                                  "'hidden_size'?)"), id="unknown_encoder_key"),
    pytest.param("trainer.max_epochs", "must look like key.sub=value", id="override_without_value"),
])
def test_bad_override_is_a_config_error_naming_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)


@pytest.mark.parametrize("text, message", [
    pytest.param("trainer:\n  max_epoch: 3\n", "unknown key 'trainer.max_epoch' (did you mean 'max_epochs'?)",
                 id="unknown_key_in_file"),
    pytest.param("trainer:\n  max_epochs: three\n", "trainer.max_epochs expects int, got 'three'",
                 id="wrong_type_in_file"),
    pytest.param("- trainer\n- data\n", "top level must be a mapping of sections", id="file_not_a_mapping"),
    pytest.param("trainer:\n  max_epochs: [1\n", "is not valid YAML", id="file_not_yaml"),
])
def test_bad_config_file_is_an_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as info:
        main(["train", "--config", str(path), f"trainer.out_dir={tmp_path}"])
    assert str(path) in str(info.value.code) and message in str(info.value.code)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match=r"config file .*nothere\.yaml does not exist"):
        main(["train", "--config", str(tmp_path / "nothere.yaml")])


@pytest.mark.parametrize("override, message", [
    pytest.param("data.args.corupt=nan", "dataset 'bad_inputs_toy' has no argument 'corupt' (did you mean "
                 "'corrupt'?)", id="unknown_dataset_argument"),
    pytest.param("model.args.conv_chanels=2", "has no argument 'conv_chanels' (did you mean 'conv_channels'?)",
                 id="unknown_model_argument"),
    pytest.param("model.encoder.cell=rnn", "encoder.cell must be 'gru' or 'lstm', got 'rnn'", id="unknown_cell"),
    pytest.param("model.encoder.hidden_size=0", "encoder sizes must be positive", id="zero_hidden_size"),
    pytest.param("model.encoder.num_layers=-1", "encoder sizes must be positive", id="negative_layers"),
])
def test_bad_model_or_data_argument_is_a_clear_cli_error(tmp_path, override, message):
    with pytest.raises(SystemExit) as info:
        main(["train", "--no-eval", *toy_overrides(tmp_path, "cfg"), override])
    assert message in str(info.value.code)


@pytest.mark.parametrize("override, message", [
    pytest.param("data.args.features.n_melz=20", "FeatureConfig has no field 'n_melz' (did you mean 'n_mels'?)",
                 id="unknown_feature_field"),
    pytest.param("data.args.features.n_mels=0", "features.n_mels must be positive, got 0", id="zero_mel_bins"),
])
def test_bad_feature_setting_is_a_clear_cli_error(tmp_path, override, message):
    manifest = write_manifest(tmp_path / "train.jsonl", good_calls(tmp_path, 1))
    with pytest.raises(SystemExit) as info:
        main(["train", "--no-eval", *audio_overrides(tmp_path, "feat", manifest), override])
    assert message in str(info.value.code)


@pytest.mark.parametrize("override, key", [
    pytest.param(f"{key}={value}", key, id=f"{key}={value}")
    for key, value, _why in [
        ("data.batch_size", 0, ": plan_batches fails with 'range() arg 3 must not be zero'"),
        ("data.batch_size", -2, ": plan_batches makes no batches, so the epoch trains nothing and exits 0"),
        ("data.eval_batch_size", 0, ": 'range() arg 3 must not be zero' after a whole training epoch"),
        ("data.num_workers", -1, ": torch's DataLoader error names 'num_workers'"),
        ("data.max_frames", -100, ": a negative max_frames silently turns bucketing off"),
        ("trainer.max_epochs", 0, ": the run trains nothing, writes no checkpoint and exits 0"),
        ("trainer.lr", -0.01, ": AdamW's 'Invalid learning rate' names no key"),
        ("trainer.grad_clip", -1, ": clip_grad_norm_ with a negative max_norm flips every gradient's sign"),
        ("trainer.warmup_steps", -5, ": silently accepted"),
        ("trainer.threads", -1, ": torch.set_num_threads raises a bare RuntimeError, a traceback through the CLI"),
    ]])
def test_zero_or_negative_size_is_a_config_error_naming_the_key(tmp_path, override, key):
    with pytest.raises(SystemExit) as info:
        main(["train", "--no-eval", *toy_overrides(tmp_path, "sizes"), override])
    assert f"error: {key}" in str(info.value.code) and "must be" in str(info.value.code)
    assert not (tmp_path / "sizes").exists()  # refused before a run folder is made


# ---------------------------------------------------------------------------------------------------------
# Features and labels from a registered dataset: through the trainer


def test_toy_dataset_trains_cleanly(tmp_path):
    """The reference for the corrupted variants below: no skips, finite weights."""
    run_dir = train(load_config(None, toy_overrides(tmp_path, "clean")))
    row = metrics(run_dir)[0]
    assert row["skipped_samples"] == 0 and row["skipped_steps"] == 0
    assert_finite_checkpoint(run_dir / "last.pt")


@pytest.mark.parametrize("corrupt", [
    pytest.param("nan", id="nan_in_features"),
    pytest.param("inf", id="inf_in_features"),
])
def test_non_finite_features_are_a_counted_skip_and_weights_stay_finite(tmp_path, corrupt):
    run_dir = train(load_config(None, toy_overrides(tmp_path, corrupt, corrupt)))
    assert_finite_checkpoint(run_dir / "last.pt")
    rows = skipped_rows(run_dir)
    assert [r[1] for r in rows] == [f"toy-train-{ToyFeatures.BAD}"] and "non-finite" in rows[0][2]
    assert metrics(run_dir)[0]["skipped_samples"] == 1 and metrics(run_dir)[0]["skipped_steps"] == 0


def test_wrong_feature_dimension_is_a_counted_skip_naming_the_shapes(tmp_path):
    run_dir = train(load_config(None, toy_overrides(tmp_path, "dim", "dim")))
    rows = skipped_rows(run_dir)
    assert [r[1] for r in rows] == [f"toy-train-{ToyFeatures.BAD}"] and "declares (8,)" in rows[0][2]
    assert_finite_checkpoint(run_dir / "last.pt")


@pytest.mark.parametrize("corrupt, bad", [
    pytest.param("label_range", "[7]", id="out_of_range_label"),
    pytest.param("label_negative", "[-1]", id="negative_label"),
    pytest.param("blank", "[0]", id="blank_in_transcript"),
])
def test_bad_label_index_is_an_error_naming_the_item(tmp_path, corrupt, bad):
    with pytest.raises(SystemExit) as info:
        main(["train", "--no-eval", *toy_overrides(tmp_path, corrupt, corrupt)])
    assert (f"error: transcript of toy-train-{ToyFeatures.BAD} holds label indices {bad}, but labels must lie in "
            f"[1, 4) (0 is the blank)") in str(info.value.code)


def test_collate_of_only_unreadable_items_reports_them():
    batch = collate([{"id": "a", "error": "a.wav is empty"}, {"id": "b", "error": "b.wav does not exist"}])
    assert batch["inputs"] is None and batch["skipped"] == [("a", "a.wav is empty"), ("b", "b.wav does not exist")]


# ---------------------------------------------------------------------------------------------------------
# Checkpoints: corrupt files, other vocabularies and architectures, disk full, interrupted runs


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return train(load_config(None, toy_overrides(root, "toy", **{"trainer.max_epochs": 2})))


@pytest.mark.parametrize("kind, message", [
    pytest.param("missing_checkpoint", "does not exist", id="missing_checkpoint"),
    pytest.param("empty_checkpoint", "is truncated or corrupted and cannot be read", id="empty_checkpoint"),
    pytest.param("truncated_checkpoint", "is truncated or corrupted and cannot be read", id="truncated_checkpoint"),
    pytest.param("garbage_checkpoint", "is truncated or corrupted and cannot be read", id="garbage_checkpoint"),
    pytest.param("not_a_ctcrnn_checkpoint", "is not a ctcrnn checkpoint", id="not_a_ctcrnn_checkpoint"),
    pytest.param("code_payload", "was refused", id="code_payload"),
    pytest.param("bit_flipped_checkpoint", "fails its CRC-32 check", id="bit_flipped_checkpoint"),
])
def test_corrupt_checkpoint_is_refused_by_resume_and_evaluate(toy_run, tmp_path, kind, message):
    path = tmp_path / f"{kind}.pt"
    good = (toy_run / "last.pt").read_bytes()
    if kind == "empty_checkpoint":
        path.write_bytes(b"")
    elif kind == "truncated_checkpoint":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "garbage_checkpoint":
        path.write_bytes(b"\x00garbage" * 100)
    elif kind == "not_a_ctcrnn_checkpoint":
        torch.save({"model": {"w": torch.ones(2)}}, path)
    elif kind == "code_payload":
        class Payload:
            def __reduce__(self):
                return (os.system, ("echo this must never run",))
        torch.save({"format": "ctcrnn-checkpoint-1", "x": Payload()}, path)
    elif kind == "bit_flipped_checkpoint":  # one bit inside a tensor's bytes: torch.load alone would not notice
        with zipfile.ZipFile(io.BytesIO(good)) as archive:
            record = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size > 64)
        local = record.header_offset
        start = local + 30 + int.from_bytes(good[local + 26:local + 28], "little") + \
            int.from_bytes(good[local + 28:local + 30], "little")
        damaged = bytearray(good)
        damaged[start + 17] ^= 0x10
        path.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError, match=message) as info:
        train(None, resume=path)
    assert str(path) in str(info.value)
    with pytest.raises(SystemExit, match=message):
        main(["evaluate", "--checkpoint", str(path)])


def test_checkpoint_of_another_architecture_is_refused(toy_run, tmp_path):
    state = load_checkpoint(toy_run / "last.pt")
    state["arch"]["kwargs"]["conv_channels"] = 4  # the weights were made with 2 channels
    save_checkpoint(state, tmp_path / "other_arch.pt")
    with pytest.raises(SystemExit, match="weights do not fit architecture 'deepspeech2_small'"):
        main(["evaluate", "--checkpoint", str(tmp_path / "other_arch.pt"), "--out", str(tmp_path / "ev")])


def test_resume_with_another_architecture_is_a_clear_error(toy_run, tmp_path):
    shutil.copytree(toy_run, tmp_path / "run")
    with pytest.raises(ValueError) as info:
        train(None, resume=tmp_path / "run" / "last.pt", overrides=["model.encoder.hidden_size=16",
                                                                    "trainer.max_epochs=3"])
    assert "last.pt" in str(info.value) and "model.encoder" in str(info.value)


def test_vocabulary_mismatch_between_checkpoint_and_data_is_refused_by_evaluate(toy_run, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--checkpoint", str(toy_run / "last.pt"), "--out", str(tmp_path / "ev"),
              "data.args.labels=[a, b, d]"])
    assert "was trained with labels" in str(info.value.code) and "same vocabulary" in str(info.value.code)


def test_vocabulary_mismatch_on_resume_is_refused(toy_run, tmp_path):
    shutil.copytree(toy_run, tmp_path / "run")
    with pytest.raises(ValueError, match="labels"):
        train(None, resume=tmp_path / "run" / "last.pt", overrides=["data.args.labels=[c, b, a]",
                                                                    "trainer.max_epochs=3"])


def fail_on_epoch(monkeypatch, epoch: int, exc: BaseException):
    """torch.save writes part of the file, then raises ``exc``, for checkpoints of ``epoch`` (0-based)."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == epoch:
            f.write(b"PK\x03\x04 partial checkpoint")
            raise exc
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def assert_epoch_one_survives(run_dir):
    state = assert_finite_checkpoint(run_dir / "last.pt")
    assert state["epoch"] == 0 and load_checkpoint(run_dir / "best.pt")["epoch"] == 0
    assert [r["epoch"] for r in metrics(run_dir)] == [1]  # no metrics row without its checkpoint
    assert list(run_dir.rglob("*.tmp")) == []  # no half-written file left behind


def test_disk_full_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    fail_on_epoch(monkeypatch, 1, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises((OSError, CheckpointError)) as info:
        train(load_config(None, toy_overrides(tmp_path, "full", **{"trainer.max_epochs": 2})))
    monkeypatch.undo()
    assert "No space left on device" in str(info.value)
    assert_epoch_one_survives(tmp_path / "full")


def test_disk_full_is_a_clear_cli_error_naming_the_checkpoint(tmp_path, monkeypatch):
    fail_on_epoch(monkeypatch, 1, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(SystemExit) as info:
        main(["train", "--no-eval", *toy_overrides(tmp_path, "full", **{"trainer.max_epochs": 2})])
    monkeypatch.undo()
    message = str(info.value.code)
    assert "No space left on device" in message and ".pt" in message and "free space" in message
    assert_epoch_one_survives(tmp_path / "full")


def test_interrupted_run_keeps_its_checkpoint_and_resumes(tmp_path, monkeypatch):
    """Killed mid-epoch 2 (KeyboardInterrupt while reading its second batch, after one step): epoch 1's
    checkpoint and row survive, and --resume finishes the run with finite weights and one row per epoch."""
    # Epoch 1 reads 8 training and 8 validation items; epoch 2 its first batch of 4, then is killed.
    monkeypatch.setattr(ToyFeatures, "fetched", 0)
    monkeypatch.setattr(ToyFeatures, "interrupt_after", 8 + 8 + 4)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(None, toy_overrides(tmp_path, "killed", **{"trainer.max_epochs": 2})))
    monkeypatch.undo()
    assert_epoch_one_survives(tmp_path / "killed")
    with pytest.raises(SystemExit, match="drop --config"):
        main(["train", "--resume", str(tmp_path / "killed" / "last.pt"), "--config", "x.yaml"])
    run_dir = train(None, resume=tmp_path / "killed" / "last.pt")
    assert assert_finite_checkpoint(run_dir / "last.pt")["epoch"] == 1
    assert [r["epoch"] for r in metrics(run_dir)] == [1, 2]


def test_interrupt_during_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    fail_on_epoch(monkeypatch, 1, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        train(load_config(None, toy_overrides(tmp_path, "killed", **{"trainer.max_epochs": 2})))
    monkeypatch.undo()
    assert_epoch_one_survives(tmp_path / "killed")

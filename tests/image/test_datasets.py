"""Line datasets on fixtures in their real on-disk formats: JSON Lines manifests (errors naming file and line,
ids, header sizes, broken files as counted skips, lines too narrow for their transcript), IAM (lines.txt as
published, split files of line or form ids, a listed line without its image), and the synthetic lines
(deterministic, a fixed alphabet, test fonts never used in training)."""
import json
import logging
import re

import pytest
import torch

import ctcrnn  # noqa: F401  (registries)
from ctcrnn.data import BLANK_LABEL, build_dataset, collate
from ctcrnn.image.iam import read_lines_txt, transcription
from ctcrnn.image.io import LineConfig, line_size, read_line, scaled_width
from ctcrnn.image.synthetic import ALPHABET, FONT_SPLITS, TextConfig, check_fonts, plan_line
from tests.fixtures.image import IAM_MISSING, IAM_SPLITS, write_iam, write_image_manifest


def fitted_of(dataset) -> dict:
    return {"labels": list(dataset.labels), "input_spec": dict(dataset.input_spec)}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_image_manifest(tmp_path_factory.mktemp("manifest"))


@pytest.fixture(scope="module")
def iam(tmp_path_factory):
    return write_iam(tmp_path_factory.mktemp("IAM"))


# ------------------------------------------------------------------------------------------- manifests

def test_manifest_items_vocabulary_lengths_and_broken_files(manifest, caplog):
    args = {"train": str(manifest["train"]), "val": str(manifest["val"])}
    with caplog.at_level(logging.WARNING):
        train = build_dataset("image_manifest", "train", args)
    assert "2 of 6 line images cannot be read" in caplog.text
    texts = manifest["texts"]
    assert train.labels == [BLANK_LABEL, *sorted(set("".join(texts.values()) + "brokengone"))]
    spec = train.input_spec
    assert spec["modality"] == "image" and spec["step_shape"] == [1, 32] and spec["word_delimiter"] == " "
    items = {train.lines[i].id: train[i] for i in range(len(train))}
    assert set(items) == {*texts, "lines/broken", "lines/gone"}
    for line_id, text in texts.items():
        item = items[line_id]
        assert item["text"] == text and "".join(train.labels[t] for t in item["target"]) == text
        width, height = line_size(manifest["folder"] / f"{line_id}.png")
        assert train.lengths[[x.id for x in train.lines].index(line_id)] >= scaled_width(width, height, 32)
    assert "broken.png" in items["lines/broken"]["error"] and "gone.png" in items["lines/gone"]["error"]
    batch = collate(list(items.values()), tuple(spec["step_shape"]))
    assert len(batch["ids"]) == 4 and sorted(s[0] for s in batch["skipped"]) == ["lines/broken", "lines/gone"]
    # Validation reads with the model's vocabulary and no augmentation: the exact file contents.
    val = build_dataset("image_manifest", "val", args, fitted=fitted_of(train))
    assert val.labels == train.labels and val.augment is None and train.augment is not None
    first = val.lines[0]
    assert torch.equal(val[0]["input"], read_line(first.path, LineConfig()))
    assert val.lengths[0] == val[0]["input"].shape[0]  # without augmentation the header width is exact


def test_any_manifest_path_is_a_split(manifest):
    train = build_dataset("image_manifest", "train", {"train": str(manifest["train"])})
    other = build_dataset("image_manifest", str(manifest["val"]), {}, fitted=fitted_of(train))
    assert [line.id for line in other.lines] == list(manifest["texts"])[:2]


@pytest.mark.parametrize("lines, message", [
    (['{"path": "a.png"}'], ":1: missing key(s) ['text']"),
    (['{"path": "a.png", "text": "x"}', "not json"], ":2: not a JSON object"),
    (['{"path": 3, "text": "x"}'], ":1: 'path' must be a string"),
    (['{"path": "a.png", "text": ["x"]}'], ":1: 'text' must be a string"),
    (['{"path": "a.png", "text": "x"}', '{"path": "a.png", "text": "y"}'], ":2: id 'a' was already used on line 1"),
    (['{"path": "a.png", "text": "x", "id": true}'], ":1: 'id' must be a non-empty string"),
])
def test_manifest_errors_name_file_and_line(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        build_dataset("image_manifest", "train", {"train": str(path)})
    assert str(path) in str(info.value)


def test_lines_too_narrow_for_their_transcript_are_counted_skips_naming_file_and_width(manifest):
    train = build_dataset("image_manifest", "train", {"train": str(manifest["narrow"]), "augment": {"enabled": False}})
    item = train[2]
    path = manifest["folder"] / "lines" / "narrow.png"
    width = scaled_width(*line_size(path), 32)
    assert width < 20
    # "a long transcript": 17 characters, no repeats -> 17 frames x stride 4 = 68 px.
    assert item["error"].startswith(f"line image {path} is {width} px wide at "
                                    f"height 32 but its transcript (17 characters, 0 repeats) needs 17 output frames = "
                                    f"68 px at the model's width stride 4")
    assert "input" in train[0] and "input" in train[1]
    # Evaluation never drops a line for that (the model is charged for what it cannot write), nor does stride 0.
    test = build_dataset("image_manifest", str(manifest["narrow"]), {}, fitted=fitted_of(train))
    assert "input" in test[2]
    assert "input" in build_dataset("image_manifest", "train", {"train": str(manifest["narrow"]), "stride": 0})[2]


# ------------------------------------------------------------------------------------------- IAM

def test_lines_txt_as_published(iam):
    entries = read_lines_txt(iam["root"] / "ascii" / "lines.txt")
    assert entries["a01-000u-00"] == ("ok", "A MOVE to stop Mr. Gaitskell from")
    assert entries["a01-000u-02"][0] == "err"
    assert entries["b04-010-00"][1] == 'He said " no " to the motion .'
    assert transcription("It|'s|been|#|done|before|.", detokenize=True) == "It's been # done before."
    assert transcription("support|,|a|(|big|)|one", detokenize=True) == "support, a ( big) one"


def test_lines_txt_errors_name_file_and_line(tmp_path):
    (tmp_path / "lines.txt").write_text("# header\na01-000u-00 ok 154 19 408 746 1661 A|MOVE\n")
    with pytest.raises(ValueError, match=r"lines.txt:2: expected 'id ok\|err graylevel"):
        read_lines_txt(tmp_path / "lines.txt")


def test_iam_splits_by_line_and_form_ids_with_a_missing_image(iam):
    args = {"root": str(iam["root"]), "train": iam["train"], "val": iam["val"], "test": iam["test"]}
    train = build_dataset("iam_lines", "train", args)
    assert [line.id for line in train.lines] == IAM_SPLITS["train"]
    assert train.input_spec["step_shape"] == [1, 128]  # Puigcerver 2017's line height by default
    assert train.lines[0].path.endswith("lines/a01/a01-000u/a01-000u-00.png")
    assert train[0]["text"] == "A MOVE to stop Mr. Gaitskell from" and train[0]["input"].shape[1:] == (1, 128)
    by_forms = build_dataset("iam_lines", "train", {**args, "train": iam["forms"]})
    assert [line.id for line in by_forms.lines] == IAM_SPLITS["train"]  # a form id takes all its lines
    assert [line.id for line in build_dataset("iam_lines", "train", {**args, "skip_err": True}).lines] == \
        [i for i in IAM_SPLITS["train"] if i != "a01-000u-02"]
    test = build_dataset("iam_lines", "test", args, fitted=fitted_of(train))
    missing = test[[line.id for line in test.lines].index(IAM_MISSING)]
    assert "does not exist" in missing["error"] and f"{IAM_MISSING}.png" in missing["error"]
    assert test.lengths[1] == 1  # an unreadable header counts one step: skipped when loaded
    with pytest.raises(ValueError, match="no split file for 'val'"):
        build_dataset("iam_lines", "val", {"root": str(iam["root"])})
    with pytest.raises(ValueError, match="ascii/lines.txt"):
        build_dataset("iam_lines", "train", {**args, "root": str(iam["root"] / "nowhere")})


def test_iam_split_files_naming_no_line_are_refused(iam, tmp_path):
    (tmp_path / "other.lst").write_text("z99-999-00\n")
    with pytest.raises(ValueError, match="none of its 1 ids"):
        build_dataset("iam_lines", "train", {"root": str(iam["root"]), "train": str(tmp_path / "other.lst")})


# ------------------------------------------------------------------------------------------- synthetic

def test_synthetic_lines_are_deterministic_with_a_fixed_alphabet():
    args = {"train_size": 6, "val_size": 3, "test_size": 3}
    a = build_dataset("synthetic_textlines", "train", args)
    b = build_dataset("synthetic_textlines", "train", args)
    assert a.labels == b.labels == [BLANK_LABEL, *ALPHABET] and len(a.labels) == 77
    a.set_epoch(1, 5)
    b.set_epoch(1, 5)
    for i in range(6):
        assert a[i]["text"] == b[i]["text"] and torch.equal(a[i]["input"], b[i]["input"])
        assert a[i]["input"].shape[0] <= a.lengths[i]
    b.set_epoch(2, 5)
    assert not torch.equal(a[0]["input"], b[0]["input"])  # another epoch, another augmentation
    test = build_dataset("synthetic_textlines", "test", args, fitted=fitted_of(a))
    assert test.augment is None and [test[i]["input"].shape[0] for i in range(3)] == test.lengths
    assert {line.source for line in test.lines} <= {f.removesuffix(".ttf") for f in FONT_SPLITS["test"]}


def test_font_split_holds_test_and_validation_fonts_out_of_training():
    train, val, test = (set(FONT_SPLITS[s]) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    for fonts in FONT_SPLITS.values():
        check_fonts(fonts, ALPHABET, "test")  # every font draws every character of the alphabet
    text = TextConfig()
    plans = [plan_line(0, "train", i, FONT_SPLITS["train"], text, 32) for i in range(300)]
    assert all(text.min_chars <= len(p.text) <= text.max_chars and set(p.text) <= set(ALPHABET) for p in plans)
    assert len({p.font for p in plans}) == len(FONT_SPLITS["train"])
    assert sum(c.isdigit() for p in plans for c in p.text) > 0 and sum(c in ".,'" for p in plans for c in p.text) > 0


def test_synthetic_model_scores_any_manifest(manifest, caplog):
    train = build_dataset("synthetic_textlines", "train", {"train_size": 2})
    with caplog.at_level(logging.WARNING):
        lines = build_dataset("synthetic_textlines", str(manifest["val"]), {}, fitted=fitted_of(train))
    assert lines.labels == train.labels and [line.id for line in lines.lines] == list(manifest["texts"])[:2]


def test_bad_synthetic_arguments_are_refused():
    with pytest.raises(ValueError, match="splits"):
        build_dataset("synthetic_textlines", "dev", {})
    with pytest.raises(ValueError, match="not found"):
        build_dataset("synthetic_textlines", "test", {"fonts": {"test": ["NoSuchFont.ttf"]}})
    with pytest.raises(ValueError, match="no glyph"):
        build_dataset("synthetic_textlines", "test", {"fonts": {"test": ["DejaVuSansDisplay.ttf"]}})
    with pytest.raises(ValueError, match="did you mean 'max_chars'"):
        build_dataset("synthetic_textlines", "train", {"text": {"max_char": 3}})


def test_json_manifest_rows_keep_the_written_text(tmp_path, manifest):
    rows = [json.loads(x) for x in manifest["train"].read_text().splitlines()]
    assert rows[0] == {"path": "lines/hello.png", "text": "hello world"}

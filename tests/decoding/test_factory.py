"""The decoder factory refuses settings that would decode quietly wrong: NaN or infinite weights, a beam
below 1, lexicon words the model cannot spell (left out with a count when few, refused when most), and
LM or lexicon files that cannot be read, each with a message naming the file or setting."""
import importlib.util
import logging
import math

import pytest

from ctcrnn.decoding.factory import check_decoder_numbers, make_decoder, read_lexicon

LABELS = ["<blank>", "|", "a", "b", "c", "th"]  # "th": a label of two characters (a word piece)


def test_words_are_read_in_file_order_with_a_bom_blank_lines_and_several_words_a_line(tmp_path):
    (tmp_path / "lex.txt").write_bytes("\ufeffab thab\n\n  cab  \n".encode())
    assert read_lexicon(tmp_path / "lex.txt", LABELS, skip=(0, 1)) == ["ab", "thab", "cab"]


@pytest.mark.parametrize("words, kept", [
    ("ab\nba\ncab\n", ["ab", "ba", "cab"]),
    ("ab\nthat\n", ["ab"]),                     # "that": th + a, then 't', which alone is no label
    ("thab\nbath\n", ["thab", "bath"]),         # "th" as one label, anywhere in the word
    ("ab\nba\nac|b\n", ["ab", "ba"]),           # the delimiter would close the word: no single word spells it
])
def test_words_split_into_labels_or_are_left_out_with_a_count(tmp_path, caplog, words, kept):
    (tmp_path / "lex.txt").write_text(words)
    with caplog.at_level(logging.WARNING):
        assert read_lexicon(tmp_path / "lex.txt", LABELS, skip=(0, 1)) == kept
    total = len(words.split())
    if len(kept) < total:
        assert f"{total - len(kept)} of {total} words in lexicon {tmp_path / 'lex.txt'} cannot be spelled" in caplog.text
    else:
        assert caplog.text == ""


def test_lexicon_of_mostly_unspellable_words_is_refused_naming_lines_and_characters(tmp_path):
    (tmp_path / "upper.txt").write_text("AB\nab\nCAB\nBAT\n")
    with pytest.raises(ValueError) as info:
        read_lexicon(tmp_path / "upper.txt", LABELS, skip=(0, 1))
    message = str(info.value)
    assert message.startswith(f"3 of 4 words in lexicon {tmp_path / 'upper.txt'} cannot be spelled")
    assert "line 1 'AB' ('AB' not in the labels); line 3 'CAB' ('ABC' not in the labels); line 4 'BAT'" in message


@pytest.mark.parametrize("content, message", [
    (b"", "has no words"),
    (b" \n\n", "has no words"),
    (b"ab\n\xff\xfe\n", r"lex\.txt:2: not UTF-8 text \(byte 0xff at byte 1 of the line\)"),
])
def test_empty_or_undecodable_lexicon_is_an_error_naming_the_file(tmp_path, content, message):
    (tmp_path / "lex.txt").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_lexicon(tmp_path / "lex.txt", LABELS)


def test_missing_or_folder_lexicon_and_lm_are_errors_naming_them(tmp_path):
    with pytest.raises(ValueError, match=f"lexicon {tmp_path} is a directory, not a file"):
        make_decoder(LABELS, 4, lexicon=str(tmp_path), word_delimiter="|")
    with pytest.raises(ValueError, match=f"LM file {tmp_path / 'none.arpa'} does not exist"):
        make_decoder(LABELS, 4, lm=str(tmp_path / "none.arpa"), engine="flashlight")


@pytest.mark.parametrize("setting, message", [
    ({"beam_size": 0}, "beam size must be a whole number >= 1"),
    ({"beam_size": 2.0}, "beam size must be a whole number >= 1"),
    ({"lm_weight": math.nan}, "lm_weight must be a finite number, got nan"),
    ({"lm_weight": math.inf}, "lm_weight must be a finite number, got inf"),
    ({"word_bonus": -math.inf}, "word_bonus must be a finite number, got -inf"),
    ({"unk_score": math.nan}, "unk_score must be <= 0"),
    ({"unk_score": 1.0}, "unk_score must be <= 0"),
])
def test_settings_that_would_decode_quietly_wrong_are_refused(setting, message):
    options = {"beam_size": 4, "lm_weight": 0.5, "word_bonus": 0.0, "unk_score": None} | setting
    with pytest.raises(ValueError, match=message):
        check_decoder_numbers(**options)
    with pytest.raises(ValueError, match=message):
        make_decoder(LABELS, **options)


def test_other_engines_report_an_lm_they_cannot_read_or_a_missing_package(tmp_path):
    """flashlight-text (a test dependency) reads the LM with KenLM, which raises a bare RuntimeError on a
    truncated file; pyctcdecode is optional: both become one ValueError that says what to do."""
    from ctcrnn.decoding.lm import build_ngram_lm, write_arpa

    write_arpa(build_ngram_lm([["a", "b", "c"], ["b", "c", "a"]], 2), tmp_path / "lm.arpa")
    text = (tmp_path / "lm.arpa").read_text()
    (tmp_path / "cut.arpa").write_text(text[: len(text) // 2])
    labels = ["<blank>", "a", "b", "c"]
    with pytest.raises(ValueError, match=f"--decoder flashlight cannot read the LM {tmp_path / 'cut.arpa'} .*copy it"):
        make_decoder(labels, 2, lm=str(tmp_path / "cut.arpa"), engine="flashlight")
    if importlib.util.find_spec("pyctcdecode") is None:
        with pytest.raises(ValueError, match="--decoder pyctcdecode: .*pip install pyctcdecode"):
            make_decoder(labels, 2, lm=str(tmp_path / "lm.arpa"), engine="pyctcdecode")

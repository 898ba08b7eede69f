"""Run logs: a table cut back to no rows (a resume from inside the first epoch) gets its header again; the
checks of output and input locations every command makes before it works; TSV cell escaping."""
import csv
import os

import pytest

from ctcrnn.paths import OutputLocationError, check_output, input_file_problem
from ctcrnn.runlog import TableLog, tsv_cell


def test_a_table_cut_back_to_no_rows_writes_its_header_again(tmp_path):
    log = TableLog(tmp_path, "metrics", "epoch")
    log.write({"epoch": 1, "loss": 2.0})
    log.truncate(0)
    assert (tmp_path / "metrics.csv").read_text() == ""
    log.write({"epoch": 1, "loss": 1.5})
    log.write({"epoch": 2, "loss": 1.0})
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert rows == [{"epoch": "1", "loss": "1.5"}, {"epoch": "2", "loss": "1.0"}]
    assert log.rows() == [{"epoch": 1, "loss": 1.5}, {"epoch": 2, "loss": 1.0}]


# ---------------------------------------------------------------------------------------------------------
# Output and input locations, checked before a command starts working

needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")


def test_writable_output_locations_pass_and_nothing_is_created(tmp_path):
    (tmp_path / "old.tsv").write_text("kept")
    assert check_output(tmp_path / "old.tsv", "--out") == tmp_path / "old.tsv"  # an existing file is replaced later
    assert check_output(tmp_path / "new" / "deeper" / "x.ctm", "--ctm") == tmp_path / "new" / "deeper" / "x.ctm"
    assert check_output(tmp_path / "eval", "--out", folder=True, inside=("summary.json",)) == tmp_path / "eval"
    assert check_output(tmp_path, "--out", folder=True, inside=("old.tsv",)) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.tsv"] and (tmp_path / "old.tsv").read_text() == "kept"


@pytest.mark.parametrize("make, path, folder, message", [
    ("dir", "x", False, "--out {p}/x is a directory, not a file"),
    ("file", "x", True, "--out {p}/x is a file, not a folder"),
    ("file", "x/y.ctm", False, "--out {p}/x/y.ctm: {p}/x is a file, not a folder"),
    ("file", "x/deeper/eval", True, "--out {p}/x/deeper/eval: {p}/x is a file, not a folder"),
    ("inside_dir", "x", True, "--out {p}/x: {p}/x/summary.json is a directory where a file is to be written"),
])
def test_unwritable_output_location_is_an_error_naming_option_and_path(tmp_path, make, path, folder, message):
    if make == "dir":
        (tmp_path / "x").mkdir()
    elif make == "file":
        (tmp_path / "x").write_text("")
    else:
        (tmp_path / "x" / "summary.json").mkdir(parents=True)
    with pytest.raises(OutputLocationError) as info:
        check_output(tmp_path / path, "--out", folder=folder, inside=("summary.json",))
    assert str(info.value).startswith(message.format(p=tmp_path)), str(info.value)


@needs_proc
@pytest.mark.parametrize("folder", [False, True])
def test_read_only_location_is_refused_even_for_root(folder):
    """/proc takes no new files, whoever asks: the check tries a write where permission bits cannot tell."""
    with pytest.raises(OutputLocationError, match=r"--out /proc/ctcrnn/x: cannot write in /proc \("):
        check_output("/proc/ctcrnn/x", "--out", folder=folder)


def test_input_file_problems_name_the_file_and_the_fix(tmp_path):
    (tmp_path / "ok.txt").write_text("x")
    assert input_file_problem(tmp_path / "ok.txt") is None
    assert input_file_problem(tmp_path) == f"{tmp_path} is a directory, not a file: give the file inside it"
    assert input_file_problem(tmp_path / "none.txt") == f"{tmp_path / 'none.txt'} does not exist: check the path"
    assert input_file_problem(tmp_path / "ok.txt" / "x") == f"{tmp_path / 'ok.txt' / 'x'} does not exist: check the path"
    assert input_file_problem("none.txt") == f"none.txt does not exist: check the path (relative paths are resolved " \
                                             f"from {os.getcwd()})"


def test_tsv_cells_escape_only_what_would_break_a_row():
    assert tsv_cell("a\tb\nc\rd\\e  f é") == "a\\tb\\nc\\rd\\\\e  f é"
    assert tsv_cell(3) == "3"
    # The escaping reads back exactly: a backslash is always followed by one of \ t n r.
    text = "tab\tnew\nline\\n not a newline\r"
    unescaped = tsv_cell(text).encode("latin-1", "backslashreplace").decode("unicode_escape")
    assert unescaped == text

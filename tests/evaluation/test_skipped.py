"""skipped.tsv is written by one function for training and evaluation: same header, same cell escaping
(ctcrnn.runlog.tsv_cell: backslash, tab, line feed and carriage return written as \\\\, \\t, \\n, \\r)."""
from ctcrnn.evaluation.scoring import write_skipped
from ctcrnn.runlog import record_skipped, truncate_skipped


def test_evaluation_and_training_escape_skipped_fields_alike(tmp_path):
    skipped = [("clip\t1", "broken\nfile: re-encode it"), ("clip 2", "ok  reason"), ("C:\\clips\\3\r", "bad")]
    write_skipped(tmp_path / "eval", skipped)
    assert (tmp_path / "eval" / "skipped.tsv").read_text() == \
        "id\treason\nclip\\t1\tbroken\\nfile: re-encode it\nclip 2\tok  reason\nC:\\\\clips\\\\3\\r\tbad\n"
    record_skipped(tmp_path, 3, skipped[:2], first=False)
    record_skipped(tmp_path, 4, skipped[:1], first=False)  # appends: one header only
    assert (tmp_path / "skipped.tsv").read_text() == ("epoch\tid\treason\n3\tclip\\t1\tbroken\\nfile: re-encode it\n"
                                                     "3\tclip 2\tok  reason\n4\tclip\\t1\tbroken\\nfile: re-encode it\n")
    truncate_skipped(tmp_path, 4)  # a resume into epoch 4 keeps the rows of the epochs before it, line by line
    assert (tmp_path / "skipped.tsv").read_text() == ("epoch\tid\treason\n3\tclip\\t1\tbroken\\nfile: re-encode it\n"
                                                     "3\tclip 2\tok  reason\n")
    write_skipped(tmp_path / "eval", skipped[1:2])  # a second evaluation into the same folder replaces the file
    assert (tmp_path / "eval" / "skipped.tsv").read_text() == "id\treason\nclip 2\tok  reason\n"
    write_skipped(tmp_path / "eval", [])  # and one that skips nothing leaves no stale list behind
    assert not (tmp_path / "eval" / "skipped.tsv").exists()

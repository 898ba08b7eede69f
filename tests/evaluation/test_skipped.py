"""skipped.tsv is written by one function for training and evaluation: same header style, same cleaning."""
from ctcrnn.evaluation.scoring import write_skipped
from ctcrnn.runlog import record_skipped


def test_evaluation_and_training_clean_skipped_fields_alike(tmp_path):
    skipped = [("clip\t1", "broken\nfile: re-encode it"), ("clip 2", "ok  reason")]
    write_skipped(tmp_path / "eval", skipped)
    assert (tmp_path / "eval" / "skipped.tsv").read_text() == \
        "id\treason\nclip 1\tbroken file: re-encode it\nclip 2\tok reason\n"
    record_skipped(tmp_path, 3, skipped, first=False)
    record_skipped(tmp_path, 4, skipped[:1], first=False)  # appends: one header only
    assert (tmp_path / "skipped.tsv").read_text() == ("epoch\tid\treason\n3\tclip 1\tbroken file: re-encode it\n"
                                                     "3\tclip 2\tok reason\n4\tclip 1\tbroken file: re-encode it\n")
    write_skipped(tmp_path / "eval", skipped[1:])  # a second evaluation into the same folder replaces the file
    assert (tmp_path / "eval" / "skipped.tsv").read_text() == "id\treason\nclip 2\tok reason\n"

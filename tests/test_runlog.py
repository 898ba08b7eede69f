"""Run logs: a table cut back to no rows (a resume from inside the first epoch) gets its header again."""
import csv

from ctcrnn.runlog import TableLog


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

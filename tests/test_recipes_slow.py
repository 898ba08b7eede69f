"""The embedded default recipe end to end, exactly as `python train.py` runs it (about 10 minutes on
2 CPU cores). Marked slow: run with `python3 -m pytest -m slow`. The bounds are the README's measured
figures with a margin, so a change that makes the default recipe learn worse fails here."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_default_recipe_reaches_the_readme_figures(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "train.py"), "trainer.progress=false", f"trainer.out_dir={tmp_path}"],
                   check=True, cwd=tmp_path)
    summary = json.loads(next(tmp_path.glob("*/eval-test/summary.json")).read_text())
    assert summary["ter"] <= MAX_TEST_TER
    assert summary["segmentation"]["acc"] >= MIN_SEGMENTATION_ACC
    assert summary["alignment"]["acc"] >= MIN_ALIGNMENT_ACC


# Measured on 2026-11-29 (README, "What to expect"): test TER 1.22, segmentation acc 93.8, alignment acc 94.3.
MAX_TEST_TER = 4.0
MIN_SEGMENTATION_ACC = 88.0
MIN_ALIGNMENT_ACC = 90.0

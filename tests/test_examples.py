"""The examples run: a few steps of each, on the CPU."""
import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sine_gru_runs_briefly(tmp_path, capsys):
    results = load("sine_gru").main(["--steps", "3", "--length", "12", "--batch", "4", "--out", str(tmp_path / "c.png")])
    assert (tmp_path / "c.png").stat().st_size > 0
    assert len(results) == 3 and all(len(r["curve"]) == 3 and r["test_mse"] >= 0 for r in results.values())
    # Similar sizes: within 15 % of the GRU's parameters.
    gru = results["GRUCell (ctcrnn.nn.cells)"]["params"]
    assert all(abs(r["params"] / gru - 1) <= 0.15 for r in results.values())
    assert "baseline: repeat the last value" in capsys.readouterr().out


def test_sine_gru_docstring_shows_the_code_it_explains():
    import inspect

    from ctcrnn.nn.cells import gru_step

    doc, code = load("sine_gru").__doc__, inspect.getsource(gru_step)
    for line in ("r = torch.sigmoid(x_r + h_r)", "z = torch.sigmoid(x_z + h_z)", "n = torch.tanh(x_n + r * h_n)"):
        assert line in doc and line in code

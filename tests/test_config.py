from pathlib import Path

import pytest
import yaml

from ctcrnn.config import Config, ConfigError, apply_override, config_from_dict, config_to_dict, load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_overrides_are_typed():
    cfg = load_config(None, ["model.encoder.cell=lstm", "trainer.max_epochs=3", "trainer.lr=1e-3",
                             "trainer.progress=false", "model.args.widths=[8, 16]", "eval.background=[stay]"])
    assert cfg.model.encoder == {"cell": "lstm"}
    assert cfg.trainer.max_epochs == 3 and isinstance(cfg.trainer.max_epochs, int)
    assert cfg.trainer.lr == pytest.approx(1e-3)  # YAML reads "1e-3" as a string; the float field converts it
    assert cfg.trainer.progress is False
    assert cfg.model.args == {"widths": [8, 16]}
    assert cfg.eval.background == ["stay"]


@pytest.mark.parametrize("override, message", [
    ("trainer.max_epoch=3", "did you mean 'max_epochs'"),
    ("model.encoder.cel=lstm", "did you mean 'cell'"),
    ("modle.name=x", "did you mean 'model'"),
    ("trainer.lr=fast", "trainer.lr expects float"),
    ("trainer.max_epochs=2.5", "trainer.max_epochs expects int"),
    ("model.encoder.hidden_size=big", "model.encoder.hidden_size expects int"),
    ("trainer=3", "is a section"),
    ("trainer.seed", "must look like key.sub=value"),
])
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_yaml_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("trainer:\n  max_epochz: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'trainer.max_epochz' \(did you mean 'max_epochs'"):
        load_config(path)


def test_dict_roundtrip():
    cfg = load_config(None, ["model.encoder.cell=lstm", "data.args.train_size=10"])
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg)))) == cfg


def test_default_recipe_file_equals_embedded_default():
    """configs/synthetic_actions_gru.yaml spells out the embedded default; they must not drift apart."""
    path = Path(__file__).parent.parent / "configs" / "synthetic_actions_gru.yaml"
    assert load_config(path) == Config()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_recipe_loads(path):
    load_config(path)


def test_override_after_yaml(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("trainer:\n  max_epochs: 7\nmodel:\n  encoder:\n    cell: lstm\n")
    cfg = load_config(path, ["trainer.max_epochs=2"])
    assert cfg.trainer.max_epochs == 2 and cfg.model.encoder["cell"] == "lstm"


def test_apply_override_sets_nested_free_args():
    cfg = Config()
    apply_override(cfg, "data.args.root=/data/breakfast")
    assert cfg.data.args["root"] == "/data/breakfast"


def test_string_fields_take_the_text_verbatim():
    cfg = load_config(None, ["trainer.run_name=no", "data.val_split=on", "trainer.out_dir=0123", "trainer.seed=0123"])
    assert (cfg.trainer.run_name, cfg.data.val_split, cfg.trainer.out_dir) == ("no", "on", "0123")
    assert cfg.trainer.seed == 123


def test_large_ints_are_exact():
    assert load_config(None, [f"trainer.seed={2**60 + 1}"]).trainer.seed == 2**60 + 1

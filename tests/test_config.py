import dataclasses
import inspect
import typing
from pathlib import Path

import pytest
import yaml

import ctcrnn  # noqa: F401  (fills the registries)
from ctcrnn.config import Config, ConfigError, apply_override, config_from_dict, config_to_dict, load_config
from ctcrnn.registry import DATASETS, MODELS

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
    """Every key the YAML sets reaches the config with its value and declared type, every other key keeps
    its default, and the model and dataset it names are registered and take its args (what training
    would refuse at run time: a misspelt name or argument)."""
    data = yaml.safe_load(path.read_text())
    cfg, default = load_config(path), Config()
    written = set()
    for section, key, value in ((s, k, v) for s, keys in data.items() for k, v in keys.items()):
        got = getattr(getattr(cfg, section), key)
        assert got == value, f"{path.name}: {section}.{key} = {got!r}, the file says {value!r}"
        kind = typing.get_type_hints(type(getattr(cfg, section)))[key]
        assert isinstance(got, kind) and (kind is bool or not isinstance(got, bool)), f"{section}.{key}: {got!r}"
        written.add((section, key))
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(getattr(cfg, section.name)):
            if (section.name, f.name) not in written:
                got, want = (getattr(getattr(c, section.name), f.name) for c in (cfg, default))
                assert got == want, f"{path.name} leaves {section.name}.{f.name} unset: {got!r}, not the default"
    assert cfg.model.name in MODELS.list(), f"{path.name}: model {cfg.model.name!r} is not registered"
    assert cfg.data.name in DATASETS.list(), f"{path.name}: dataset {cfg.data.name!r} is not registered"
    for builder, args in ((MODELS.get(cfg.model.name), cfg.model.args), (DATASETS.get(cfg.data.name), cfg.data.args)):
        unknown = set(args) - set(inspect.signature(builder).parameters)
        assert not unknown, f"{path.name}: {builder.__name__} takes no {unknown}"


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

"""Fine-tuning pieces (ctcrnn/training/finetune.py) and checkpoint averaging (ctcrnn/training/averaging.py):
weights from a checkpoint or bundle into a fresh model across a vocabulary change (label rows moved exactly),
architecture mismatches named, frozen weights untouched by optimizer steps, averages equal to the mean."""
import pytest
import torch

from ctcrnn import create_model
from ctcrnn.bundle import save_bundle
from ctcrnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ctcrnn.cli import main
from ctcrnn.config import load_config
from ctcrnn.training.averaging import average_checkpoints
from ctcrnn.training.finetune import freeze, frozen_modules, initialize_from, output_layers
from ctcrnn.training.stepping import Stepper

OLD_LABELS = ["<blank>", "left", "right", "up", "down"]
NEW_LABELS = ["<blank>", "down", "jump", "left", "spin"]   # down and left move; jump and spin are new; right, up go


def video_model(labels, seed=0, **encoder):
    """A tiny frame_cnn_rnn, which has an auxiliary CTC head as well as the main one."""
    torch.manual_seed(seed)
    return create_model("frame_cnn_rnn", num_classes=len(labels), in_shape=(3, 16, 16), widths=(4, 8),
                        feature_dim=8, encoder={"hidden_size": 8, **encoder})


def checkpoint_of(model, labels, **extra) -> dict:
    return {"arch": model.arch, "model": model.state_dict(), "labels": labels, "config": {}, "epoch": 0,
            "input_spec": {"modality": "video", "step_shape": [3, 16, 16]}, **extra}


def test_same_vocabulary_loads_every_weight(tmp_path):
    source = video_model(OLD_LABELS, seed=1)
    save_checkpoint(checkpoint_of(source, OLD_LABELS), tmp_path / "best.pt")
    model = video_model(OLD_LABELS, seed=2)
    report = initialize_from(model, tmp_path / "best.pt", OLD_LABELS)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))
    assert report["kept"] == OLD_LABELS[1:] and report["new"] == report["dropped"] == report["remapped"] == []


def test_label_rows_are_remapped_exactly(tmp_path):
    source = video_model(OLD_LABELS, seed=1)
    model = video_model(NEW_LABELS, seed=2)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = initialize_from(model, checkpoint_of(source, OLD_LABELS), NEW_LABELS)
    assert output_layers(model) == ["head", "aux_head"]
    old, new = source.state_dict(), model.state_dict()
    rows = {0: 0, 1: 4, 3: 1}                                   # blank, down, left: new row <- old row
    for key in ("head.weight", "head.bias", "aux_head.weight", "aux_head.bias"):
        for new_row in range(len(NEW_LABELS)):
            expected = old[key][rows[new_row]] if new_row in rows else fresh[key][new_row]
            assert torch.equal(new[key][new_row], expected), (key, new_row)
    body = [k for k in new if not k.startswith(("head.", "aux_head."))]
    assert all(torch.equal(new[k], old[k]) for k in body)
    assert report["kept"] == ["down", "left"] and report["new"] == ["jump", "spin"]
    assert report["dropped"] == ["right", "up"]
    assert report["remapped"] == ["head.weight", "head.bias", "aux_head.weight", "aux_head.bias"]


def test_initialize_from_a_bundle(tmp_path):
    source = video_model(OLD_LABELS, seed=1)
    save_checkpoint(checkpoint_of(source, OLD_LABELS), tmp_path / "best.pt")
    folder = save_bundle(tmp_path / "best.pt", tmp_path / "bundle")
    model = video_model(OLD_LABELS[:3], seed=2)
    report = initialize_from(model, folder, OLD_LABELS[:3])
    assert report["dropped"] == ["up", "down"]
    assert torch.equal(model.head.weight, source.head.weight[:3])


def test_a_different_architecture_is_named():
    source = video_model(OLD_LABELS, seed=1, hidden_size=6)
    with pytest.raises(CheckpointError, match=r"mis-shaped tensors: encoder\.layers\.0\.0\.weight_ih_l0 \(18, 8\) "
                                              r"where the model has \(24, 8\)"):
        initialize_from(video_model(OLD_LABELS), checkpoint_of(source, OLD_LABELS), OLD_LABELS)
    no_aux = create_model("frame_cnn_rnn", num_classes=5, in_shape=(3, 16, 16), widths=(4, 8), feature_dim=8,
                          encoder={"hidden_size": 8}, aux_ctc_weight=0.0)
    with pytest.raises(CheckpointError, match=r"unexpected tensors: aux_head\.weight, aux_head\.bias"):
        initialize_from(no_aux, checkpoint_of(video_model(OLD_LABELS), OLD_LABELS), OLD_LABELS)


def test_freeze_names_and_unknown_prefixes():
    model = video_model(OLD_LABELS)
    frozen = freeze(model, ["frontend", "encoder.layers.0"])
    assert frozen and all(n.startswith(("frontend.", "encoder.layers.0.")) for n in frozen)
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == set(frozen)
    assert "encoder.layers.1.0.weight_ih_l0" not in frozen and "frontend.temporal.weight" in frozen
    with pytest.raises(ValueError, match="'encoder.layer' names no parameters of this model; its top-level modules "
                                         "are frontend, encoder, head, aux_head"):
        freeze(model, ["encoder.layer"])
    assert frozen_modules(model, ["frontend", "encoder.layers.0", "head.bias"]) == [model.frontend,
                                                                                  model.encoder.layers[0]]


def test_frozen_weights_do_not_move_under_optimizer_steps():
    torch.manual_seed(0)
    model = create_model("weak_action_bigru", num_classes=5, in_shape=(6,), proj_dim=4, input_dropout=0.0,
                         encoder={"hidden_size": 4, "num_layers": 2})
    frozen = freeze(model, ["frontend", "encoder.layers.0"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)   # decay would move them too
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    stepper = Stepper(model, optimizer, scheduler, torch.device("cpu"), grad_clip=1.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = {"inputs": torch.randn(2, 10, 6), "lengths": torch.tensor([10, 7]), "targets": [[1, 2], [3]],
             "ids": ["a", "b"]}
    for _ in range(3):
        stepper.accumulate(batch)
        assert stepper.step().applied
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name]) == (name in frozen), name


def test_config_has_the_fine_tuning_fields():
    cfg = load_config(None, ["trainer.init_from=runs/x/best.pt", "trainer.freeze=[frontend, encoder.layers.0]"])
    assert cfg.trainer.init_from == "runs/x/best.pt" and cfg.trainer.freeze == ["frontend", "encoder.layers.0"]
    assert load_config(None).trainer.init_from == "" and load_config(None).trainer.freeze == []


def deepspeech_checkpoints(tmp_path, count=3):
    """Checkpoints of 'one run': the same architecture with different weights (BatchNorm counters too)."""
    paths = []
    for i in range(count):
        torch.manual_seed(i)
        model = create_model("deepspeech2_small", num_classes=5, in_shape=(16,), conv_channels=2,
                             encoder={"hidden_size": 4})
        model.frontend.layers[0][1].num_batches_tracked.fill_(10 * (i + 1))
        save_checkpoint({**checkpoint_of(model, OLD_LABELS), "step": i, "optimizer": {}}, tmp_path / f"step-{i}.pt")
        paths.append(tmp_path / f"step-{i}.pt")
    return paths


def test_average_is_the_mean_of_the_weights(tmp_path):
    paths = deepspeech_checkpoints(tmp_path)
    states = [load_checkpoint(p)["model"] for p in paths]
    averaged = average_checkpoints(paths)
    for key, value in averaged["model"].items():
        if value.is_floating_point():
            hand = (states[0][key].double() + states[1][key].double() + states[2][key].double()) / 3
            assert torch.equal(value, hand.float()), key
        else:
            assert torch.equal(value, states[2][key]), key
    assert averaged["model"]["frontend.layers.0.1.num_batches_tracked"] == 30
    assert averaged["step"] == 2 and "optimizer" not in averaged
    assert averaged["averaged_from"] == [str(p) for p in paths]


def test_average_refuses_other_architectures_and_cli(tmp_path, capsys):
    paths = deepspeech_checkpoints(tmp_path, count=2)
    torch.manual_seed(0)
    other = create_model("deepspeech2_small", num_classes=5, in_shape=(16,), conv_channels=3,
                         encoder={"hidden_size": 4})
    save_checkpoint(checkpoint_of(other, OLD_LABELS), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="only checkpoints of one run"):
        average_checkpoints([*paths, tmp_path / "other.pt"])
    main(["average", *map(str, paths), "--out", str(tmp_path / "avg.pt")])
    assert "average of 2 checkpoints" in capsys.readouterr().out
    average = load_checkpoint(tmp_path / "avg.pt")
    assert torch.equal(average["model"]["head.bias"], average_checkpoints(paths)["model"]["head.bias"])

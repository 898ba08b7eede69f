"""The generic per-beam state (ctcrnn.decoding.beam_state): select, split and gather move every tensor with a
leading (B, K) axis, found here by looking at the states' attributes (not at their declarations), so that a
per-beam tensor added to FusionState or PrefixBeams without being declared per-beam fails these tests."""
from dataclasses import dataclass, field

import pytest
import torch

from ctcrnn.decoding.beam_state import BeamState, per_beam, per_beam_fields
from ctcrnn.decoding.fusion import FusionState, LMFusion
from ctcrnn.decoding.lm import build_ngram_lm
from ctcrnn.decoding.prefix_search import PrefixBeams

from tests.fixtures.decoding import BAR, LABELS, LEXICON, SENTENCES, WORD_LM

# 3 utterances × 5 beams over 6 labels: no table the states share has this leading shape.
BATCH, BEAMS = 3, 5


def per_beam_tensors(state: BeamState, shape: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Every tensor of ``state`` and of the states nested in it ("fusion.node") whose leading shape is
    ``shape``: the per-beam tensors as they are, whatever the class declares."""
    found = {}
    for name, value in vars(state).items():
        if torch.is_tensor(value) and tuple(value.shape[:2]) == shape:
            found[name] = value
        elif isinstance(value, BeamState):
            found.update({f"{name}.{key}": v for key, v in per_beam_tensors(value, shape).items()})
    return found


def moved_beams(values: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """The reference reordering: values[b, source[b, k], ...], one utterance at a time."""
    return torch.stack([values[b, source[b]] for b in range(len(source))])


def assert_moves_every_per_beam_tensor(state: BeamState) -> None:
    """split, select and gather hand over or reorder every per-beam tensor of ``state`` (BATCH × BEAMS)."""
    before = {name: value.clone() for name, value in per_beam_tensors(state, (BATCH, BEAMS)).items()}
    first, rest = state.split(1)
    assert first.shape == (1, BEAMS) and rest.shape == (BATCH - 1, BEAMS)
    heads, tails = per_beam_tensors(first, (1, BEAMS)), per_beam_tensors(rest, (BATCH - 1, BEAMS))
    assert set(heads) == set(tails) == set(before), "a per-beam tensor was not split"
    for name, value in before.items():
        assert torch.equal(torch.cat([heads[name], tails[name]]), value), name
    rows = torch.tensor([2, 0])
    picked = per_beam_tensors(state.select(rows), (2, BEAMS))
    assert set(picked) == set(before), "a per-beam tensor was not selected"
    for name, value in before.items():
        assert torch.equal(picked[name], value[rows]), name
    source = torch.stack([torch.randperm(BEAMS, generator=torch.Generator().manual_seed(b)) for b in range(BATCH)])
    moved = per_beam_tensors(state.gather(source), (BATCH, BEAMS))
    assert set(moved) == set(before)
    for name, value in before.items():
        assert torch.equal(moved[name], moved_beams(value, source)), name
    assert all(torch.equal(value, before[name]) for name, value in per_beam_tensors(state, (BATCH, BEAMS)).items()), \
        "gather changed the state it was called on"


def fusion_state(unit: str) -> FusionState:
    """A FusionState with every per-beam tensor in use (LM, lexicon, hotwords), after a few random steps
    so that every attribute has been reassigned."""
    lm = WORD_LM if unit == "word" else build_ngram_lm([list("|".join(s)) for s in SENTENCES], order=3)
    fusion = LMFusion(LABELS, lm=lm, lm_weight=0.5, word_bonus=0.5, word_delimiter=BAR, lm_unit=unit,
                      lexicon=LEXICON, hotwords=["cat"])
    state = fusion.start(BATCH, BEAMS, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        extended = torch.rand(BATCH, BEAMS, generator=gen) < 0.7
        tokens = torch.where(extended, torch.randint(1, len(LABELS), (BATCH, BEAMS), generator=gen), -1)
        state.advance(torch.randint(0, BEAMS, (BATCH, BEAMS), generator=gen), tokens, extended)
    return state


@pytest.mark.parametrize("unit", ["word", "token"])
def test_every_per_beam_tensor_of_the_fusion_state_is_declared_and_moved(unit):
    state = fusion_state(unit)
    found = per_beam_tensors(state, (BATCH, BEAMS))
    declared = {name for name in per_beam_fields(FusionState) if getattr(state, name) is not None}
    assert set(found) == declared and len(found) >= 5, (set(found), declared)
    assert_moves_every_per_beam_tensor(state)
    # The utterances' final scores do not depend on the batch they are in.
    expected = fusion_state(unit).final_scores()
    first, rest = state.split(2)
    assert torch.equal(torch.cat([first.final_scores(), rest.final_scores()]), expected)


def test_every_per_beam_tensor_of_the_search_state_is_declared_and_moved():
    fusion = LMFusion(LABELS, lm=WORD_LM, word_delimiter=BAR, lexicon=LEXICON, hotwords=["cat"])
    beams = PrefixBeams.start(BATCH, BEAMS, 0, torch.float64, torch.device("cpu"), fusion)
    beams = beams.replace(pb=torch.randn(BATCH, BEAMS, dtype=torch.float64), key=torch.randperm(15).view(BATCH, BEAMS))
    found = per_beam_tensors(beams, (BATCH, BEAMS))
    own = {name for name in found if "." not in name}
    assert own == set(per_beam_fields(PrefixBeams)) - {"fusion"}
    assert {name for name in found if name.startswith("fusion.")} == {"fusion.lm_rows", "fusion.lm_backoffs",
                                                                     "fusion.node", "fusion.closing", "fusion.hot"}
    assert_moves_every_per_beam_tensor(beams)


def test_the_check_fails_on_a_per_beam_tensor_that_is_not_declared():
    """The tests above can fail: a per-beam tensor held by the state but not declared per-beam is left
    behind by split, and so caught."""
    state = fusion_state("word")
    state.undeclared = torch.arange(BATCH * BEAMS, dtype=torch.float32).view(BATCH, BEAMS)
    with pytest.raises(AssertionError, match="not split"):
        assert_moves_every_per_beam_tensor(state)

    @dataclass(eq=False)
    class Forgotten(BeamState):
        shape: tuple[int, int]
        kept: torch.Tensor = per_beam()
        forgotten: torch.Tensor = field(default=None)  # declared, but not per-beam

    state = Forgotten((BATCH, BEAMS), kept=torch.zeros(BATCH, BEAMS), forgotten=torch.zeros(BATCH, BEAMS))
    with pytest.raises(AssertionError, match="not split"):
        assert_moves_every_per_beam_tensor(state)


@dataclass(eq=False)
class Toy(BeamState):
    shape: tuple[int, int]
    flat: torch.Tensor = per_beam()     # (B, K)
    deep: torch.Tensor = per_beam()     # (B, K, 2, 3)
    unused: torch.Tensor = per_beam()   # None
    inner: BeamState = per_beam()       # nested
    table: torch.Tensor = None          # shared by the batch: never cut or moved


def toy() -> Toy:
    inner = Toy((BATCH, BEAMS), flat=torch.arange(15).view(BATCH, BEAMS) * 10)
    return Toy((BATCH, BEAMS), flat=torch.arange(15).view(BATCH, BEAMS), deep=torch.randn(BATCH, BEAMS, 2, 3),
               inner=inner, table=torch.arange(4))


def test_a_toy_state_with_trailing_axes_none_and_nesting():
    state = toy()
    assert_moves_every_per_beam_tensor(state)
    source = torch.tensor([[4, 4, 0, 1, 2], [0, 1, 2, 3, 4], [3, 3, 3, 3, 3]])
    moved = state.gather(source)
    assert moved.flat.tolist() == [[4, 4, 0, 1, 2], [5, 6, 7, 8, 9], [13, 13, 13, 13, 13]]
    assert torch.equal(moved.deep[0, 1], state.deep[0, 4]) and torch.equal(moved.inner.flat, moved.flat * 10)
    assert moved.unused is None and moved.table is state.table
    first, rest = state.split(2)
    assert first.flat.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] and rest.inner.shape == (1, BEAMS)
    moved.gather_(source)  # in place: gathered twice
    assert moved.flat[0].tolist() == [2, 2, 4, 4, 0]


def test_a_per_beam_field_that_holds_something_else_is_refused():
    state = Toy((BATCH, BEAMS), flat=torch.zeros(BATCH, BEAMS), deep=torch.zeros(BATCH))
    with pytest.raises(TypeError, match=r"Toy.deep is declared per_beam\(\) but holds Tensor"):
        state.gather(torch.zeros(BATCH, BEAMS, dtype=torch.long))

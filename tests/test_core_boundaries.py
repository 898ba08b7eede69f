"""The package's floors, found from the files themselves (no hand-kept list of modules):

- the core knows nothing of modalities: a modality is a subpackage that registers a dataset
  (``@register_dataset``), and no module outside the modalities and the zoo imports one;
- no floor imports one above it: registry < nn < decoding < shared top-level modules < training,
  evaluation < cli; training and evaluation never import each other; modalities use the floors up to the
  shared modules, never training or evaluation.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "ctcrnn"
FLOORS = {"registry": 0, "paths": 0, "nn": 1, "decoding": 2, "training": 4, "evaluation": 4, "compare": 5, "cli": 5}
SHARED = 3  # every other top-level module (config, data, checkpoint, metrics, inference, runlog, randomness)
TOP = 5     # ctcrnn/__init__.py, the zoo and the compatibility module ctcrnn/cells.py sit above everything


def modalities() -> set[str]:
    return {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "zoo"
            and any("register_dataset" in f.read_text() for f in p.rglob("*.py"))}


def unit_of(path: Path) -> str:
    """'nn', 'training', 'audio', ... for a package's files; the module name for a top-level file."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def floor_of(unit: str) -> int:
    if unit in ("__init__", "zoo", "cells"):
        return TOP
    return FLOORS.get(unit, SHARED)


def imported_units(path: Path) -> set[str]:
    """The ctcrnn units (first name under ctcrnn) that a module imports, at any place in the file."""
    units = set()
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            names = [module + [alias.name] for alias in node.names] if not node.module else [module]
        else:
            continue
        units |= {n[1] for n in names if len(n) > 1 and n[0] == "ctcrnn"}
    return units


def core_files() -> list[Path]:
    skip = modalities() | {"zoo"}
    return [p for p in PACKAGE.rglob("*.py") if unit_of(p) not in skip]


def test_the_modalities_are_found():
    assert {"audio", "video", "features"} <= modalities()


def test_core_modules_import_no_modality():
    found = modalities()
    for path in core_files():
        units = imported_units(path) - {unit_of(path)}
        assert not units & found, f"core module {path.relative_to(PACKAGE)} imports {units & found}"


def test_no_floor_imports_one_above_it():
    for path in core_files():
        own = unit_of(path)
        for unit in imported_units(path) - {own}:
            assert floor_of(unit) < floor_of(own) or floor_of(unit) == floor_of(own) in (SHARED, TOP), \
                f"{path.relative_to(PACKAGE)} ({own}) imports {unit}, which is not below it"


def test_modalities_use_only_the_floors_below_training():
    for name in modalities():
        for path in (PACKAGE / name).rglob("*.py"):
            for unit in imported_units(path) - modalities():
                assert floor_of(unit) <= SHARED, f"{path.relative_to(PACKAGE)} imports {unit}"

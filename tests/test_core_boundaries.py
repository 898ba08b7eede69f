"""The core must know nothing of modalities: no core module imports ctcrnn.video/audio/image/features."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "ctcrnn"
MODALITIES = {"video", "audio", "image", "features"}
CORE = ["cells", "encoder", "model", "ctc", "decoding", "alignment", "metrics", "registry", "config",
        "checkpoint", "data", "trainer", "evaluate", "beam_search", "fusion", "lm", "trie", "hashing",
        "external_decoders", "lm_tuning", "transcribe", "stepping", "distributed", "runlog", "plotting", "randomness"]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def test_core_modules_import_no_modality():
    for name in CORE:
        for module in imported_modules(PACKAGE / f"{name}.py"):
            parts = set(module.replace("ctcrnn.", ".").strip(".").split("."))
            assert not parts & MODALITIES, f"core module {name}.py imports {module}"

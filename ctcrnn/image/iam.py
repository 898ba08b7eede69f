"""IAM handwritten text lines in their published layout (Marti & Bunke 2002, the IAM Handwriting Database).

``<root>/ascii/lines.txt``: comment lines start with ``#``; every other line is
``a01-000u-00 ok 154 19 408 746 1661 89 A|MOVE|to|stop|Mr.|Gaitskell|from``: line id, word segmentation
result (``ok``/``err``), grey level used to binarise the line, number of connected components, bounding box
x y w h in the form, then the transcription with ``|`` between word tokens. Images are
``<root>/lines/<form prefix>/<form>/<line id>.png`` (``lines/a01/a01-000u/a01-000u-00.png``).

Splits are files of ids passed by path: the "Aachen" lists (6161 / 966 / 2915 lines) or the official
writer-independent task's ``trainset.txt`` / ``validationset1.txt`` / ``testset.txt``; an id may name a line
(``a01-000u-00``) or a whole form (``a01-000u``, all its lines). The transcription keeps IAM's tokens
(``Mr. Gaitskell``, ``life Peers .``: punctuation is a word of its own, as the published file and Puigcerver
2017's Laia recipe have it) unless ``detokenize`` glues punctuation and contractions back onto their word.
Must never import the core training code or another modality.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from .datasets import Line, LineImageDataset, build_line_dataset, read_image_manifest

log = logging.getLogger(__name__)

LINES_EXAMPLE = "a01-000u-00 ok 154 19 408 746 1661 89 A|MOVE|to|stop|Mr.|Gaitskell|from"
_GLUED = re.compile(r" (?=[.,;:!?)]|'(?:s|t|d|m|ll|ve|re|S|T|D|M|LL|VE|RE)\b)")


def image_path(root: str | Path, line_id: str) -> Path:
    """``lines/a01/a01-000u/a01-000u-00.png`` under ``root`` for line ``a01-000u-00``."""
    form = line_id.rsplit("-", 1)[0]
    return Path(root) / "lines" / form.split("-")[0] / form / f"{line_id}.png"


def transcription(field: str, detokenize: bool = False) -> str:
    """The text of lines.txt's last field: ``|`` separates word tokens; ``&quot;`` (which some copies
    carry) is a double quote. ``detokenize`` removes the space before punctuation and contractions.

    >>> transcription("life|Peers|.|He|'s|&quot;|done|&quot;")
    'life Peers . He \\'s " done "'
    >>> transcription("life|Peers|.|He|'s|there", detokenize=True)
    "life Peers. He's there"
    """
    text = " ".join(field.replace("&quot;", '"').split("|"))
    return _GLUED.sub("", text) if detokenize else text


def read_lines_txt(path: str | Path, detokenize: bool = False) -> dict[str, tuple[str, str]]:
    """{line id: (segmentation "ok"/"err", text)} of ``ascii/lines.txt``; a malformed line is an error naming
    the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"IAM transcriptions {path} not found (expected <root>/ascii/lines.txt from the IAM "
                         f"Handwriting Database; set data.args.root)")
    entries = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        fields = raw.split(maxsplit=8)
        if len(fields) < 9 or fields[1] not in ("ok", "err") or not all(f.lstrip("-").isdigit() for f in fields[2:8]):
            raise ValueError(f"{path}:{number}: expected 'id ok|err graylevel components x y w h "
                             f"word|word|...', like {LINES_EXAMPLE!r}; got {raw[:80]!r}")
        if fields[0] in entries:
            raise ValueError(f"{path}:{number}: line id {fields[0]} appears twice")
        entries[fields[0]] = (fields[1], transcription(fields[8].strip(), detokenize))
    if not entries:
        raise ValueError(f"{path} holds no line entries (only comments or blank lines)")
    return entries


def read_split_ids(path: str | Path) -> list[str]:
    """The ids of a split file: the first word of each non-blank, non-comment line (a ``.png`` suffix
    dropped), in file order."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"IAM split file {path} not found (a list of line or form ids, one per line, e.g. the "
                         f"Aachen split's or the official task's trainset.txt)")
    ids = [line.split()[0].removesuffix(".png") for line in path.read_text().splitlines()
           if line.strip() and not line.startswith("#")]
    if not ids:
        raise ValueError(f"IAM split file {path} lists no ids")
    return ids


def select_lines(entries: dict[str, tuple[str, str]], ids: list[str], source: str) -> list[str]:
    """Line ids of ``entries`` named by ``ids`` (line ids, or form ids for all their lines), in lines.txt order."""
    wanted = set(ids)
    chosen = [i for i in entries if i in wanted or i.rsplit("-", 1)[0] in wanted]
    known = set(entries) | {i.rsplit("-", 1)[0] for i in entries}
    unknown = [i for i in ids if i not in known]
    if unknown:
        log.warning("%s: %d of %d ids are neither lines nor forms of lines.txt (e.g. %s); they are left out",
                    source, len(unknown), len(ids), ", ".join(unknown[:5]))
    if not chosen:
        raise ValueError(f"{source}: none of its {len(ids)} ids (e.g. {ids[0]!r}) names a line of lines.txt: is it "
                         f"a split file for this copy of IAM?")
    return chosen


def split_file(given: str, root: Path) -> Path:
    """A split file's path: as given, or relative to the IAM root."""
    path = Path(given)
    return path if path.is_absolute() or path.exists() or not (root / path).exists() else root / path


def iam_lines(split: str, root: str = "data/IAM", train: str = "", val: str = "", test: str = "",
              skip_err: bool = False, detokenize: bool = False, line: dict | None = None,
              augment: dict | None = None, tokens: list | str | None = None, stride: int = 8,
              fitted: dict | None = None) -> LineImageDataset:
    """IAM lines under ``root`` (see the module docstring). ``train``/``val``/``test``: split files of line
    or form ids (a path, or relative to ``root``); ``split`` may also be a split file or a ``.jsonl`` manifest
    itself. ``skip_err`` leaves out lines whose word segmentation is marked ``err`` (their transcription is
    still right: most recipes keep them). ``line``: :class:`~ctcrnn.image.io.LineConfig` fields (height 128 by
    default, as Puigcerver 2017); ``stride``: the model's width stride (8 for ``puigcerver2017``)."""
    line = {"height": 128, **(line or {})}
    if split.endswith((".jsonl", ".json")):
        return build_line_dataset("iam_lines", split, read_image_manifest(split), line, augment, tokens, fitted,
                                  stride, source=f"manifest {split}")
    root_path = Path(root)
    files = {"train": train, "val": val, "test": test}
    given = files.get(split) or (split if split not in files else "")
    if not given:
        raise ValueError(f"iam_lines has no split file for {split!r}: set data.args.{split}=<file of line ids> "
                         f"(e.g. the Aachen split's list) or pass a split file as the split")
    source = split_file(given, root_path)
    entries = read_lines_txt(root_path / "ascii" / "lines.txt", detokenize)
    chosen = select_lines(entries, read_split_ids(source), f"IAM split file {source}")
    if skip_err:
        chosen = [i for i in chosen if entries[i][0] == "ok"]
    lines = [Line(i, entries[i][1], str(image_path(root_path, i))) for i in chosen]
    return build_line_dataset("iam_lines", split, lines, line, augment, tokens, fitted, stride,
                              source=f"IAM {source.name}")

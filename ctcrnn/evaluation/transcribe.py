"""Run a checkpoint on media files: transcripts (``ctcrnn transcribe``) and forced alignments (``ctcrnn align``).

A file is read by the reader its modality registers (``@register_reader``), with the preprocessing the
checkpoint's ``input_spec`` records, so a checkpoint reads new files exactly as it read its training data.
Times in seconds come from ``input_spec["fps"]`` (input steps per second) and the frontend's stride.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..decoding.alignment import forced_align_segments
from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..nn.ctc import min_ctc_frames
from ..data import labels_to_text
from ..decoding.decoders import greedy_decode
from ..registry import READERS
from ..paths import OutputLocationError, check_output

__all__ = ["Recogniser", "Transcript", "check_ctm_output", "check_finite", "ctm_ids", "text_to_labels", "write_ctm"]


@dataclass
class Transcript:
    path: str
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    segments: list[dict] = field(default_factory=list)  # {"label", "start_s", "end_s", "score"} per token
    error: str | None = None                              # why the file could not be read


def text_to_labels(text: str, labels: list[str], input_spec: dict) -> list[int]:
    """Label ids of a transcript: characters for character models (a word delimiter is declared), otherwise
    whitespace-separated label names. Anything the model cannot emit is an error naming it."""
    units = list(text.strip()) if input_spec.get("word_delimiter") is not None else text.split()
    index = {label: i for i, label in enumerate(labels) if i}  # never the blank
    unknown = sorted({u for u in units if u not in index})
    if unknown:
        raise ValueError(f"transcript has symbols this model cannot emit: {unknown[:10]}; its labels are "
                         f"{labels[1:40]}")
    if not units:
        raise ValueError("transcript is empty: give the text to align")
    return [index[u] for u in units]


def check_finite(log_probs: torch.Tensor, name: str | Path) -> torch.Tensor:
    """``log_probs`` (T', V) of the clip ``name``, or a ValueError naming it when some are NaN or infinite.
    A log-softmax of finite inputs is finite: NaN or inf means the input overflowed the model (for audio,
    e.g. float samples far outside [-1, 1]), and decoding it would give an empty or arbitrary transcript."""
    bad = int((~torch.isfinite(log_probs)).any(-1).sum())
    if bad:
        raise ValueError(f"{name}: the model's log-probabilities are not finite (NaN or inf) on {bad} of "
                         f"{log_probs.shape[0]} output frames: the input is outside the range the model reads "
                         "(e.g. audio samples far beyond [-1, 1]); check the file and re-encode it at a normal level")
    return log_probs


class Recogniser:
    """A checkpoint ready to read files: ``recogniser.transcribe(paths)`` / ``recogniser.align(path, text)``.

    decoder: a callable ``(log_probs (B, T, V), lengths (B,)) -> list[list[Hypothesis]]`` such as
    :class:`~ctcrnn.decoding.BeamSearchDecoder`; None = greedy decoding.
    """

    def __init__(self, checkpoint: str | Path, device: str | torch.device = "cpu", decoder=None):
        state = load_checkpoint(checkpoint)
        self.labels, self.input_spec = list(state["labels"]), dict(state["input_spec"])
        self.model = model_from_checkpoint(state).to(device)
        self.device, self.decoder = torch.device(device), decoder
        self.read = READERS.get(self.input_spec["modality"])
        fps = self.input_spec.get("fps")
        self.seconds_per_frame = self.model.frontend.stride / fps if fps else None

    @torch.no_grad()
    def log_probs(self, path: str | Path) -> torch.Tensor:
        """(T', V) log-probabilities of one file; a ValueError naming the file where it cannot be read or
        they are not finite."""
        try:
            x = self.read(path, self.input_spec)
        except ValueError as e:
            if str(path) in str(e):
                raise
            raise ValueError(f"{path}: {e}") from None  # a reader's message that does not say which file
        log_probs, out_lengths = self.model(x[None].to(self.device), torch.tensor([x.shape[0]], device=self.device))
        return check_finite(log_probs[0, : int(out_lengths[0])].cpu(), path)

    def _segments(self, log_probs: torch.Tensor, tokens: list[int]) -> list[dict]:
        if not tokens or min_ctc_frames(tokens) > log_probs.shape[0]:
            return []
        seconds = self.seconds_per_frame
        return [{"label": self.labels[s.label], "start": s.start, "end": s.end, "score": round(s.score, 4),
                 **({"start_s": round(s.start * seconds, 3), "end_s": round(s.end * seconds, 3)} if seconds else {})}
                for s in forced_align_segments(log_probs, tokens, fill_blanks=False)]

    def transcribe(self, paths: list[str | Path]) -> list[Transcript]:
        """One Transcript per file, in order; an unreadable file gets ``error`` set, the others still run."""
        results = []
        for path in paths:
            try:
                log_probs = self.log_probs(path)
            except (ValueError, OSError) as e:  # readers raise ValueError subclasses naming the file
                results.append(Transcript(str(path), error=str(e)))
                continue
            lengths = torch.tensor([log_probs.shape[0]])
            if self.decoder is not None:
                tokens = self.decoder(log_probs[None], lengths)[0][0].tokens
            else:
                tokens = greedy_decode(log_probs[None], lengths)[0]
            results.append(Transcript(str(path), labels_to_text(tokens, self.labels, self.input_spec), tokens,
                                      self._segments(log_probs, tokens)))
        return results

    def align(self, path: str | Path, text: str) -> Transcript:
        """Forced alignment of ``text`` to one file: a segment per token with frames, seconds and the mean
        log-probability of its CTC spike as a confidence."""
        tokens = text_to_labels(text, self.labels, self.input_spec)
        log_probs = self.log_probs(path)
        if min_ctc_frames(tokens) > log_probs.shape[0]:
            raise ValueError(f"{path}: the transcript needs at least {min_ctc_frames(tokens)} output frames "
                             f"(labels plus repeats) but the model gives {log_probs.shape[0]}: the file is too "
                             f"short for this transcript")
        return Transcript(str(path), labels_to_text(tokens, self.labels, self.input_spec), tokens,
                          self._segments(log_probs, tokens))


def check_ctm_output(path: str | Path, option: str = "--ctm") -> Path:
    """Refuse, before any work, a CTM location :func:`write_ctm` cannot write (it and its ``.json`` twin)."""
    path = Path(path)
    if path.suffix == ".json":
        raise OutputLocationError(f"{option} {path} ends in .json, the name of the JSON copy written next to the "
                                  f"CTM: name it {path.with_suffix('.ctm')}")
    check_output(path, option)
    check_output(path.with_suffix(".json"), f"{option} (its JSON copy)")
    return path


def ctm_ids(paths: list[str]) -> list[str]:
    """One CTM file id per path: the file's stem ("call_07"), or, where two files share a stem, every
    file's path relative to the folder they share ("day1/call_07.wav", "day2/call_07.wav"). Whitespace,
    which would split a CTM line, becomes "_"; a path given twice gets "~2", "~3" on its later ids."""
    ids = [Path(p).stem for p in paths]
    if len(set(ids)) < len(ids):
        absolute = [os.path.abspath(p) for p in paths]
        common = os.path.commonpath([os.path.dirname(p) for p in absolute])
        ids = [os.path.relpath(p, common) for p in absolute]
    ids = ["_".join(i.split()) or "_" for i in ids]
    seen: Counter = Counter()
    unique = []
    for i in ids:
        seen[i] += 1
        unique.append(i if seen[i] == 1 else f"{i}~{seen[i]}")
    return unique


def write_ctm(transcripts: list[Transcript], path: str | Path) -> None:
    """NIST CTM-style lines ``<file id> 1 <start_s> <duration_s> <token> <score>`` (space tokens written as
    ``<space>``; file ids from :func:`ctm_ids`, unique), plus the same as JSON next to it (``.json``, each
    transcript with its ``ctm_id``)."""
    lines = []
    ids = ctm_ids([t.path for t in transcripts])
    for t, file_id in zip(transcripts, ids):
        for s in t.segments:
            if "start_s" not in s:
                raise ValueError("the checkpoint's input_spec has no 'fps', so there are no times in seconds")
            token = "<space>" if s["label"].isspace() else s["label"]
            lines.append(f"{file_id} 1 {s['start_s']:.3f} {s['end_s'] - s['start_s']:.3f} {token} {s['score']:.4f}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    records = [{**t.__dict__, "ctm_id": file_id} for t, file_id in zip(transcripts, ids)]
    path.with_suffix(".json").write_text(json.dumps(records, indent=2) + "\n")

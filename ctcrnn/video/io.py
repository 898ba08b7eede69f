"""Reading videos (files decoded with PyAV, or folders of extracted frames) into (T, C, H, W) float32
tensors in [0, 1], with temporal subsampling, resize, centre crop and grayscale, and an on-disk cache of
decoded clips. Every failure is a :class:`VideoError` naming the path, what is wrong and the fix; PyAV's and
PIL's own exceptions never escape.

Frames are quantised to uint8 after resize/crop/grayscale, whether or not the cache is used, so a clip
read through :class:`FrameCache` is bit-identical to one read directly.
Must never import the core training code or another modality; the core never imports this.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..config import Options
from ..data import stat_media

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as PIL "L" and torchvision rgb_to_grayscale
_CACHE_VERSION = 1  # bump when decoding changes, so old cache entries are not served


class VideoError(ValueError):
    """A video that cannot be used: missing, empty, not a video, no video stream, no frames, truncated or
    undecodable, or a frame folder that is empty or holds an unreadable image."""


def check_hw(name: str, value) -> list:
    """``value`` as a list: [] or [H, W] of positive ints, else a ValueError naming ``name``."""
    value = list(value)
    if value and (len(value) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in value)):
        raise ValueError(f"{name} must be [] (off) or [H, W] with positive ints, got {value}")
    return value


@dataclass
class VideoConfig(Options):
    args_key = "video"
    fps: float = 0.0  # frames per second to keep: 0 keeps the source rate; else nearest frame to each k/fps
    size: list = field(default_factory=list)  # [H, W] to resize every frame to (bilinear, antialiased); [] keeps
    crop: list = field(default_factory=list)  # [H, W] centre crop, applied after the resize; [] keeps
    grayscale: bool = False  # True: one channel (ITU-R 601 luma); False: RGB
    max_frames: int = 0  # keep at most this many frames (the first ones, after fps); 0 keeps all

    def __post_init__(self):
        self.size, self.crop = check_hw("video.size", self.size), check_hw("video.crop", self.crop)
        if not self.fps >= 0:
            raise ValueError(f"video.fps must be >= 0 (0 keeps the source rate), got {self.fps}")
        if self.max_frames < 0:
            raise ValueError(f"video.max_frames must be >= 0 (0 keeps all), got {self.max_frames}")
        if self.size and self.crop and (self.crop[0] > self.size[0] or self.crop[1] > self.size[1]):
            raise ValueError(f"video.crop {self.crop} is larger than video.size {self.size}: "
                             f"crop at most the resized frame")

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3


# ---------------------------------------------------------------- checks and helpers

def _check_path(path: str) -> bool:
    """True for a frame folder, False for a non-empty readable file; VideoError otherwise."""
    status = stat_media(path, "video", VideoError)
    if stat.S_ISDIR(status.st_mode):
        return True
    if status.st_size == 0:
        raise VideoError(f"video file {path} is empty (0 bytes): re-copy or re-encode it, or drop it from the data")
    if not os.access(path, os.R_OK):
        raise VideoError(f"video file {path} cannot be read (permission denied): check its permissions")
    return False


def _natural_key(name: str) -> list:
    # frame2 before frame10: digit runs compare as numbers
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_files(folder: str) -> list[str]:
    """The image files of a frame folder in natural numeric order; VideoError when there are none."""
    try:
        names = os.listdir(folder)
    except OSError as err:
        raise VideoError(f"frame folder {folder} cannot be listed ({err.strerror}): check its permissions") from None
    images = sorted((n for n in names if n.lower().endswith(IMAGE_SUFFIXES)), key=_natural_key)
    if not images:
        others = f" (it holds {len(names)} other files)" if names else ""
        raise VideoError(f"frame folder {folder} holds no frames{others}: expected images ending in "
                         f"{', '.join(IMAGE_SUFFIXES)}; extract the frames again or drop the clip")
    return [os.path.join(folder, n) for n in images]


def _not_video(path: str, err: Exception) -> VideoError:
    return VideoError(f"{path} is not a readable video ({type(err).__name__}: {err}): expected a container PyAV "
                      f"(FFmpeg) reads, e.g. mp4, avi, mpg, webm, mkv; a file cut short fails this way too: "
                      f"re-copy or re-encode it (ffmpeg -i IN OUT.mp4), or drop it from the data")


def _truncated(path: str, detail: str) -> VideoError:
    return VideoError(f"{path} is truncated or corrupt: {detail}: re-copy or re-encode it, or drop it from the data")


def _open(path: str):
    try:
        container = av.open(path)
    except av.error.FFmpegError as err:
        raise _not_video(path, err) from None
    except Exception as err:  # PyAV raises a few non-FFmpeg types (e.g. UnicodeDecodeError on odd metadata)
        raise _not_video(path, err) from err
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        what = f"only {', '.join(kinds)} streams" if kinds else "no streams at all (a cut-short file looks like this)"
        raise VideoError(f"{path} has no video stream ({what}): point the manifest at the video itself, "
                         f"or re-copy the file if it was cut short")
    return container


def _stream_rate(stream, path: str) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or float(rate) <= 0:
        raise VideoError(f"{path} declares no frame rate: re-encode it with one (ffmpeg -i IN -r 25 OUT.mp4)")
    return float(rate)


def subsampled_count(num_frames: int, source_fps: float, fps: float) -> int:
    """Frames kept when ``num_frames`` at ``source_fps`` are resampled to ``fps`` (0: all):
    ``ceil(num_frames * fps / source_fps)``, one per target time ``k / fps`` inside the clip's duration."""
    if not fps or math.isclose(fps, source_fps, rel_tol=1e-6):
        return num_frames
    return max(1, math.ceil(num_frames * fps / source_fps - 1e-6)) if num_frames else 0


def select_frames(times, source_fps: float, fps: float) -> list[int]:
    """Indices of the frames nearest to the target times ``t0 + k / fps`` (ties go to the earlier frame),
    ``k < subsampled_count``; all indices when ``fps`` is 0 or the source rate. ``times`` in seconds,
    ascending (timestamps of a file, or ``i / source_fps`` for a folder)."""
    n = len(times)
    if not fps or math.isclose(fps, source_fps, rel_tol=1e-6):
        return list(range(n))
    times = np.asarray(times, dtype=np.float64)
    targets = times[0] + np.arange(subsampled_count(n, source_fps, fps)) / fps
    after = np.clip(np.searchsorted(times, targets), 1, n - 1) if n > 1 else np.zeros(len(targets), int)
    before = np.maximum(after - 1, 0)
    pick_before = (targets - times[before]) <= (times[after] - targets) + 1e-9
    return np.where(pick_before, before, after).tolist()


def _limit(indices: list[int], cfg: VideoConfig) -> list[int]:
    return indices[:cfg.max_frames] if cfg.max_frames else indices


def kept_frames(num_frames: int, source_fps: float, cfg: VideoConfig) -> list[int]:
    """Indices of the frames :func:`read_video` keeps of ``num_frames`` frames at ``source_fps``, at their
    nominal times ``i / source_fps`` (``cfg.fps`` then ``cfg.max_frames``): exactly a frame folder's, and a
    file's whenever its timestamps are regular. Index per-frame labels with it to keep them aligned."""
    return _limit(select_frames([i / source_fps for i in range(num_frames)], source_fps, cfg.fps), cfg)


# ---------------------------------------------------------------- decoding

def _decode_file(path: str, cfg: VideoConfig) -> list[np.ndarray]:
    """The selected frames of a video file as (H, W, 3) uint8 RGB arrays."""
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        rate, declared = _stream_rate(stream, path), stream.frames
        # A long clip with max_frames need not be decoded to the end: stop once past the last target time.
        stop_after = None
        if cfg.max_frames:
            step = 1 / cfg.fps if cfg.fps else 1 / rate
            stop_after = (cfg.max_frames - 1) * step + 1 / rate + 1e-6
        times, images, t0 = [], [], None
        try:
            for i, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else i / rate
                t0 = t if t0 is None else t0
                if stop_after is not None and t - t0 > stop_after:
                    break
                times.append(t)
                images.append(frame.to_ndarray(format="rgb24"))
            else:
                stop_after = None  # decoded to the end: the frame count can be checked
        except av.error.FFmpegError as err:
            raise _truncated(path, f"decoding failed after {len(images)} frames ({err})") from None
    if not images:
        if declared:
            raise _truncated(path, f"its header declares {declared} frames but none could be decoded")
        raise VideoError(f"{path} has a video stream but zero frames: drop it from the data")
    if stop_after is None and declared and len(images) < declared:
        raise _truncated(path, f"its header declares {declared} frames but only {len(images)} could be decoded")
    if any(b < a for a, b in itertools.pairwise(times)):  # broken timestamps: fall back to the nominal rate
        times = [i / rate for i in range(len(times))]
    return [images[i] for i in _limit(select_frames(times, rate, cfg.fps), cfg)]


def _read_image(path: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ... for bad files
        raise VideoError(f"frame {path} is not a readable image ({type(err).__name__}: {err}): re-extract "
                         f"the frames of that clip or drop the clip") from err


def _decode_folder(folder: str, cfg: VideoConfig, source_fps: float) -> list[np.ndarray]:
    files = frame_files(folder)
    keep = kept_frames(len(files), source_fps, cfg)
    images = [_read_image(files[i]) for i in keep]
    first = images[0].shape[:2]
    for i, image in zip(keep, images):
        if image.shape[:2] != first:
            raise VideoError(f"frame {files[i]} is {image.shape[0]}x{image.shape[1]} but {files[keep[0]]} is "
                             f"{first[0]}x{first[1]} (HxW): re-extract the clip's frames at one size")
    return images


def _transform(images: list[np.ndarray], cfg: VideoConfig, path: str) -> torch.Tensor:
    """(H, W, 3) uint8 arrays -> (T, C, H', W') uint8 after resize, centre crop and grayscale."""
    frames = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)  # (T, 3, H, W)
    if not (cfg.size or cfg.crop or cfg.grayscale):
        return frames.contiguous()
    x = frames.float() / 255
    if cfg.size and list(x.shape[-2:]) != cfg.size:
        x = F.interpolate(x, size=cfg.size, mode="bilinear", antialias=True, align_corners=False)
    if cfg.crop:
        h, w = x.shape[-2:]
        ch, cw = cfg.crop
        if ch > h or cw > w:
            raise ValueError(f"video.crop {cfg.crop} is larger than the frames of {path} ({h}x{w}): "
                             f"set video.size or a smaller crop")
        top, left = round((h - ch) / 2), round((w - cw) / 2)  # torchvision center_crop's rounding
        x = x[..., top:top + ch, left:left + cw]
    if cfg.grayscale:
        x = (x * torch.tensor(_GREY_WEIGHTS).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).contiguous()


def decode_video(path: str | os.PathLike, cfg: VideoConfig, source_fps: float = 25.0) -> torch.Tensor:
    """A video file or frame folder as (T, C, H, W) uint8, with ``cfg`` applied (what the cache stores)."""
    path = os.fspath(path)
    if not source_fps > 0:
        raise ValueError(f"source_fps must be positive, got {source_fps} (reading {path})")
    is_folder = _check_path(path)
    images = _decode_folder(path, cfg, source_fps) if is_folder else _decode_file(path, cfg)
    return _transform(images, cfg, path)


def read_video(path: str | os.PathLike, cfg: VideoConfig | None = None, source_fps: float = 25.0) -> torch.Tensor:
    """(T, C, H, W) float32 in [0, 1] (C = 1 grey, 3 RGB) from a video file or a frame folder.

    Files are decoded with PyAV at their own rate; folders (png/jpg/jpeg/bmp, natural numeric order) are
    taken to be at ``source_fps``. ``cfg.fps`` keeps the frame nearest to each time ``t0 + k / fps``, so
    25 -> 12.5 keeps every other frame and T = ``ceil(T_source * fps / source_rate)``.
    """
    return decode_video(path, cfg or VideoConfig(), source_fps).float().div_(255)


def read_video_for_spec(path: str | os.PathLike, input_spec: dict, cache: FrameCache | None = None) -> torch.Tensor:
    """(T, C, H, W) float32: a new video read exactly as a model's training data was (``ctcrnn transcribe``).

    Uses ``input_spec["video"]`` (VideoConfig fields) and ``input_spec.get("source_fps", 25)``.
    """
    cfg = VideoConfig.from_dict(dict(input_spec.get("video", {})))
    source_fps = float(input_spec.get("source_fps", 25.0))
    return cache.read(path, cfg, source_fps) if cache is not None else read_video(path, cfg, source_fps)


def video_info(path: str | os.PathLike, cfg: VideoConfig | None = None, source_fps: float = 25.0) -> tuple[int, float]:
    """``(num_frames, fps)`` without decoding: the container's frame count (packets counted when it declares
    none, as mpg and webm do) or a folder's image count; fps is the stream's rate or ``source_fps``.

    With ``cfg``, num_frames is the count :func:`read_video` returns after ``cfg.fps`` and ``cfg.max_frames``
    (fps stays the source rate). A truncated file can declare more frames than it decodes; read_video says so.
    """
    path = os.fspath(path)
    if _check_path(path):
        count, rate = len(frame_files(path)), float(source_fps)
    else:
        container = _open(path)
        with container:
            stream = container.streams.video[0]
            rate, count = _stream_rate(stream, path), stream.frames
            if not count:
                try:
                    count = sum(1 for packet in container.demux(stream) if packet.size)
                except av.error.FFmpegError as err:
                    raise _truncated(path, f"demuxing failed ({err})") from None
        if not count:
            raise VideoError(f"{path} has a video stream but zero frames: drop it from the data")
    if cfg is not None:
        count = subsampled_count(count, rate, cfg.fps)
        count = min(count, cfg.max_frames) if cfg.max_frames else count
    return count, rate


# ---------------------------------------------------------------- cache

class FrameCache:
    """Decoded clips kept on disk as uint8 (T, C, H, W) tensors, ``root/<sha1>.pt``, keyed by the absolute
    path, size and mtime of the file (of every frame, for a folder), ``cfg`` and ``source_fps``: a changed
    file or setting is decoded again. ``root=None`` caches nothing. ``decodes`` and ``hits`` count reads.

    Writes go to a temporary file renamed into place, so concurrent loader workers and a killed run never
    leave a half-written entry; an unreadable entry is decoded again and overwritten.
    """

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root) if root is not None else None
        self.decodes = 0
        self.hits = 0
        self._warned = False

    def key(self, path: str | os.PathLike, cfg: VideoConfig, source_fps: float = 25.0) -> str:
        path = os.path.abspath(os.fspath(path))
        if _check_path(path):
            files = [(os.path.basename(f), s.st_size, s.st_mtime_ns) for f in frame_files(path) for s in [os.stat(f)]]
            identity = {"folder": files, "source_fps": float(source_fps)}
        else:
            status = os.stat(path)
            identity = {"size": status.st_size, "mtime_ns": status.st_mtime_ns}
        text = json.dumps({"version": _CACHE_VERSION, "path": path, **identity, "cfg": dataclasses.asdict(cfg)},
                          sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()

    def read_uint8(self, path: str | os.PathLike, cfg: VideoConfig, source_fps: float = 25.0) -> torch.Tensor:
        """(T, C, H, W) uint8, from the cache when present."""
        if self.root is None:
            self.decodes += 1
            return decode_video(path, cfg, source_fps)
        entry = self.root / f"{self.key(path, cfg, source_fps)}.pt"
        if entry.exists():
            try:
                frames = torch.load(entry, weights_only=True)
                self.hits += 1
                return frames
            except Exception:  # a damaged entry (any unpickling failure) is only a miss
                log.warning("frame cache entry %s for %s is unreadable: decoding again", entry, path, exc_info=True)
        frames = decode_video(path, cfg, source_fps)
        self.decodes += 1
        self._write(entry, frames, path)
        return frames

    def read(self, path: str | os.PathLike, cfg: VideoConfig, source_fps: float = 25.0) -> torch.Tensor:
        """(T, C, H, W) float32 in [0, 1], identical to :func:`read_video` with the same arguments."""
        return self.read_uint8(path, cfg, source_fps).float().div_(255)

    def _write(self, entry: Path, frames: torch.Tensor, path) -> None:
        tmp = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{entry.stem}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                torch.save(frames, f)
            os.replace(tmp, entry)
        except OSError as err:  # a cache that cannot be written costs speed, not the run
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            if not self._warned:
                log.warning("frame cache %s cannot be written (%s): decoding %s and others every time; "
                            "fix the folder's permissions or space, or set the cache to None",
                            self.root, err, path)
                self._warned = True

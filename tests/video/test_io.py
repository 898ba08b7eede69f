"""read_video / video_info / FrameCache on fixture videos encoded with PyAV in real formats (mp4/h264,
mp4/mpeg4, avi/mjpeg, mpg/mpeg1video, webm/vp8) and PNG frame folders; a VideoError naming the file for
every kind of bad input; and the clip augmentations of ctcrnn.video.augment."""
import os

import av
import numpy as np
import pytest
import torch
from PIL import Image

from ctcrnn.video.augment import VideoAugmentConfig, augment_clip, reading_config, rescale_indices
from ctcrnn.video.io import (
    FrameCache,
    VideoConfig,
    VideoError,
    read_video,
    read_video_for_spec,
    select_frames,
    video_info,
)

T, H, W = 12, 24, 32
FORMATS = {"h264.mp4": ("libx264", "yuv420p"), "mpeg4.mp4": ("mpeg4", "yuv420p"),
           "mjpeg.avi": ("mjpeg", "yuvj420p"), "mpeg1.mpg": ("mpeg1video", "yuv420p"),
           "vp8.webm": ("libvpx", "yuv420p")}


def square_x(i: int) -> int:
    return 2 + 2 * i  # left edge of the bright 8x8 square in frame i: it moves 2 px right per frame


def moving_square(i: int) -> np.ndarray:
    """(H, W, 3) uint8: dark background, a bright 8x8 square at rows 8..15, columns square_x(i)..+7."""
    image = np.full((H, W, 3), 30, np.uint8)
    image[8:16, square_x(i):square_x(i) + 8] = (230, 200, 120)
    return image


def encode(path, codec: str, pix_fmt: str, frames: int = T, rate: int = 25, options=None):
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        container.start_encoding()
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(moving_square(i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    paths = {name: encode(root / name, codec, pix) for name, (codec, pix) in FORMATS.items()}
    folder = root / "frames"
    folder.mkdir()
    for i in range(T):  # frame1..frame12: a plain string sort would put frame10 before frame2
        Image.fromarray(moving_square(i)).save(folder / f"frame{i + 1}.png")
    paths["folder"] = folder
    return paths


def centroid_x(frame: torch.Tensor) -> float:
    """Column centroid of the bright pixels of a (C, H, W) frame."""
    mask = (frame.mean(dim=0) > 0.5).float()
    return float((mask.sum(dim=0) * torch.arange(frame.shape[-1])).sum() / mask.sum())


@pytest.mark.parametrize("name", list(FORMATS) + ["folder"])
def test_decodes_every_frame_in_order(videos, name):
    frames = read_video(videos[name], VideoConfig())
    assert frames.shape == (T, 3, H, W) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1
    centres = [centroid_x(f) for f in frames]
    for i, c in enumerate(centres):  # codec loss blurs edges; the square still moves 2 px per frame
        assert abs(c - (square_x(i) + 3.5)) < 1.0, (name, i, centres)
    assert video_info(videos[name]) == (T, 25.0)


def test_folder_is_lossless_and_in_natural_order(videos):
    frames = read_video(videos["folder"], VideoConfig())
    expected = torch.from_numpy(np.stack([moving_square(i) for i in range(T)])).permute(0, 3, 1, 2)
    assert torch.equal((frames * 255).round().to(torch.uint8), expected)


@pytest.mark.parametrize("name", ["h264.mp4", "mpeg1.mpg", "folder"])
def test_fps_subsampling_keeps_nearest_frames(videos, name):
    half = read_video(videos[name], VideoConfig(fps=12.5))
    full = read_video(videos[name], VideoConfig())
    assert torch.equal(half, full[0::2])  # 25 -> 12.5: frames 0, 2, 4, ...
    assert video_info(videos[name], VideoConfig(fps=12.5)) == (6, 25.0)
    ten = read_video(videos[name], VideoConfig(fps=10))  # ceil(12 * 10 / 25) = 5 frames at 0, .1, .2, .3, .4 s
    assert torch.equal(ten, full[[0, 2, 5, 7, 10]])  # ties (0.1 s between 0.08 and 0.12) go to the earlier frame
    assert video_info(videos[name], VideoConfig(fps=10))[0] == 5


def test_select_frames_upsamples_by_repeating():
    times = [i / 10 for i in range(4)]
    assert select_frames(times, 10, 20) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert select_frames(times, 10, 0) == [0, 1, 2, 3]


def test_max_frames_and_folder_source_fps(videos):
    full = read_video(videos["h264.mp4"], VideoConfig())
    assert torch.equal(read_video(videos["h264.mp4"], VideoConfig(max_frames=5)), full[:5])
    assert torch.equal(read_video(videos["h264.mp4"], VideoConfig(fps=12.5, max_frames=4)), full[0:8:2])
    assert video_info(videos["h264.mp4"], VideoConfig(max_frames=5))[0] == 5
    # a folder extracted at 50 fps, read at 25: every other frame
    assert read_video(videos["folder"], VideoConfig(fps=25), source_fps=50).shape[0] == 6
    assert video_info(videos["folder"], VideoConfig(fps=25), source_fps=50) == (6, 50.0)


def test_resize_crop_grayscale(videos):
    path = videos["h264.mp4"]
    assert read_video(path, VideoConfig(size=[12, 16])).shape == (T, 3, 12, 16)
    assert read_video(path, VideoConfig(size=[12, 16], crop=[8, 8])).shape == (T, 3, 8, 8)
    assert read_video(path, VideoConfig(crop=[16, 16])).shape == (T, 3, 16, 16)
    grey = read_video(videos["folder"], VideoConfig(grayscale=True))
    rgb = read_video(videos["folder"], VideoConfig())
    assert grey.shape == (T, 1, H, W)
    luma = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert (grey - luma).abs().max() <= 0.5 / 255 + 1e-6
    small = read_video(videos["folder"], VideoConfig(size=[12, 16]))  # the square still moves, at half scale
    assert abs(centroid_x(small[6]) - (square_x(6) + 3.5) / 2) < 1.0
    with pytest.raises(ValueError, match="crop"):
        read_video(path, VideoConfig(crop=[30, 30]))


def test_config_refuses_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="did you mean 'grayscale'"):
        VideoConfig.from_dict({"greyscale": True})
    with pytest.raises(ValueError, match="video.size"):
        VideoConfig(size=[24])
    with pytest.raises(ValueError, match="larger than video.size"):
        VideoConfig(size=[10, 10], crop=[12, 12])
    with pytest.raises(ValueError, match="fps"):
        VideoConfig(fps=-1)
    assert VideoConfig.from_dict({"size": (24, 32)}).size == [24, 32]


def test_read_video_for_spec(videos):
    spec = {"modality": "video", "video": {"size": [12, 16], "grayscale": True}, "source_fps": 50}
    assert read_video_for_spec(videos["folder"], spec).shape == (T, 1, 12, 16)
    assert read_video_for_spec(videos["folder"], {**spec, "video": {"fps": 25}}).shape[0] == 6
    with pytest.raises(ValueError, match="did you mean 'size'"):
        read_video_for_spec(videos["folder"], {"video": {"sizes": [1, 1]}})


@pytest.mark.parametrize("name", ["mpeg4.mp4", "folder"])
def test_frame_cache_decodes_once_per_file_and_setting(videos, tmp_path, name):
    path, cfg = videos[name], VideoConfig(size=[12, 16])
    cache = FrameCache(tmp_path / "cache")
    first = cache.read(path, cfg)
    assert cache.decodes == 1 and torch.equal(first, read_video(path, cfg))
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    assert not list((tmp_path / "cache").glob("*.tmp"))
    assert torch.equal(cache.read(path, cfg), first) and (cache.decodes, cache.hits) == (1, 1)
    assert torch.equal(FrameCache(tmp_path / "cache").read(path, cfg), first)  # persists across instances
    cache.read(path, VideoConfig(size=[12, 16], grayscale=True))
    assert cache.decodes == 2
    touched = path / "frame3.png" if name == "folder" else path
    stat = os.stat(touched)
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cache.read(path, cfg)
    assert cache.decodes == 3


def test_frame_cache_none_and_damaged_entry(videos, tmp_path):
    path, cfg = videos["h264.mp4"], VideoConfig()
    nocache = FrameCache(None)
    nocache.read(path, cfg), nocache.read(path, cfg)
    assert nocache.decodes == 2
    cache = FrameCache(tmp_path)
    cache.read(path, cfg)
    (tmp_path / f"{cache.key(path, cfg)}.pt").write_bytes(b"garbage")
    assert torch.equal(cache.read(path, cfg), read_video(path, cfg)) and cache.decodes == 2


# ---------------------------------------------------------------- bad inputs


def cut(src, dst, fraction):
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * fraction)])
    return dst


def test_missing_and_empty(tmp_path):
    with pytest.raises(VideoError, match="nothere.mp4 does not exist"):
        read_video(tmp_path / "nothere.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    for read in (read_video, video_info):
        with pytest.raises(VideoError, match="empty.mp4 is empty"):
            read(tmp_path / "empty.mp4")


def test_text_file_named_mp4(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video at all\n")
    for read in (read_video, video_info):
        with pytest.raises(VideoError, match="notes.mp4 is not a readable video"):
            read(tmp_path / "notes.mp4")


def test_truncated_videos(videos, tmp_path):
    # moov at the end (PyAV's default): cut short, the index is gone
    with pytest.raises(VideoError, match="cut_end.mp4"):
        read_video(cut(videos["h264.mp4"], tmp_path / "cut_end.mp4", 0.6))
    # moov first (faststart): the header promises 12 frames, the cut data cannot deliver them
    fast = encode(tmp_path / "fast.mp4", "libx264", "yuv420p", options={"movflags": "faststart"})
    assert read_video(fast).shape[0] == T
    with pytest.raises(VideoError, match="cut_fast.mp4 is truncated"):
        read_video(cut(fast, tmp_path / "cut_fast.mp4", 0.7))
    with pytest.raises(VideoError, match="cut.avi is truncated"):
        read_video(cut(videos["mjpeg.avi"], tmp_path / "cut.avi", 0.7))


def test_no_video_stream_and_zero_frames(tmp_path):
    with av.open(str(tmp_path / "speech.wav"), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(VideoError, match="speech.wav has no video stream \\(only audio"):
        read_video(tmp_path / "speech.wav")
    encode(tmp_path / "nothing.avi", "mjpeg", "yuvj420p", frames=0)
    for read in (read_video, video_info):
        with pytest.raises(VideoError, match="nothing.avi has a video stream but zero frames"):
            read(tmp_path / "nothing.avi")


def test_bad_frame_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    for read in (read_video, video_info):
        with pytest.raises(VideoError, match="empty holds no frames"):
            read(tmp_path / "empty")
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a frame")  # ignored: only images are frames
    for i in range(3):
        Image.fromarray(moving_square(i)).save(folder / f"{i:03d}.png")
    assert read_video(folder).shape == (3, 3, H, W)
    (folder / "001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(VideoError, match="001.png is not a readable image"):
        read_video(folder)
    Image.fromarray(moving_square(0)[:20]).save(folder / "001.png")
    with pytest.raises(VideoError, match="001.png is 20x32"):
        read_video(folder)


# ---------------------------------------------------------------- augmentation


def clip(num_frames=10) -> torch.Tensor:
    return torch.rand(num_frames, 3, 16, 20, generator=torch.Generator().manual_seed(1))


def test_augmentation_off_is_identity():
    cfg = VideoAugmentConfig()
    frames = clip()
    out, indices = augment_clip(frames, cfg, torch.Generator().manual_seed(0))
    assert not cfg.enabled and out is frames and indices == list(range(10))
    with pytest.raises(ValueError, match="did you mean 'flip'"):
        VideoAugmentConfig.from_dict({"flips": True})


def test_flip_is_exact_mirror_about_half_the_time():
    frames, flipped = clip(), 0
    for seed in range(40):
        out, _ = augment_clip(frames, VideoAugmentConfig(flip=True), torch.Generator().manual_seed(seed))
        assert torch.equal(out, frames) or torch.equal(out, frames.flip(-1))
        flipped += torch.equal(out, frames.flip(-1))
    assert 10 <= flipped <= 30


def test_random_crop_is_one_window_for_the_clip():
    frames = clip()
    out, _ = augment_clip(frames, VideoAugmentConfig(random_crop=[8, 12]), torch.Generator().manual_seed(3))
    assert out.shape == (10, 3, 8, 12)
    windows = {(top, left) for top in range(9) for left in range(9)
               if torch.equal(frames[..., top:top + 8, left:left + 12], out)}
    assert len(windows) == 1  # the same window cut from every frame
    with pytest.raises(ValueError, match="random_crop"):
        augment_clip(frames, VideoAugmentConfig(random_crop=[32, 32]))
    video = VideoConfig(size=[24, 32], crop=[16, 16])
    assert reading_config(video, VideoAugmentConfig(random_crop=[16, 16])).crop == []
    assert reading_config(video, VideoAugmentConfig(flip=True)) is video


def test_rescale_indices():
    assert rescale_indices(6, 1.0) == list(range(6))
    assert rescale_indices(3, 2.0) == [0, 0, 1, 1, 2, 2]
    assert rescale_indices(6, 0.5) == [1, 3, 5]
    assert len(rescale_indices(10, 1.2)) == 12 and len(rescale_indices(10, 0.8)) == 8
    assert rescale_indices(1, 0.1) == [0]


def test_temporal_rescale_lengths_and_labels_follow():
    frames, cfg = clip(20), VideoAugmentConfig(temporal_rescale=0.2)
    lengths = set()
    for seed in range(30):
        out, indices = augment_clip(frames, cfg, torch.Generator().manual_seed(seed))
        assert 16 <= out.shape[0] <= 24 and len(indices) == out.shape[0]
        assert torch.equal(out, frames[indices]) and indices == sorted(indices)
        lengths.add(out.shape[0])
    assert len(lengths) > 3


def test_colour_jitter_and_reproducibility():
    frames = clip()
    cfg = VideoAugmentConfig(random_crop=[12, 12], flip=True, temporal_rescale=0.2, colour_jitter=0.4)
    a, ia = augment_clip(frames, cfg, torch.Generator().manual_seed(7))
    b, ib = augment_clip(frames, cfg, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and ia == ib
    assert 0 <= a.min() and a.max() <= 1
    jittered, _ = augment_clip(frames, VideoAugmentConfig(colour_jitter=0.4), torch.Generator().manual_seed(1))
    assert jittered.shape == frames.shape and not torch.equal(jittered, frames)
    as_bytes = (frames * 255).round().to(torch.uint8)
    out, _ = augment_clip(as_bytes, VideoAugmentConfig(colour_jitter=0.4), torch.Generator().manual_seed(1))
    same, _ = augment_clip(as_bytes / 255, VideoAugmentConfig(colour_jitter=0.4), torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8 and ((out / 255 - same).abs().max() <= 0.5 / 255 + 1e-6)
    grey, _ = augment_clip(frames[:, :1], VideoAugmentConfig(colour_jitter=0.4), torch.Generator().manual_seed(1))
    assert grey.shape == (10, 1, 16, 20)

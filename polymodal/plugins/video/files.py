"""Video files: ``num_frames`` RGB frames sampled uniformly over a video, decoded with PyAV (FFmpeg;
``polymodal[video]``), by seeking to the key frame before each sampled time so a long file is not decoded whole.

Shapes: one file (MP4, AVI, MOV, MKV, WebM, M4V) -> ``(T, H, W, 3)`` uint8 numpy, ``T = num_frames``, what the
video tokenizer's ``preprocess`` takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from polymodal.core.extras import require
from polymodal.plugins.video.frames import uniform_frame_indices

__all__ = ["VIDEO_EXTENSIONS", "read_video"]

#: Suffixes of the video files :func:`read_video` reads.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def read_video(path: str | Path, num_frames: int = 16) -> np.ndarray:
    """``num_frames`` RGB frames ``(T, H, W, 3)`` uint8 sampled uniformly over a video (PyAV, ``polymodal[video]``).

    Frames are found by seeking to the key frame before each sampled time and decoding forward from there, so a
    long file is not decoded whole. Frame ``i`` of ``N`` (at the stream's average rate) is taken at the same
    indices as the video tokenizer's uniform sampling."""
    if num_frames < 1:
        raise ValueError(f"read_video: num_frames must be positive, got {num_frames}")
    av = require("av", "video", "reading video")

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        tb = float(stream.time_base) if stream.time_base else 0.0
        total = stream.frames
        if not total and stream.duration and rate and tb:
            total = round(stream.duration * tb * rate)
        if not total or not rate or not tb:  # no index: decode in one pass (short or unusual files)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            if not frames:
                raise ValueError("video has no frames")
            keep = uniform_frame_indices(len(frames), num_frames).tolist()
            return np.stack([frames[i] for i in keep])
        start = stream.start_time or 0
        step = 1.0 / (rate * tb)  # one frame, in time-base units
        out: list[np.ndarray] = []
        decoder: Any = None
        last_pts = None
        current = None
        for index in uniform_frame_indices(total, num_frames).tolist():
            target = start + index * step
            if current is not None and last_pts is not None and abs(last_pts - target) < step / 2:
                out.append(current)  # the same frame again (fewer frames than asked)
                continue
            if decoder is None or last_pts is None or target < last_pts or target - last_pts > rate * step:
                container.seek(int(target), stream=stream, backward=True, any_frame=False)
                decoder = container.decode(stream)
            frame = None
            for frame in decoder:
                pts = frame.pts if frame.pts is not None else target
                if pts + step / 2 >= target:
                    break
            if frame is None:
                if current is None:
                    raise ValueError("video has no frames")
                out.append(current)
                continue
            last_pts = frame.pts if frame.pts is not None else target
            current = frame.to_ndarray(format="rgb24")
            out.append(current)
    return np.stack(out)

"""Video plugin: tubelet embedding (ViViT, Arnab et al., arXiv 2103.15691; VideoMAE, Tong et al., arXiv
2203.12602), as the video branch of Meta-Transformer (arXiv 2307.10802).

Input: ``[B, T, C, H, W]`` float clips (already normalised), ``T`` divisible by the tubelet length ``t`` (2)
and ``H``, ``W`` by the patch size ``p`` (16). ``preprocess`` takes one clip as the decoders give it, uint8
(or float in [0, 1]) ``[T, H, W, C]`` from a numpy array or tensor, or a list of frames (PIL images / ``HWC``
arrays), samples ``num_frames`` (16) frames uniformly (the middle frame of each of ``num_frames`` equal
segments), can resize them, and normalises with ``mean``/``std``.
Tokens: ``[B, (T/t)·(H/p)·(W/p), D]``, all real, time-major (``meta["grid"] = (T/t, H/p, W/p)``). A Conv3d
with kernel = stride = ``t x p x p`` embeds each tubelet (computed as one matmul,
:func:`~polymodal.plugins._grid.embed_tubelets`); the positional embedding is separable: a spatial table on
an ``img_size/p`` grid resampled (bicubic) like the image tokenizer's, plus a temporal table of
``num_frames/t`` entries interpolated (linear) to ``T/t``. Default: 16 frames of 224 x 224 give
8 x 14 x 14 = 1,568 tokens; the demo's 8 frames of 32 x 32 give 4 x 2 x 2 = 16.

Weight reuse: ``load_patch_embed(image_tokenizer)`` inflates a 2-D patch embedding to the tubelet (I3D,
Carreira and Zisserman, arXiv 1705.07750): ``average`` copies the filter into every one of the ``t`` frames
divided by ``t``, ``centre`` puts it in frame ``t // 2`` only; channels are adapted with
:func:`~polymodal.plugins._grid.adapt_patch_embed`, the spatial positions are the image's, the temporal ones
zero. Either way a clip of identical frames gives the image tokens of that frame at every time step.

Files: MP4, AVI, MOV, MKV, WebM, M4V (:attr:`VideoTokenizer.file_extensions`), ``num_frames`` frames decoded by
:func:`read_video` (PyAV, ``polymodal[video]``) at the indices of the tokenizer's uniform sampling.

Data source ``moving_shapes`` (synthetic): clips of one shape (disk, square or diamond, random size and
colour) moving in a straight line at a random speed over a noisy background, in one of ``num_directions`` (8)
evenly spaced directions; label = the direction. A model can learn it because the direction is the
displacement of the only object between frames, which tubelets spanning two frames and attention across time
both see; shape, colour, speed and start position vary and carry no label information.

The package: :mod:`~polymodal.plugins.video.tokenizer` (the tokenizer, inflation),
:mod:`~polymodal.plugins.video.frames` (frame sampling, clip preprocessing), :mod:`~polymodal.plugins.video.files`
(reading files), :mod:`~polymodal.plugins.video.data` (the data source).
"""

from __future__ import annotations

from polymodal.plugins.video.data import MovingShapesDataSource, MovingShapesDataSourceConfig
from polymodal.plugins.video.files import VIDEO_EXTENSIONS, read_video
from polymodal.plugins.video.frames import preprocess_clip, uniform_frame_indices
from polymodal.plugins.video.tokenizer import VideoTokenizer, VideoTokenizerConfig, inflate_patch_embed
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "VIDEO_EXTENSIONS",
    "MovingShapesDataSource",
    "MovingShapesDataSourceConfig",
    "VideoTokenizer",
    "VideoTokenizerConfig",
    "inflate_patch_embed",
    "preprocess_clip",
    "read_video",
    "uniform_frame_indices",
]


@hookimpl
def polymodal_components() -> list[type]:
    return [VideoTokenizer, MovingShapesDataSource]

"""Time-series plugin: PatchTST tokens (Nie et al., arXiv 2211.14730) with reversible instance normalisation
(RevIN, Kim et al., ICLR 2022), and PatchTST's flatten head for forecasting.

Input: ``[B, C, L]`` float series (every step real), a dict ``{"values": [B, C, L], "lengths": [B]}``
(zero-padded, what ``collate`` makes), or a list of ``[C, L_i]`` series.
Tokens: RevIN normalises each series and channel by its own mean and std over its real steps,
``x̂ = (x - μ) / sqrt(σ² + eps)`` (then ``· w_c + b_c`` with ``revin_affine``); each sequence is extended by repeating
its last value ``stride`` times (``pad_end``, PatchTST's ``padding_patch="end"``) and cut into patches of
``patch_length`` every ``stride`` steps: ``N = (L + stride - patch_length) // stride + 1`` (L = 96 -> 12,
L = 336 -> 42, L = 512 -> 64 with 16 / 8). ``channel_mode="independent"`` (PatchTST): every channel is its own
sequence, a linear layer maps each patch ``[patch_length] -> D`` and tokens are ``[B·C, N, D]`` (row ``b·C + c``);
``"mixing"``: one patch ``[C, patch_length]`` of all channels -> ``D``, tokens ``[B, N, D]``. A learned 1-D
positional embedding of ``max_patches`` positions is added (linearly resampled, per sequence, for longer ones).
``Tokens.meta``: ``"series"`` (a :class:`SeriesMeta`: batch size, channels, mode and the RevIN statistics, which
``denormalize`` inverts) and ``"num_patches"`` ``[rows]``.

Head ``forecasting`` (PatchTST's flatten head): the ``N`` patch tokens of each channel are flattened ``[N·D]`` and
a linear layer predicts the horizon ``H`` (one layer shared by the channels, one per channel with
``channel_handling="individual"``, or ``[N·D] -> C·H`` for channel-mixing tokens); the output is de-normalised with
the RevIN statistics, ``[B, C, H]`` in the input's units; loss MSE; metrics MSE and MAE.

Data sources (synthetic; none ships with our dependencies):
``seasonal_series`` (forecasting): per channel a level, a linear trend, two seasonal components (periods 24 and 7,
random amplitudes and phases) and AR(1) noise; the model sees ``context_length`` steps and predicts the next
``horizon``. Learnable because trend and seasonality continue into the horizon; baseline: the MSE of repeating the
last observed value. ``signal_shapes`` (classification): univariate series of five shapes (sine, square, sawtooth,
sparse spikes, random walk) with random frequency, phase, amplitude, offset, noise and length. Learnable because
RevIN removes amplitude and offset and the shapes differ in waveform.

Files: CSV, TSV, Parquet (one column per channel) and ``.npy`` series (:attr:`TimeSeriesTokenizer.file_extensions`,
read by :func:`read_series`); tables through :meth:`TimeSeriesTokenizer.dataset_from_table` (forecasting windows,
long format, one series per row).

The package: :mod:`~polymodal.plugins.time_series.tokenizer` (the tokenizer),
:mod:`~polymodal.plugins.time_series.revin` (RevIN), :mod:`~polymodal.plugins.time_series.head` (the forecasting
head), :mod:`~polymodal.plugins.time_series.files` (reading files), :mod:`~polymodal.plugins.time_series.tables`
(series from tables), :mod:`~polymodal.plugins.time_series.data` (the data sources).
"""

from __future__ import annotations

from polymodal.plugins.time_series.data import (
    SHAPE_CLASSES,
    SeasonalSeriesDataSource,
    SeasonalSeriesDataSourceConfig,
    SignalShapesDataSource,
    SignalShapesDataSourceConfig,
)
from polymodal.plugins.time_series.files import SERIES_EXTENSIONS, read_series
from polymodal.plugins.time_series.head import ForecastingHead, ForecastingHeadConfig, convert_patchtst_head
from polymodal.plugins.time_series.revin import RevinStats, SeriesMeta, revin_normalize
from polymodal.plugins.time_series.tables import series_table
from polymodal.plugins.time_series.tokenizer import (
    TimeSeriesTokenizer,
    TimeSeriesTokenizerConfig,
    num_patches,
)
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "SERIES_EXTENSIONS",
    "SHAPE_CLASSES",
    "ForecastingHead",
    "ForecastingHeadConfig",
    "RevinStats",
    "SeasonalSeriesDataSource",
    "SeasonalSeriesDataSourceConfig",
    "SeriesMeta",
    "SignalShapesDataSource",
    "SignalShapesDataSourceConfig",
    "TimeSeriesTokenizer",
    "TimeSeriesTokenizerConfig",
    "convert_patchtst_head",
    "num_patches",
    "read_series",
    "revin_normalize",
    "series_table",
]


@hookimpl
def polymodal_components() -> list[type]:
    return [TimeSeriesTokenizer, ForecastingHead, SeasonalSeriesDataSource, SignalShapesDataSource]

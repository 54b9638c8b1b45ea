"""Time series from one table (a pandas DataFrame), for ``polymodal.data.from_table(..., "time_series")``:
forecasting windows over the rows, the long format (the rows of one id make one series), or one series per row
(the UCR archive's layout).

Shapes: forecasting: rows ``[T, C]`` -> inputs ``[N, C, window]`` and targets ``[N, C, horizon]``, a window every
``stride`` rows (``N = (T - window - horizon) // stride + 1``); long format: one series ``[C, L_i]`` per id and its
(constant) target; one series per row: ``[N, 1, len(columns)]`` and the target column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from polymodal.data.builders import column_list, table_targets

__all__ = ["series_table"]


def _implied_overrides(tokenizer_class: Any, samples: Sequence[Any], tokenizer: Any) -> Any:
    """``tokenizer`` (the user's overrides) with the settings the samples imply for a task about whole series
    (:meth:`TimeSeriesTokenizer.config_for_data`: channel mixing) where the user gave none; a whole config given as
    ``tokenizer`` is taken as it is."""
    if tokenizer is not None and not isinstance(tokenizer, Mapping):
        return tokenizer
    given = dict(tokenizer or {})
    implied = tokenizer_class.config_for_data(samples, "classification", set(given))
    return {**implied, **given} if implied else tokenizer


def series_table(
    tokenizer_class: Any,
    frame: Any,
    config: Any,
    target: str | Sequence[str] | None,
    columns: list[str] | None,
    window: int | None,
    horizon: int | None,
    stride: int,
    id_column: str | None,
    tokenizer: Any,
    kwargs: dict[str, Any],
) -> Any:
    """Time series from one table: forecasting windows (``window`` and ``horizon``), long format (``id_column``) or
    one series per row; an :class:`~polymodal.data.ArrayDataset` of the time-series tokenizer ``config``.

    ``tokenizer_class`` is the time-series tokenizer (its ``config_for_data`` mixes the channels of long-format
    series), ``tokenizer`` the user's overrides, ``kwargs`` the dataset's ``task`` and ``class_names``."""
    from polymodal.data.dataset import ArrayDataset, tokenizer_config
    from polymodal.data.readers import TIME_COLUMNS

    skip = set(TIME_COLUMNS) | ({id_column} if id_column else set())
    targets = column_list(target)
    if horizon is not None and targets is not None:
        # the forecasting head predicts every channel it reads (PatchTST), so the channels are the forecast ones
        if columns is not None and columns != targets:
            raise ValueError(
                f"time_series: forecasting predicts every input channel; columns {columns} and target {targets} "
                "differ (give one of them, or the same list to both)"
            )
        table_targets(frame, targets, "time_series")  # names a missing column
        columns = targets
    if horizon is None:  # a label column is no channel
        skip |= set(targets or [])
    if columns is None:
        columns = [c for c in frame.select_dtypes("number").columns if str(c).lower() not in skip]
    values = frame[columns].to_numpy(dtype=np.float32)
    if horizon is not None:  # forecasting: sliding windows (views) over the whole table
        if window is None:
            raise ValueError("time_series: forecasting windows need window= (context steps) and horizon=")
        span = len(values) - window - horizon + 1
        if span < 1:
            raise ValueError(
                f"time_series: {len(values)} rows are fewer than window + horizon = {window + horizon}"
            )
        starts = np.arange(0, span, stride)
        inputs = np.lib.stride_tricks.sliding_window_view(values.T, window, axis=1)[:, starts].transpose(
            1, 0, 2
        )
        future = np.lib.stride_tricks.sliding_window_view(values.T, horizon, axis=1)[:, starts + window]
        return ArrayDataset(
            config, inputs, future.transpose(1, 0, 2).copy(), **{"task": "forecasting", **kwargs}
        )
    if target is None:
        raise ValueError("time_series: pass target= (a column), or window= and horizon= to forecast")
    if id_column is not None:  # long format: the rows of one id make one series, its target is constant
        ids = frame[id_column].to_numpy()
        order, first = np.unique(ids, return_index=True)
        order = order[np.argsort(first)]
        y = table_targets(frame, target, "time_series")
        inputs, labels = [], []
        for key in order:
            rows = np.flatnonzero(ids == key)
            inputs.append(values[rows].T.copy())
            if len({str(v) for v in np.asarray(y[rows]).reshape(len(rows), -1).tolist()}) != 1:
                raise ValueError(f"time_series: series {key!r} has several target values in {target!r}")
            labels.append(y[rows[0]])
        config = tokenizer_config(config, _implied_overrides(tokenizer_class, inputs, tokenizer))
        return ArrayDataset(config, inputs, np.asarray(labels), **kwargs)
    return ArrayDataset(config, values[:, None, :], table_targets(frame, target, "time_series"), **kwargs)

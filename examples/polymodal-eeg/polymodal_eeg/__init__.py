"""polymodal-eeg: an EEG modality for polymodal, as a third-party plugin.

The distribution declares the entry point ``eeg = "polymodal_eeg"`` in the group ``polymodal.plugins``; polymodal
imports this module on its first registry lookup and calls its one hook, :func:`polymodal_components`, which
returns the component classes. Importing the module registers nothing by itself.

- tokenizer ``eeg`` (:mod:`polymodal_eeg.tokenizer`): recordings ``[B, C, T]`` in µV on a 10-20 montage ->
  per-channel patch tokens with electrode-position and time embeddings, ``[B, C·N, D]``;
- data source ``eeg_rhythms`` (:mod:`polymodal_eeg.data`): synthetic epochs, 4 classes;
- :mod:`polymodal_eeg.montage`: electrode names, aliases and positions.
"""

from __future__ import annotations

from polymodal import hookimpl

from polymodal_eeg.data import RHYTHMS, EegRhythmsDataSource, EegRhythmsDataSourceConfig
from polymodal_eeg.montage import (
    ALIASES,
    ELECTRODES,
    MONTAGE_10_20,
    canonical_electrode,
    canonical_montage,
    electrode_positions,
    sphere_to_xyz,
)
from polymodal_eeg.tokenizer import EegTokenizer, EegTokenizerConfig, resample_fft

__all__ = [
    "ALIASES",
    "ELECTRODES",
    "MONTAGE_10_20",
    "RHYTHMS",
    "EegRhythmsDataSource",
    "EegRhythmsDataSourceConfig",
    "EegTokenizer",
    "EegTokenizerConfig",
    "canonical_electrode",
    "canonical_montage",
    "electrode_positions",
    "polymodal_components",
    "resample_fft",
    "sphere_to_xyz",
]


# --8<-- [start:hook]
@hookimpl
def polymodal_components() -> list[type]:
    """The plugin's one hook: its component classes. polymodal registers them on the first lookup."""
    return [EegTokenizer, EegRhythmsDataSource]


# --8<-- [end:hook]

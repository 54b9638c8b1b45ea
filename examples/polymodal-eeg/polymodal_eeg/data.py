"""The ``eeg_rhythms`` data source: seeded synthetic 19-channel EEG epochs whose class is a rhythm and a place.

Physiology it imitates: posterior alpha (8-12 Hz, eyes closed), frontal alpha (anteriorised alpha), central beta
(16-24 Hz, sensorimotor) and frontal-midline theta (4-7 Hz), over 1/f background activity mixed by volume
conduction. Samples: float32 ``[19, T]`` in µV (channels in ``MONTAGE_10_20`` order), targets: class index.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from polymodal import DataSource, DataSourceConfig
from pydantic import Field
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from polymodal_eeg.montage import MONTAGE_10_20, electrode_positions, sphere_to_xyz

__all__ = ["RHYTHMS", "EegRhythmsDataSource", "EegRhythmsDataSourceConfig"]

# (class name, band in Hz, source centres as (polar, azimuth) degrees): a dominant rhythm at a place on the scalp.
RHYTHMS: tuple[tuple[str, tuple[float, float], tuple[tuple[float, float], ...]], ...] = (
    ("posterior_alpha", (8.0, 12.0), ((60, 160), (60, -160))),  # relaxed, eyes closed
    ("frontal_alpha", (8.0, 12.0), ((45, 30), (45, -30))),  # alpha anteriorisation (e.g. under propofol)
    ("central_beta", (16.0, 24.0), ((36, 90), (36, -90))),  # sensorimotor beta over C3 / C4
    ("frontal_theta", (4.0, 7.0), ((30, 0),)),  # frontal-midline theta (working memory)
)


class EegRhythmsDataSourceConfig(DataSourceConfig):
    type: str = "eeg_rhythms"
    sample_rate: int = Field(128, gt=0, description="Sample rate (Hz).")
    duration: float = Field(2.0, gt=0, description="Epoch length (seconds).")
    rhythm_amplitude: tuple[float, float] = Field(
        (12.0, 25.0), description="Range of the rhythm's peak amplitude (µV)."
    )
    background_rms: float = Field(
        10.0, ge=0, description="RMS of the 1/f background activity per channel (µV)."
    )
    distractor: float = Field(
        0.35, ge=0, le=1, description="Amplitude of a weaker rhythm of another class, relative."
    )
    spread: float = Field(30.0, gt=0, description="Angular spread (degrees) of a rhythm's topography.")


def _angle_between(a: Tensor, b: Tensor) -> Tensor:
    """Great-circle angles ``[len(a), len(b)]`` (radians) between unit vectors."""
    return torch.acos((a @ b.T).clamp(-1.0, 1.0))


# --8<-- [start:header]
class EegRhythmsDataSource(DataSource):
    """Synthetic 19-channel EEG epochs; the class is which rhythm dominates and where (target = class index).

    Per epoch (2 s at 128 Hz, µV): background activity with a 1/f power spectrum, independent per electrode, then
    mixed by volume conduction (each channel a Gaussian-weighted average of its neighbours, 20° spread); the class
    rhythm (posterior alpha 8-12 Hz at O1/O2, frontal alpha 8-12 Hz at F3/F4, central beta 16-24 Hz at C3/C4,
    frontal-midline theta 4-7 Hz at Fz) with a random frequency in its band, a slowly waxing and waning amplitude
    and a Gaussian topography around its sources (``spread``); a weaker rhythm of another class (``distractor``);
    50 Hz line noise, a per-channel DC offset and an overall gain. Learnable: the band tells theta, alpha and beta
    apart and the topography tells posterior from frontal alpha, so the electrode-position embedding matters.
    Chance is 1/4.
    """

    name: ClassVar[str] = "eeg_rhythms"
    modality: ClassVar[str] = "eeg"
    config_class: ClassVar[type[EegRhythmsDataSourceConfig]] = EegRhythmsDataSourceConfig
    # --8<-- [end:header]

    def generate(self, num: int, seed: int) -> TensorDataset:
        """``num`` epochs ``(float32 [19, T], class)``, classes balanced, in a seeded random order."""
        c = self.config
        g = torch.Generator().manual_seed(seed)
        k, steps = len(RHYTHMS), round(c.duration * c.sample_rate)
        t = torch.arange(steps, dtype=torch.float64) / c.sample_rate
        xyz = electrode_positions(MONTAGE_10_20).double()  # [C, 3]

        def u(lo: float, hi: float, *shape: int) -> Tensor:
            return lo + (hi - lo) * torch.rand(shape or (num,), generator=g, dtype=torch.float64)

        topo = []
        for _, _, centres in RHYTHMS:
            d = _angle_between(xyz, sphere_to_xyz(centres))  # [C, sources]
            topo.append(torch.exp(-0.5 * (d / math.radians(c.spread)) ** 2).sum(1))
        topo = torch.stack(topo)  # [K, C]
        topo = topo / topo.amax(dim=1, keepdim=True)

        def rhythm(classes: Tensor, amplitude: Tensor) -> Tensor:  # [N, C, T]
            band = torch.tensor([b for _, b, _ in RHYTHMS], dtype=torch.float64)[classes]  # [N, 2]
            freq = band[:, :1] + (band[:, 1:] - band[:, :1]) * u(0, 1, num, 1)
            envelope = 1 + 0.4 * torch.sin(2 * math.pi * u(0.3, 1.0, num, 1) * t + u(0, 2 * math.pi, num, 1))
            wave = (
                amplitude[:, None] * envelope * torch.sin(2 * math.pi * freq * t + u(0, 2 * math.pi, num, 1))
            )
            return topo[classes][:, :, None] * wave[:, None, :]

        labels = torch.randperm(num, generator=g) % k
        other = (labels + torch.randint(1, k, (num,), generator=g)) % k
        amplitude = u(*c.rhythm_amplitude)
        signal = rhythm(labels, amplitude) + rhythm(other, c.distractor * amplitude)

        # 1/f background: white noise shaped in the frequency domain, then mixed by volume conduction
        spec = torch.fft.rfft(
            torch.randn(num, len(MONTAGE_10_20), steps, generator=g, dtype=torch.float64), dim=-1
        )
        f = torch.fft.rfftfreq(steps, d=1 / c.sample_rate, dtype=torch.float64)
        background = torch.fft.irfft(
            spec * torch.where(f > 0, f.clamp_min(1e-9) ** -0.5, 0.0), n=steps, dim=-1
        )
        mixing = torch.exp(-0.5 * (_angle_between(xyz, xyz) / math.radians(20.0)) ** 2)
        background = torch.einsum("ce,net->nct", mixing / mixing.sum(1, keepdim=True), background)
        background = c.background_rms * background / background.std(dim=-1, keepdim=True)

        line = 2.0 * torch.sin(2 * math.pi * 50.0 * t + u(0, 2 * math.pi, num, 1))[:, None, :]
        offset = u(-20.0, 20.0, num, len(MONTAGE_10_20), 1)
        gain = u(0.8, 1.2, num, 1, 1)
        values = (gain * (signal + background + line) + offset).float()
        return TensorDataset(values, labels)

    # --8<-- [start:contract]
    def splits(self) -> dict[str, Dataset]:
        c = self.config
        return {
            "train": self.generate(c.num_train, c.seed),
            "test": self.generate(c.num_test, c.seed + 1_000_003),
        }

    def task(self) -> dict[str, Any]:
        return {"type": "classification", "num_classes": len(RHYTHMS)}

    def baseline(self) -> float:
        return 1.0 / len(RHYTHMS)

    # --8<-- [end:contract]

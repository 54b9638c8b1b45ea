"""Spoken digits "zero" ... "nine" by espeak-ng, as 1 s clips at 16 kHz (10 classes).

    apt-get install espeak-ng                               # Debian package, once
    python benchmarks/realdata/spoken_digits.py             # 500 clips (50 per digit), seed 0
    python benchmarks/realdata/spoken_digits.py --per-class 30 --seed 1

Each clip: one English voice of espeak-ng 1.51 (accent: one of 8 built-in English voices, voice variant: one of
20 male, female and Klatt variants), speed 130-230 words per minute, pitch 20-80 (of 0-99), synthesised at 22,050
Hz, silence trimmed (-40 dB of the peak), resampled to 16 kHz (polyphase, scipy), placed at a random offset in a
1 s clip (cut to 1 s at the end if longer), scaled to a random peak of 0.1-0.9, with white background noise at 20-40
dB SNR. Writes ``<cache>/spoken_digits/<name>.npz`` with ``audio`` (float32 ``[N, 16000]``), ``labels`` (``[N]``,
the digit) and ``voices`` (the espeak-ng arguments of each clip). Deterministic for a seed: espeak-ng is, for the
same arguments (checked), and everything else is seeded numpy. Rerunning reuses the file.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import time
import wave
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

try:
    from ._cache import cache_dir
except ImportError:  # run as a script
    from _cache import cache_dir  # type: ignore[no-redef]

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = (
    "en-gb",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
VARIANTS = (
    *(f"m{i}" for i in range(1, 8)),
    *(f"f{i}" for i in range(1, 6)),
    "klatt",
    "klatt2",
    "klatt3",
    "klatt4",
    "Alex",
    "Andy",
    "Annie",
    "croak",
)
RATE = 16000


def speak(word: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """espeak-ng's waveform (float64 in [-1, 1]) and sample rate for one word."""
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
        check=True,
        capture_output=True,
    ).stdout
    with wave.open(io.BytesIO(out)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    return x, rate


def trim(x: np.ndarray, db: float = -40.0, frame: int = 256) -> np.ndarray:
    """``x`` without leading and trailing frames quieter than ``db`` below its loudest frame."""
    n = len(x) // frame
    energy = (x[: n * frame].reshape(n, frame) ** 2).mean(1)
    loud = np.nonzero(energy > energy.max() * 10 ** (db / 10))[0]
    return x[loud[0] * frame : (loud[-1] + 1) * frame]


def generate(per_class: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is missing: apt-get install espeak-ng")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(10 * per_class) % 10)
    audio = np.zeros((len(labels), RATE), np.float32)
    voices = []
    for n, label in enumerate(labels):
        voice = f"{ACCENTS[rng.integers(len(ACCENTS))]}+{VARIANTS[rng.integers(len(VARIANTS))]}"
        speed, pitch = int(rng.integers(130, 231)), int(rng.integers(20, 81))
        peak, snr = rng.uniform(0.1, 0.9), rng.uniform(20.0, 40.0)
        start_frac = rng.random()
        noise_seed = int(rng.integers(2**31))
        x, rate = speak(WORDS[label], voice, speed, pitch)
        x = trim(x)
        g = gcd(RATE, rate)
        x = resample_poly(x, RATE // g, rate // g)[:RATE]
        start = int(start_frac * (RATE - len(x)))
        clip = np.zeros(RATE)
        clip[start : start + len(x)] = x
        noise = np.random.default_rng(noise_seed).standard_normal(RATE)
        clip += noise * np.sqrt(np.mean(x**2) / 10 ** (snr / 10))
        audio[n] = (clip * peak / np.abs(clip).max()).astype(np.float32)
        voices.append(f"-v {voice} -s {speed} -p {pitch}")
    return {"audio": audio, "labels": labels.astype(np.int64), "voices": np.array(voices)}


def load(per_class: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """The set for these settings, generated the first time and read from the cache after."""
    path = cache_dir() / "spoken_digits" / f"digits_{per_class}x10_seed{seed}.npz"
    if path.exists():
        return dict(np.load(path))
    out = generate(per_class, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out, settings=json.dumps({"per_class": per_class, "seed": seed}))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wav", type=Path, help="also write the first 10 clips as WAV files into this folder")
    a = p.parse_args()
    t0 = time.perf_counter()
    data = load(a.per_class, a.seed)
    n = len(data["labels"])
    print(
        f"{n} clips of {data['audio'].shape[1] / RATE:.1f} s at {RATE} Hz, {np.bincount(data['labels']).tolist()} "
        f"per digit; {time.perf_counter() - t0:.0f} s"
    )
    if a.wav:
        a.wav.mkdir(parents=True, exist_ok=True)
        for i in range(min(10, n)):
            with wave.open(str(a.wav / f"{i}_{WORDS[data['labels'][i]]}.wav"), "wb") as w:
                w.setparams((1, 2, RATE, 0, "NONE", "not compressed"))
                w.writeframes((data["audio"][i] * 32767).astype("<i2").tobytes())


if __name__ == "__main__":
    main()

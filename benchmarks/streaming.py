"""Benchmark (not a test) of large data: the sampler's epoch plan, and reading samples from tar shards.

    .venv/bin/python benchmarks/streaming.py                      # a plan of 10M items; 10,000 image samples read
    .venv/bin/python benchmarks/streaming.py --items 100000000    # 100M (the list plan needs ~5 GB and a minute)
    .venv/bin/python benchmarks/streaming.py --skip-read

(a) The epoch plan of ``MultiTaskSampler`` for ``--items`` items in two streams (30 % / 70 %), batches of 32 per
    process on 8 processes: what every process builds at the start of an epoch. "list" is the plan as it was built
    before (Python lists of every index: the shuffled order, the global batches, this process's batches; a copy of
    that code is below); "lazy" is the plan now (one ``int64`` tensor per epoch, each step sliced and grouped by
    stream when the loader asks for it). Each variant runs in a fresh process; memory is that process's peak
    resident size above its size after the imports. Times: until the first batch is known, and for the whole
    epoch's batches of one process. Both give the same batches (checked on the first 1000).
(b) Reading ``--samples`` 32 x 32 RGB images (uint8, classification): one ``.npy`` file per sample through
    ``FileDataset`` (a folder of files, the usual alternative) versus ``StreamingDataset`` over tar shards of 1000
    written by ``write_shards``, both preprocessed by the image tokenizer, in this process (no workers); the
    in-memory ``ArrayDataset`` as the floor.

One torch thread.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.train import multitask
from polymodal.train.multitask import MultiTaskBatchSampler, MultiTaskSampler

WORLD, BATCH, RANK = 8, 32, 3


class Sizes:
    def __init__(self, *sizes: int) -> None:
        self.stream_sizes = list(sizes)

    def __len__(self) -> int:
        return sum(self.stream_sizes)


def list_plan(sampler: MultiTaskSampler, global_batch: int) -> list[list[int]]:
    """The proportional plan as MultiTaskSampler built it before: Python lists of every item."""
    sizes = list(sampler.dataset.stream_sizes)
    offsets = [sum(sizes[:s]) for s in range(len(sizes))]
    g = torch.Generator().manual_seed(sampler.seed + sampler.epoch)
    n_batches = sampler.num_global_batches(global_batch, True)
    order = torch.randperm(sum(sizes), generator=g).tolist()
    batches = [order[i * global_batch : (i + 1) * global_batch] for i in range(n_batches)]
    return [sorted(b, key=lambda i: bisect.bisect_right(offsets, i)) for b in batches]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def plan_worker(variant: str, items: int) -> dict[str, Any]:
    """One variant in this (fresh) process: seconds to the first batch, for the epoch, peak memory above baseline."""
    torch.set_num_threads(1)
    multitask.get_dist_info = lambda: (RANK, WORLD)  # type: ignore[assignment]
    small = int(items * 0.3)
    sampler = MultiTaskSampler(Sizes(small, items - small), "proportional", seed=0)  # type: ignore[arg-type]
    base = _rss_mb()
    start = time.perf_counter()
    count = 0
    first = None
    if variant == "list":
        mine = [b[RANK::WORLD] for b in list_plan(sampler, BATCH * WORLD)]
        first = time.perf_counter() - start
        head = mine[:1000]
        count = sum(len(b) for b in mine)
    else:
        head = []
        for batch in MultiTaskBatchSampler(sampler, BATCH, drop_last=True):
            if first is None:
                first = time.perf_counter() - start
            if len(head) < 1000:
                head.append(batch)
            count += len(batch)
    total = time.perf_counter() - start
    return {
        "first": first,
        "epoch": total,
        "memory_mb": _rss_mb() - base,
        "items": count,
        "head": hashlib.sha1(json.dumps(head).encode()).hexdigest(),
    }


def run_plan(items: int) -> None:
    print(
        f"(a) epoch plan of {items:,} items, batches of {BATCH} on {WORLD} processes (process {RANK}'s share)"
    )
    results = {}
    for variant in ("list", "lazy"):
        cmd = [sys.executable, __file__, "--plan-worker", variant, "--items", str(items)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    old, new = results["list"], results["lazy"]
    assert old["items"] == new["items"] and old["head"] == new["head"], "the two plans differ"
    print(f"    {'':6} {'first batch':>12} {'whole epoch':>12} {'peak memory':>12}")
    for name, r in results.items():
        print(f"    {name:6} {r['first']:>11.2f}s {r['epoch']:>11.2f}s {r['memory_mb']:>9.0f} MB")
    print(
        f"    list / lazy: first batch {old['first'] / new['first']:.1f}x, whole epoch "
        f"{old['epoch'] / new['epoch']:.1f}x, memory {old['memory_mb'] / max(new['memory_mb'], 1.0):.1f}x"
    )


def run_read(samples: int) -> None:
    from polymodal.data import ArrayDataset, FileDataset, StreamingDataset, write_shards

    print(f"(b) reading {samples:,} images of 32 x 32 x 3 (uint8), preprocessed, in this process")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (samples, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(samples) % 10
    tok = {"patch_size": 8, "img_size": 32}
    with tempfile.TemporaryDirectory(prefix="polymodal_bench_") as tmp:
        root = Path(tmp)
        paths = []
        start = time.perf_counter()
        for i, image in enumerate(images):
            path = root / "files" / f"{i // 1000:03d}" / f"{i:06d}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, image)
            paths.append(path)
        write_files = time.perf_counter() - start
        arrays = ArrayDataset("image", images, labels, tokenizer=tok, check=2)
        files = FileDataset(paths, labels, "image", np.load, tokenizer=tok)
        start = time.perf_counter()
        write_shards(arrays, root / "shards", 1000)
        write_stream = time.perf_counter() - start
        stream = StreamingDataset(root / "shards")
        shuffled = StreamingDataset(root / "shards", shuffle=True)

        def rate(read: Any) -> float:
            start = time.perf_counter()
            n = sum(1 for _ in read())
            assert n == samples
            return samples / (time.perf_counter() - start)

        rates = {
            "ArrayDataset (memory)": rate(lambda: (arrays[i] for i in range(samples))),
            "FileDataset (.npy files)": rate(lambda: (files[i] for i in range(samples))),
            "StreamingDataset (shards)": rate(lambda: iter(stream)),
            "StreamingDataset, shuffled": rate(lambda: iter(shuffled)),
        }
    for name, r in rates.items():
        print(f"    {name:28} {r:>9,.0f} samples/s")
    files_rate = rates["FileDataset (.npy files)"]
    print(
        f"    shards / files: {rates['StreamingDataset (shards)'] / files_rate:.2f}x in order, "
        f"{rates['StreamingDataset, shuffled'] / files_rate:.2f}x shuffled; writing: {samples / write_files:,.0f} "
        f"files/s, {samples / write_stream:,.0f} samples/s into shards"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--skip-read", action="store_true")
    parser.add_argument("--plan-worker", choices=["list", "lazy"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plan_worker:
        print(json.dumps(plan_worker(args.plan_worker, args.items)))
        return
    torch.set_num_threads(1)
    run_plan(args.items)
    if not args.skip_read:
        run_read(args.samples)


if __name__ == "__main__":
    main()

"""Benchmark (not a test): training steps batched by a token budget versus fixed-size batches, on the demo's mix.

    .venv/bin/python benchmarks/token_budget.py                     # 96 samples per modality, 512 tokens a step
    .venv/bin/python benchmarks/token_budget.py --num-train 256 --max-tokens 1024 --repeats 3

The data is what ``polymodal demo`` trains: one stream per registered modality from the data sources' demo settings
(``polymodal.demo.streams``), ``--num-train`` samples each, mixed in proportion (``MultiTaskSampler``, seed 0); the
model is the demo's (its tokenizers and heads, a ViT of width 64 and depth 4). Every item's tokens (real tokens plus
one [CLS] per sequence) are counted once by its tokenizer. One epoch of training steps (forward, backward, AdamW) in
this process on the CPU, one torch thread, three ways over the same items:

- ``tokens``: ``TokenBudgetBatchSampler(max_tokens=--max-tokens)``: every step holds at most that many tokens;
- ``fixed, same peak``: the largest fixed batch size whose largest step of the epoch stays within the same budget
  (the batch size a user picks so that no step needs more memory than the budgeted one);
- ``fixed, same mean``: a fixed batch size of as many items as the token-budget steps hold on average.

Times are the minimum over ``--repeats`` epochs, the variants interleaved in each repeat; each epoch starts from the
same weights. Printed: steps, tokens per step (mean / max), seconds, tokens per second, and the ratios.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from typing import Any

import torch
from mmengine.optim import OptimWrapper
from torch.utils.data import DataLoader, Sampler

import polymodal
from polymodal.demo.streams import DemoPreset, demo_config, demo_streams
from polymodal.train.collate import multitask_collate
from polymodal.train.multitask import (
    MultiTaskBatchSampler,
    MultiTaskDataset,
    MultiTaskSampler,
    TokenBudgetBatchSampler,
)


def largest_fixed_batch(dataset: MultiTaskDataset, lengths: torch.Tensor, budget: int) -> int:
    """The largest batch size whose every step of the epoch (seed 0) holds at most ``budget`` tokens."""
    best = 1
    for size in range(1, len(dataset) + 1):
        batches = MultiTaskBatchSampler(MultiTaskSampler(dataset, seed=0), size)
        if max(int(lengths[b].sum()) for b in batches) > budget:
            break
        best = size
    return best


def epoch(model: Any, dataset: MultiTaskDataset, batches: Sampler[list[int]]) -> float:
    """Seconds of one epoch of training steps (from fresh optimizer state)."""
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=multitask_collate)
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    model.train()
    start = time.perf_counter()
    for batch in loader:
        model.train_step(batch, optim)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-train", type=int, default=96, help="samples per modality")
    parser.add_argument("--max-tokens", type=int, default=512, help="tokens per step")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="polymodal_bench_") as out:
        cfg = demo_config(demo_streams(), DemoPreset(num_train=args.num_train, num_test=16), out=out)
        spec = dict(cfg.train_dataloader.dataset)
        spec.pop("type")
        dataset = MultiTaskDataset(**spec)
        lengths = dataset.token_counts()
        model_cfg = dict(cfg.model)
        torch.manual_seed(0)
        model = polymodal.build_model(
            encoder=model_cfg["encoder"], tokenizers=model_cfg["tokenizers"], heads=model_cfg["heads"]
        )
        initial = copy.deepcopy(model.state_dict())
        budget = TokenBudgetBatchSampler(MultiTaskSampler(dataset, seed=0), args.max_tokens, lengths=lengths)
        per_step = len(dataset) / len(budget)
        variants: dict[str, Sampler[list[int]]] = {
            "tokens": budget,
            "fixed, same peak": MultiTaskBatchSampler(
                MultiTaskSampler(dataset, seed=0), largest_fixed_batch(dataset, lengths, args.max_tokens)
            ),
            "fixed, same mean": MultiTaskBatchSampler(MultiTaskSampler(dataset, seed=0), round(per_step)),
        }
        times = {name: float("inf") for name in variants}
        for _ in range(args.repeats):
            for name, batches in variants.items():
                model.load_state_dict(initial)
                times[name] = min(times[name], epoch(model, dataset, batches))
    total = int(lengths.sum())
    print(
        f"demo mix: {len(dataset.streams)} modalities, {len(dataset)} items, {total:,} tokens "
        f"(per item: min {int(lengths.min())}, mean {lengths.float().mean():.1f}, max {int(lengths.max())}); "
        f"budget {args.max_tokens} tokens a step; CPU, 1 thread"
    )
    print(f"  {'':18} {'batch':>7} {'steps':>6} {'tokens/step':>14} {'seconds':>8} {'tokens/s':>9}")
    rates = {}
    for name, batches in variants.items():
        steps = [int(lengths[b].sum()) for b in batches]
        size = "tokens" if name == "tokens" else str(batches.batch_size)  # type: ignore[attr-defined]
        rates[name] = total / times[name]
        print(
            f"  {name:18} {size:>7} {len(steps):>6} {sum(steps) / len(steps):>7.0f} / {max(steps):<5} "
            f"{times[name]:>8.2f} {rates[name]:>9,.0f}"
        )
    print(
        f"  tokens / fixed at the same peak: {rates['tokens'] / rates['fixed, same peak']:.2f}x tokens/s; "
        f"tokens / fixed at the same mean: {rates['tokens'] / rates['fixed, same mean']:.2f}x"
    )


if __name__ == "__main__":
    main()

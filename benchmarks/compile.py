"""Benchmark of torch.compile on a built model (not a test): eager vs compiled steady-state time per step on a
small mixed batch (images + texts whose lengths change every step), with graph breaks and recompiles counted.
Every number comes from this one run, on 1 CPU thread by default.

    python benchmarks/compile.py                   # small model (D=64, 2 blocks), 4 images + 4 texts a step
    python benchmarks/compile.py --size medium     # D=192, 4 blocks, 8 + 8 (matmul-bound on the CPU)
    python benchmarks/compile.py --steps 24 --repeats 5 --threads 2
    python benchmarks/compile.py --freezing        # inductor freezing: weights as constants (inference only)

Variants, each on the same batches:

* ``eager``: ``model(batch)``: the packed forward (real tokens only, one SDPA call per run of equal lengths).
* ``eager, padded``: the forward the compiled model traces, run eagerly (``encoder.padded = True``: every position
  of every input, masked SDPA per input), to separate what padding costs from what compiling gains.
* ``compiled``: ``torch.compile(model)`` (default settings). Under tracing the encoder packs padded and the checks
  are in-graph assertions, so the graph depends on shapes only: after the first batches (a recompile turns the
  varying dimensions dynamic) new text lengths and batch sizes compile nothing.
* ``compiled, packed`` (``--packed-compile``): ``torch.compile`` of the model with the encoder forced to pack
  (``encoder.padded = False``), what compiling did before: the lengths are read on the host (a graph break) and
  baked into the graph, so every new set of lengths recompiles until dynamo's recompile limit.

Compile counters come from ``torch._dynamo.utils.counters`` (graph breaks, unique graphs) and
``torch._dynamo.explain`` (where each graph break is). Times are the mean over the timed batches of the minimum
over ``--repeats`` runs of each batch, the variants interleaved (order reversed every other round), under
``torch.inference_mode``.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from collections.abc import Callable
from typing import Any

import torch

import polymodal

SIZES = {
    "small": {"embed_dim": 64, "depth": 2, "num_heads": 2, "batch": 4, "image": 32, "text": (4, 48)},
    "medium": {"embed_dim": 192, "depth": 4, "num_heads": 3, "batch": 8, "image": 64, "text": (8, 120)},
}


def build(size: dict[str, Any]) -> polymodal.MultimodalModel:
    return polymodal.build_model(
        encoder={"type": "vit", **{k: size[k] for k in ("embed_dim", "depth", "num_heads")}},
        tokenizers={
            "image": {"type": "image", "patch_size": 8, "img_size": size["image"]},
            "text": {"type": "text", "max_length": 128},
        },
        heads={
            "image": {"type": "classification", "num_classes": 10},
            "text": {"type": "classification", "num_classes": 2},
        },
    ).eval()


def batches(model: polymodal.MultimodalModel, size: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """``count`` batches: images ``[B, 3, S, S]`` and texts of lengths drawn anew for each batch (bytes)."""
    g = torch.Generator().manual_seed(0)
    low, high = size["text"]
    out = []
    for _ in range(count):
        lengths = torch.randint(low, high + 1, (size["batch"],), generator=g).tolist()
        texts = ["".join(chr(97 + int(c)) for c in torch.randint(0, 26, (n,), generator=g)) for n in lengths]
        text = model.tokenizers["text"].collate(texts)
        image = torch.randn(size["batch"], 3, size["image"], size["image"], generator=g)
        out.append({"image": image, "text": {"input_ids": text["input_ids"], "mask": text["mask"]}})
    return out


def compile_stats() -> dict[str, int]:
    from torch._dynamo.utils import counters

    return {
        "graph_breaks": sum(counters["graph_break"].values()),
        "graphs": counters["stats"]["unique_graphs"],
    }


def warm_compiled(fn: Callable[[Any], Any], warm: list[dict[str, Any]]) -> tuple[float, dict[str, int]]:
    """Run the warm-up batches through a fresh compiled ``fn``: seconds spent and the compile counters."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in warm:
            fn(b)
    return time.perf_counter() - t0, compile_stats()


def time_interleaved(fns: dict[str, Callable[[Any], Any]], data: list[Any], repeats: int) -> dict[str, float]:
    """Mean over ``data`` of the min over ``repeats`` of each function's seconds per call, interleaved."""
    best = {name: [float("inf")] * len(data) for name in fns}
    items = list(fns.items())
    with torch.inference_mode():
        for r in range(repeats):
            for i, b in enumerate(data):
                for name, fn in items if r % 2 == 0 else items[::-1]:
                    t0 = time.perf_counter()
                    fn(b)
                    best[name][i] = min(best[name][i], time.perf_counter() - t0)
    return {name: sum(v) / len(v) for name, v in best.items()}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=sorted(SIZES), help="model and batch size")
    parser.add_argument("--steps", type=int, default=16, help="timed batches (each with new text lengths)")
    parser.add_argument("--warmup", type=int, default=4, help="batches compiled before timing")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each batch (min is kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument(
        "--packed-compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time torch.compile with the encoder forced to pack (recompiles per set of lengths)",
    )
    parser.add_argument(
        "--freezing",
        action="store_true",
        help="torch._inductor.config.freezing = True (inference: weights folded)",
    )
    args = parser.parse_args()
    if args.freezing:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = SIZES[args.size]
    model = build(size)
    data = batches(model, size, args.warmup + args.steps)
    warm, timed = data[: args.warmup], data[args.warmup :]
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"thread(s){', inductor freezing' if args.freezing else ''}; model D={size['embed_dim']}, {size['depth']} blocks; a step: {size['batch']} images "
        f"{size['image']}x{size['image']} ({(size['image'] // 8) ** 2} patches) + {size['batch']} texts of "
        f"{size['text'][0]}-{size['text'][1]} bytes (new lengths every step)"
    )

    padded_model = copy.deepcopy(model)
    padded_model.encoder.padded = True

    # where the graph breaks are (traced once, nothing compiled)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(warm[0])
    places: dict[str, int] = {}
    for reason in explanation.break_reasons:
        frame = reason.user_stack[-1] if reason.user_stack else None
        where = f"{frame.filename.split('polymodal/')[-1]}:{frame.lineno}" if frame else "?"
        places[where] = places.get(where, 0) + 1

    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = torch.compile(model)
    warm_s, after_warm = warm_compiled(compiled, warm)
    fns: dict[str, Callable[[Any], Any]] = {
        "eager": model,
        "eager, padded": padded_model,
        "compiled": compiled,
    }
    times = time_interleaved(fns, timed, args.repeats)
    after_timed = compile_stats()
    with torch.inference_mode():
        diff = max(max_diff(compiled(b), model(b)) for b in timed[:4])

    rows = [("eager (packed)", times["eager"], "", ""), ("eager, padded", times["eager, padded"], "", "")]
    rows.append(
        (
            "compiled",
            times["compiled"],
            f"{after_timed['graph_breaks']} breaks, {after_warm['graphs']} graphs in warm-up ({warm_s:.1f} s)",
            f"{after_timed['graphs'] - after_warm['graphs']} new graphs in {len(timed)} timed steps",
        )
    )
    if args.packed_compile:
        torch._dynamo.reset()
        counters.clear()
        packed_model = copy.deepcopy(model)
        packed_model.encoder.padded = False
        packed = torch.compile(packed_model)
        warm_p, warm_stats = warm_compiled(packed, warm)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for b in timed:
                packed(b)
        first_pass = (time.perf_counter() - t0) / len(timed)
        mid_stats = compile_stats()
        steady = time_interleaved({"compiled, packed": packed}, timed, args.repeats)["compiled, packed"]
        rows.append(
            (
                "compiled, packed (before)",
                steady,
                f"{mid_stats['graph_breaks']} breaks, {warm_stats['graphs']} graphs in warm-up ({warm_p:.1f} s)",
                f"{mid_stats['graphs'] - warm_stats['graphs']} new graphs in {len(timed)} timed steps; first "
                f"pass {first_pass * 1e3:.0f} ms/step",
            )
        )

    eager = times["eager"]
    print(f"\n{'variant':<28}{'ms/step':>9}{'eager/this':>12}  compile counters")
    for name, seconds, counts, steady_counts in rows:
        extra = "; ".join(x for x in (counts, steady_counts) if x)
        print(f"{name:<28}{seconds * 1e3:>9.2f}{eager / seconds:>11.2f}x  {extra}")
    print(f"\nmax |compiled - eager| over 4 batches: {diff:.2e}")
    print(
        f"graph breaks of one trace (torch._dynamo.explain): {explanation.graph_break_count} in "
        f"{explanation.graph_count} graphs"
        + ("; at " + ", ".join(f"{w} (x{n})" for w, n in sorted(places.items())) if places else "")
    )


if __name__ == "__main__":
    main()

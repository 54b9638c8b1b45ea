"""Point-cloud tokenisation: our batched FPS + kNN + mini-PointNet against a per-cloud Python loop.

The reference is what a user would write first: for each cloud, farthest point sampling with a loop over the
centres, kNN by sorting every centre's distances, and the same mini-PointNet (same weights) on that cloud's
groups. Both produce the same tokens (checked). Prints the time of each part and the ratios.

    .venv/bin/python benchmarks/point_cloud.py                 # 32 clouds of 8,192 points on CPU
    .venv/bin/python benchmarks/point_cloud.py --device cuda
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor

from polymodal.plugins.point_cloud import PointCloudTokenizer, farthest_point_sample, knn_indices


def naive_fps(points: Tensor, num_samples: int) -> Tensor:
    """One cloud ``[P, 3]`` -> ``[G]`` indices (same start rule as ours: farthest from the centroid)."""
    start = ((points - points.mean(0)) ** 2).sum(-1).argmax()
    dist = torch.full((points.shape[0],), float("inf"), dtype=points.dtype, device=points.device)
    out = [int(start)]
    for _ in range(num_samples - 1):
        dist = torch.minimum(dist, ((points - points[out[-1]]) ** 2).sum(-1))
        out.append(int(dist.argmax()))
    return torch.tensor(out, device=points.device)


def naive_tokens(tok: PointCloudTokenizer, clouds: Tensor) -> tuple[Tensor, float, float]:
    """Per-cloud loop; returns (tokens [B, G, D], grouping seconds, total seconds)."""
    c = tok.config
    grouping = 0.0
    start = time.perf_counter()
    out = []
    for x in clouds:
        t0 = time.perf_counter()
        centers = x[naive_fps(x, c.num_groups)]
        d = ((centers[:, None] - x[None]) ** 2).sum(-1)
        groups = x[d.argsort(dim=-1)[:, : c.group_size]] - centers[:, None]
        _sync(x)
        grouping += time.perf_counter() - t0
        out.append(tok.encoder(groups) + tok.pos_embed(centers))
    tokens = torch.stack(out)
    _sync(clouds)
    return tokens, grouping, time.perf_counter() - start


def _sync(x: Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize()


def _best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clouds", type=int, default=32)
    parser.add_argument("--points", type=int, default=8192)
    parser.add_argument("--embed-dim", type=int, default=768)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
    tok = PointCloudTokenizer.from_config(embed_dim=args.embed_dim).to(device).eval()
    c = tok.config
    clouds = torch.randn(args.clouds, args.points, 3, device=device)
    print(
        f"point_cloud tokenizer: {args.clouds} clouds x {args.points} points -> {c.num_groups} tokens of "
        f"{c.embed_dim} (k={c.group_size}) on {device} ({torch.get_num_threads()} CPU threads)"
    )

    def ours_grouping() -> None:
        idx, _ = farthest_point_sample(clouds, c.num_groups)
        centers = torch.gather(clouds, 1, idx[..., None].expand(-1, -1, 3))
        knn_indices(clouds, centers, c.group_size)
        _sync(clouds)

    def ours_total() -> Tensor:
        tokens = tok(clouds).embeddings
        _sync(clouds)
        return tokens

    with torch.no_grad():
        ours_total()  # warm-up
        t_group = _best(ours_grouping, args.repeats)
        t_total = _best(ours_total, args.repeats)
        ref, ref_group, ref_total = naive_tokens(tok, clouds)
        for _ in range(args.repeats - 1):
            _, g, t = naive_tokens(tok, clouds)
            ref_group, ref_total = min(ref_group, g), min(ref_total, t)
        diff = (ours_total() - ref).abs().max().item()

    print(f"  max |ours - reference| over all tokens: {diff:.2e}")
    print(f"  {'':<24}{'ours (s)':>10}{'reference (s)':>15}{'speed-up':>10}")
    print(f"  {'FPS + kNN':<24}{t_group:>10.3f}{ref_group:>15.3f}{ref_group / t_group:>9.1f}x")
    print(f"  {'FPS + kNN + PointNet':<24}{t_total:>10.3f}{ref_total:>15.3f}{ref_total / t_total:>9.1f}x")


if __name__ == "__main__":
    main()

"""Benchmark of the shared encoder (not a test): packed vs padded vs a per-sequence loop, our image model vs
timm's ViT, and achieved FLOP/s vs the measured matmul peak. Every number comes from this one run.

    python benchmarks/encoder.py                       # CPU, vit_small, 3 repeats
    python benchmarks/encoder.py --device cuda --dtype bf16
    python benchmarks/encoder.py --size vit_base --image-batch 8 --repeats 5

(a) One step holding one sample of each of the twelve modalities at realistic lengths (text 32, image 197,
    video 785, audio 600, point cloud 65, IMU 33, tabular 15, graph 30, time series 43, infrared 197, X-ray 197,
    hyperspectral 197 tokens, [CLS] included) through the same encoder weights three ways: our packed forward,
    one padded batch with a key-padding mask (timm blocks, as the reference code does), and a Python loop
    running each sequence alone through the timm blocks.
(b) A batch of 224 x 224 images through ``polymodal.build_model(modalities=["image"], encoder=<size>)`` versus
    timm's ``VisionTransformer`` of the same size carrying the same weights.
(c) The encoder alone on ``[batch, 197, D]`` tokens: achieved FLOP/s (matmul + attention FLOPs counted
    analytically) versus the best rate of square matmuls measured here, at the same dtype.
(d) Grouping: 128 text-like sequences of 8/16/24/32 tokens, packed attention as one SDPA call per run of equal
    lengths versus one call per sequence.

Times are the minimum over ``--repeats`` runs after one warm-up, with the compared variants interleaved in each
repeat so that machine noise hits them alike; forward passes run under ``torch.inference_mode``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import polymodal
from polymodal.core.encoders import TransformerEncoder
from polymodal.core.encoders.packing import available_backends
from polymodal.core.tokens import Tokens
from polymodal.registry.lookup import get

LENGTHS = {
    "text": 32,
    "image": 197,
    "video": 785,
    "audio": 600,
    "point_cloud": 65,
    "imu": 33,
    "tabular": 15,
    "graph": 30,
    "time_series": 43,
    "infrared": 197,
    "xray": 197,
    "hyperspectral": 197,
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Min seconds per call of each function; one warm-up each, then ``repeats`` rounds, interleaved (the order
    is reversed every other round, so no variant always runs right after the same one)."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()
    sync(device)
    for r in range(repeats):
        for name, fn in list(fns.items())[:: 1 if r % 2 == 0 else -1]:
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def encoder_flops(depth: int, dim: int, mlp_ratio: float, lengths: list[int]) -> float:
    """Multiply-add FLOPs (2 per MAC) of the blocks: QKV, proj, MLP on every token + QK^T and AV per sequence."""
    tokens = sum(lengths)
    linear = 2 * tokens * dim * dim * (3 + 1 + 2 * mlp_ratio)
    attention = 4 * dim * sum(n * n for n in lengths)
    return depth * (linear + attention)


def matmul_fns(device: torch.device, dtype: torch.dtype) -> dict[int, Callable[[], object]]:
    """Square matmuls whose best rate is taken as the machine's peak at ``dtype``."""
    sizes = (512, 1024, 2048, 3072) if device.type == "cpu" else (4096, 8192)
    fns = {}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        fns[n] = lambda a=a, b=b: a @ b
    return fns


def padded_forward(enc: TransformerEncoder, tokens: list[Tokens]) -> torch.Tensor:
    """What a user without packing does: pad every sequence to the longest, mask padded keys."""
    n = max(t.num_tokens for t in tokens)
    x = torch.cat([F.pad(t.embeddings, (0, 0, 0, n - t.num_tokens)) for t in tokens])
    mask = torch.cat([F.pad(t.mask, (0, n - t.num_tokens)) for t in tokens])
    attn_mask = mask[:, None, None, :]
    for block in enc.blocks:
        x = block(x, attn_mask=attn_mask)
    return enc.norm(x) * mask[..., None]


def loop_forward(enc: TransformerEncoder, tokens: list[Tokens]) -> list[torch.Tensor]:
    """A Python loop running each sequence alone through the timm blocks."""
    outs = []
    for t in tokens:
        for b in range(t.batch_size):
            x = t.embeddings[b : b + 1, t.mask[b]]
            for block in enc.blocks:
                x = block(x)
            outs.append(enc.norm(x))
    return outs


def row(name: str, seconds: float, note: str = "") -> str:
    return f"  {name:<44} {seconds * 1e3:10.1f} ms   {note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--size", default="vit_small", help="encoder preset: vit_tiny/small/base/large")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (min is reported)")
    parser.add_argument("--image-batch", type=int, default=32, help="images in (b) and tokens batch in (c)")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="fp32, or bf16/fp16 autocast")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: a,b,c,d")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    amp = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    skip = set(filter(None, args.skip.split(",")))
    torch.manual_seed(0)
    cfg = get("encoder", args.size).default_config()
    enc = get("encoder", args.size)(cfg).to(device).eval()
    D = cfg.embed_dim
    print(
        f"polymodal encoder benchmark: {args.size} ({cfg.depth} blocks, D={D}, {cfg.num_heads} heads), "
        f"{device}, {args.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, repeats={args.repeats} (min)"
    )
    if device.type == "cuda":
        print(f"  GPU: {torch.cuda.get_device_name(device)}; attention backends: {available_backends()}")

    with torch.inference_mode(), amp:
        if "a" not in skip:
            gen = torch.Generator().manual_seed(0)
            tokens = [
                Tokens.full(torch.randn(1, n, D, generator=gen).to(device), name)
                for name, n in LENGTHS.items()
            ]
            lengths = list(LENGTHS.values())
            fns: dict[str, Callable[[], object]] = {
                "packed": lambda: enc(tokens),
                "padded + key-padding mask": lambda: padded_forward(enc, tokens),
                "per-sequence loop": lambda: loop_forward(enc, tokens),
            }
            # Other attention backends of the packed path, for comparison (varlen kernels need fp16/bf16).
            extra = [b for b in available_backends() if b != "sdpa"] + (
                ["sdpa"] if device.type == "cuda" else []
            )
            if dtype == torch.float32:
                extra = [b for b in extra if b not in ("torch_varlen", "flash_attn")]
            for b in extra:
                variant = type(enc)(cfg.model_copy(update={"attention_backend": b})).to(device).eval()
                variant.load_state_dict(enc.state_dict())
                fns[f"packed, backend={b}"] = lambda v=variant: v(tokens)
            t = time_interleaved(fns, args.repeats, device)
            packed = [o.embeddings[0] for o in enc(tokens)]
            padded = padded_forward(enc, tokens)
            loop = loop_forward(enc, tokens)
            err_pad = max((p - padded[i, : len(p)]).abs().max().item() for i, p in enumerate(packed))
            err_loop = max((p - q[0]).abs().max().item() for p, q in zip(packed, loop))
            flops = encoder_flops(cfg.depth, D, cfg.mlp_ratio, lengths)
            print(
                f"\n(a) one step, twelve modalities, {sum(lengths)} real tokens "
                f"(padded: {len(lengths)} x {max(lengths)} = {len(lengths) * max(lengths)})"
            )
            print(row("packed (ours)", t["packed"], f"{flops / t['packed'] / 1e9:.1f} GFLOP/s"))
            for name in fns:
                if name != "packed":
                    print(row(name, t[name], f"packed is {t[name] / t['packed']:.2f}x faster"))
            print(f"  max |packed - padded| = {err_pad:.2e}, max |packed - loop| = {err_loop:.2e}")

        if "b" not in skip:
            from timm.models.vision_transformer import VisionTransformer

            model = polymodal.build_model(
                modalities=["image"],
                encoder=args.size,
                heads={"image": {"type": "classification", "num_classes": 1000}},
            ).to(device)
            model.eval()
            timm_vit = VisionTransformer(
                img_size=224,
                patch_size=16,
                embed_dim=D,
                depth=cfg.depth,
                num_heads=cfg.num_heads,
                mlp_ratio=cfg.mlp_ratio,
                num_classes=1000,
            ).to(device)
            timm_vit.eval()
            # Same weights: blocks and final norm 1:1, patch embedding, positions (+ our modality embedding),
            # [CLS]. Our classification head adds a LayerNorm before its linear layer; timm's has none.
            timm_vit.blocks.load_state_dict(model.encoder.blocks.state_dict())
            timm_vit.norm.load_state_dict(model.encoder.norm.state_dict())
            tok = model.tokenizers["image"]
            modality = model.modality_embeddings["image"].data[0]
            timm_vit.patch_embed.proj.load_state_dict(tok.proj.state_dict())
            timm_vit.pos_embed.data[:, 1:] = tok.pos_embed.data + modality
            timm_vit.pos_embed.data[:, :1] = modality
            timm_vit.cls_token.data.copy_(model.cls_tokens["image"].data)
            timm_vit.head.load_state_dict(model.heads["image"].fc.state_dict())
            images = torch.randn(args.image_batch, 3, 224, 224, device=device)
            t = time_interleaved(
                {"ours": lambda: model({"image": images}), "timm": lambda: timm_vit(images)},
                args.repeats,
                device,
            )
            print(
                f"\n(b) {args.image_batch} images of 224 x 224, {args.size}, full forward incl. patch embed and head"
            )
            print(row("timm VisionTransformer", t["timm"]))
            print(
                row(
                    "polymodal image model (ours)",
                    t["ours"],
                    f"ours / timm = {t['ours'] / t['timm']:.3f}",
                )
            )

        if "c" not in skip:
            # The peak matmuls run interleaved with the encoder, so both see the same machine state.
            x = Tokens.full(torch.randn(args.image_batch, 197, D, device=device), "image")
            mms = matmul_fns(device, dtype)
            fns = {"enc": lambda: enc([x]), **{f"mm{n}": fn for n, fn in mms.items()}}
            times = time_interleaved(fns, args.repeats, device)
            t = times["enc"]
            rates = {n: 2 * n**3 / times[f"mm{n}"] for n in mms}
            peak = max(rates.values())
            flops = encoder_flops(cfg.depth, D, cfg.mlp_ratio, [197] * args.image_batch)
            rate = flops / t
            listed = ", ".join(f"{n}: {r / 1e9:.1f}" for n, r in rates.items())
            print(f"\n(c) encoder forward, {args.size}, batch {args.image_batch} x 197 tokens, {args.dtype}")
            print(row("encoder (packed)", t, f"{flops / 1e9:.1f} GFLOP -> {rate / 1e9:.1f} GFLOP/s"))
            print(f"  matmul peak (square n: GFLOP/s): {listed}; best {peak / 1e9:.1f} GFLOP/s")
            print(f"  achieved / peak = {rate / peak:.1%}")

        if "d" not in skip:
            # Grouping: many short sequences with few distinct lengths (a padded text batch).
            lengths_t = torch.tensor([8, 16, 24, 32] * 32, device=device)
            mask = torch.arange(32, device=device)[None] < lengths_t[:, None]
            text = [Tokens(torch.randn(len(lengths_t), 32, D, device=device), mask, "text")]
            per_seq = (
                type(enc)(cfg.model_copy(update={"attention_backend": "sdpa_per_segment"})).to(device).eval()
            )
            per_seq.load_state_dict(enc.state_dict())
            t = time_interleaved(
                {"grouped": lambda: enc(text), "per_seq": lambda: per_seq(text)}, args.repeats, device
            )
            print(
                f"\n(d) {len(lengths_t)} sequences of 8/16/24/32 tokens ({int(lengths_t.sum())} real tokens), "
                "packed: one SDPA call per run of equal lengths vs one per sequence"
            )
            print(row("packed, auto (on CPU: 4 SDPA calls/block)", t["grouped"]))
            print(
                row(
                    f"packed, per sequence ({len(lengths_t)} SDPA calls/block)",
                    t["per_seq"],
                    f"grouping is {t['per_seq'] / t['grouped']:.2f}x faster",
                )
            )


if __name__ == "__main__":
    main()

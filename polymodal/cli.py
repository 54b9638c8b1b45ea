"""The ``polymodal`` command line: ``list``, ``info``, ``train``, ``eval``, ``demo``.

``polymodal train CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--launcher pytorch] [--cfg-options k=v ...]``
trains on mmengine's Runner (progress, loss and ETA through mmengine's logger; logs, checkpoints and
``metrics.json`` in the work dir; the final model as ``<work_dir>/pretrained``). ``polymodal eval CONFIG
--checkpoint PATH`` evaluates a checkpoint on the config's test split. For several processes:
``torchrun --nproc_per_node N -m polymodal.cli train CONFIG --launcher pytorch``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main", "modality_table"]

KINDS = {
    "modalities": None,
    "tokenizers": "tokenizer",
    "encoders": "encoder",
    "heads": "head",
    "metrics": "metric",
    "data": "data source",
    "plugins": None,
}


def _cmd_list(args: argparse.Namespace) -> int:
    from polymodal import registry
    from polymodal.registry import plugins

    what = args.what
    pattern = args.filter
    if what == "plugins":
        infos = plugins.list_plugins()
        rows = [("plugin", "status", "distribution", "components")]
        for i in infos:
            rows.append((i.name, i.status, f"{i.distribution} {i.version}".strip(), ", ".join(i.components)))
        _table(rows)
        for i in infos:
            if i.status == "failed":
                print(f"\n{i.name}: {i.error}\n  entry point: {i.entry_point}\n  {plugins.block_hint(i)}")
        return 0
    if args.markdown and what != "modalities":
        print("polymodal: --markdown is for 'polymodal list modalities'", file=sys.stderr)
        return 2
    failed = [i for i in plugins.list_plugins() if i.status == "failed"]
    empty = not (registry.list_modalities() if what == "modalities" else registry.list_names(KINDS[what]))
    if empty and failed:  # e.g. torch and torchvision that do not match: every plugin fails the same way
        first = failed[0]
        print(
            f"polymodal: no {what} registered: {len(failed)} plugin(s) failed to load, the first "
            f"{first.name!r} ({first.entry_point}): {first.error}",
            file=sys.stderr,
        )
        return 1
    if args.markdown:
        print(modality_table(pattern), end="")
        return 0
    if what == "modalities":
        rows = [("modality", "tokenizers", "data sources")]
        sources = [registry.get("data source", n) for n in registry.list_data_sources()]
        for m in registry.list_modalities(pattern):
            toks = [n for n in registry.list_tokenizers() if registry.get("tokenizer", n).modality == m]
            data = [s.name for s in sources if s.modality == m]
            rows.append((m, ", ".join(toks), ", ".join(data)))
        _table(rows)
        return 0
    kind = KINDS[what]
    for name in registry.list_names(kind, pattern):
        cls = registry.get(kind, name)
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{name:<24} {doc[0] if doc else ''}")
    return 0


def _tokens_per_sample(source_cls: type, samples: int = 8) -> str:
    """Real tokens per sample of a data source's first test samples, with its modality's default tokenizer."""
    from polymodal import registry

    try:
        source = source_cls.from_config(num_train=samples, num_test=samples)
    except ValueError:  # a source with fixed sizes
        source = source_cls.from_config()
    data = source.splits()["test"]
    tokenizer = registry.get("tokenizer", source_cls.modality).from_config(embed_dim=8)
    lengths = tokenizer.token_lengths([data[i][0] for i in range(min(samples, len(data)))]).tolist()
    lo, hi = min(lengths), max(lengths)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def modality_table(filter: str = "*") -> str:
    """The Markdown table of registered modalities: tokenizer, input form, and each data source with the real
    tokens per sample of its first test samples under the default tokenizer config (what `list modalities
    --markdown` prints; the README's table is its output with only the built-in plugins loaded)."""
    from polymodal import registry

    lines = [
        "| modality | tokenizer | input | data source: tokens per sample |",
        "|---|---|---|---|",
    ]
    sources = [registry.get("data source", n) for n in registry.list_data_sources()]
    for m in registry.list_modalities(filter):
        toks = [n for n in registry.list_tokenizers() if registry.get("tokenizer", n).modality == m]
        forms = [registry.get("tokenizer", n).input_form for n in toks]
        data = [s for s in sources if s.modality == m]
        tokens = ", ".join(f"`{s.name}`: {_tokens_per_sample(s)}" for s in data)
        lines.append(
            f"| {m} | {', '.join(f'`{n}`' for n in toks)} | {'; '.join(f for f in forms if f)} | {tokens} |"
        )
    return "\n".join(lines) + "\n"


def _cmd_info(args: argparse.Namespace) -> int:
    from polymodal import registry
    from polymodal.registry.errors import UnknownNameError

    kinds = [KINDS[args.kind]] if args.kind else [v for v in KINDS.values() if v]
    found = [(kind, registry.get(kind, args.name)) for kind in kinds if args.name in registry.list_names(kind)]
    if not found:
        every = {n for kind in kinds for n in registry.list_names(kind)}
        label = kinds[0] if len(kinds) == 1 else "component"
        print(f"polymodal: {UnknownNameError(label, args.name, every)}", file=sys.stderr)
        return 2
    for kind, cls in found:
        print(f"{kind} {cls.name!r}: {cls.__module__}.{cls.__qualname__}")
        doc = (cls.__doc__ or "").strip()
        if doc:
            print(f"  {doc.splitlines()[0]}")
        if args.json:
            print(json.dumps(cls.config_class.model_json_schema(), indent=2))
            continue
        rows = [("field", "type", "default", "description")]
        for fname, field in cls.config_class.model_fields.items():
            default = (
                "(required)" if field.is_required() else repr(field.get_default(call_default_factory=True))
            )
            rows.append((fname, _type_name(field.annotation), default, field.description or ""))
        _table(rows, indent="  ")
    return 0


def _print_metrics(title: str, metrics: dict) -> None:
    if not metrics:
        print(f"{title}: no metrics")
        return
    print(f"{title}:")
    for key in sorted(metrics):
        value = metrics[key]
        print(f"  {key:<32} {value:.4f}" if isinstance(value, float) else f"  {key:<32} {value}")


def _refused_run_errors() -> tuple[type[Exception], ...]:
    """The errors of ``train`` / ``eval`` whose message says everything: printed without a traceback."""
    from polymodal.train.serialization import CheckpointReadError, UnsafeCheckpointError
    from polymodal.train.workdir import WorkDirLockedError

    return (CheckpointReadError, UnsafeCheckpointError, WorkDirLockedError, FileNotFoundError)


def _cmd_train(args: argparse.Namespace) -> int:
    import time

    from mmengine.dist import is_main_process

    from polymodal.train import train_from_config

    start = time.perf_counter()
    try:
        metrics = train_from_config(
            args.config,
            work_dir=args.work_dir,
            resume=args.resume or False,
            cfg_options=args.cfg_options,
            launcher=args.launcher,
            amp=args.amp,
        )
    except _refused_run_errors() as err:
        print(f"polymodal: {err}", file=sys.stderr)
        return 2
    if is_main_process():
        _print_metrics("final validation metrics", metrics)
        print(f"wall time: {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import time

    from mmengine.dist import is_main_process

    from polymodal.train import evaluate_from_config

    start = time.perf_counter()
    try:
        metrics = evaluate_from_config(
            args.config,
            args.checkpoint,
            work_dir=args.work_dir,
            cfg_options=args.cfg_options,
            launcher=args.launcher,
        )
    except _refused_run_errors() as err:
        print(f"polymodal: {err}", file=sys.stderr)
        return 2
    if is_main_process():
        _print_metrics("test metrics", metrics)
        if args.json:
            print(json.dumps(metrics, indent=2, sort_keys=True))
        print(f"wall time: {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    from polymodal.demo import demo_streams, run_demo, select_device

    start = time.perf_counter()
    try:  # the errors a user can fix, before anything trains
        select_device(args.device)
        demo_streams(args.modalities)
    except (RuntimeError, ValueError) as err:
        print(f"polymodal: {err}", file=sys.stderr)
        return 2
    results = run_demo(
        args.out,
        preset="quick" if args.quick else "default",
        modalities=args.modalities,
        frozen=args.frozen,
        compare=args.compare,
        device=args.device,
        epochs=args.epochs,
        threads=args.threads,
    )
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    return 0 if all(row.beats for r in results for row in r.rows) else 1


def _add_run_options(p: argparse.ArgumentParser) -> None:
    from mmengine.config import DictAction

    p.add_argument("config", help="mmengine config file, e.g. configs/image_digits.py")
    p.add_argument(
        "--work-dir", help="where logs, checkpoints and metrics.json go (default work_dirs/<config>)"
    )
    p.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        help="override config entries, e.g. train_cfg.max_epochs=3 train_dataloader.batch_size=16",
    )
    p.add_argument(
        "--launcher",
        choices=["none", "pytorch", "slurm", "mpi"],
        default="none",
        help="job launcher: 'pytorch' under torchrun (DDP; gloo when there is no GPU)",
    )


def _type_name(annotation: object) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _table(rows: list[tuple[str, ...]], indent: str = "") -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            print(indent + "  ".join("-" * w for w in widths))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polymodal", description="Unified multimodal learning.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list registered modalities, components or plugins")
    p.add_argument("what", nargs="?", default="modalities", choices=list(KINDS))
    p.add_argument("filter", nargs="?", default="*", help="fnmatch pattern, e.g. 'vit_*'")
    p.add_argument(
        "--markdown",
        action="store_true",
        help="with 'modalities': a Markdown table (tokenizer, input form, tokens per sample of each data source)",
    )
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("info", help="a component's config fields and defaults")
    p.add_argument("name")
    p.add_argument("--kind", choices=[k for k, v in KINDS.items() if v], help="which table to look in")
    p.add_argument("--json", action="store_true", help="print the JSON schema")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("train", help="train a model from an mmengine config on mmengine's Runner")
    _add_run_options(p)
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CKPT",
        help="resume from CKPT, or without a value from the latest checkpoint in the work dir",
    )
    p.add_argument("--amp", action="store_true", help="bf16 automatic mixed precision (CUDA only)")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("eval", help="evaluate a checkpoint on the config's test split")
    _add_run_options(p)
    p.add_argument("--checkpoint", required=True, help="checkpoint file (.pth) written by `polymodal train`")
    p.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    p.set_defaults(func=_cmd_eval)
    p = sub.add_parser(
        "demo",
        help="train one shared encoder on every built-in modality's data, evaluate, save, plot",
        description="Train one shared encoder jointly on the data sources of all built-in modalities (no network), "
        "evaluate each task on its held-out split against chance or a naive baseline, print the table, save the "
        "model (save_pretrained) and a figure into the output folder. Exit status 1 when a task does not clearly "
        "beat its baseline.",
    )
    p.add_argument("--out", default="demo_out", help="output folder (model/, demo.png, results.json, run/)")
    p.add_argument(
        "--quick", action="store_true", help="the short preset CI runs (under a minute on 2 CPU cores)"
    )
    flavour = p.add_mutually_exclusive_group()
    flavour.add_argument(
        "--frozen",
        action="store_true",
        help="Meta-Transformer setting: the encoder frozen (no gradients, eval mode), only tokenizers and heads train",
    )
    flavour.add_argument(
        "--compare", action="store_true", help="train tuned and frozen, print them side by side"
    )
    p.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    p.add_argument("--modalities", nargs="+", metavar="NAME", help="train only these modalities")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads on the CPU (default 1: fastest here)"
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

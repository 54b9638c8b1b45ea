"""The ``polymodal`` command line (also ``python -m polymodal``): ``list``, ``info``, ``train``, ``eval``, ``predict``,
``export``, ``demo``.

``polymodal train CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--launcher pytorch] [--cfg-options k=v ...]``
trains on mmengine's Runner (progress, loss and ETA through mmengine's logger; logs, checkpoints and
``metrics.json`` in the work dir; the final model as ``<work_dir>/pretrained``). ``CONFIG`` is a file or a shipped
config, ``polymodal::multimodal_small.py`` (``polymodal list configs``). ``polymodal eval CONFIG --checkpoint
PATH`` evaluates a checkpoint on the config's test split; ``polymodal predict MODEL_DIR FILES...`` (or ``--table``)
writes a saved model's predictions per sample as CSV or JSON; ``polymodal export MODEL_DIR OUT.onnx`` (or ``.pt2``)
writes its tensor forward as an ONNX file or a ``torch.export`` program. A config, an override or an option that cannot run is
one line, ``polymodal: ...``, and exit status 2. For several processes:
``torchrun --nproc_per_node N -m polymodal train CONFIG --launcher pytorch``.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main", "modality_table"]

KINDS = {
    "modalities": None,
    "tokenizers": "tokenizer",
    "encoders": "encoder",
    "heads": "head",
    "metrics": "metric",
    "data": "data source",
    "plugins": None,
    "configs": None,
}


def _no_match(what: str, pattern: str, every: list[str]) -> int:
    """Say that ``pattern`` matched nothing (naming what there is); exit status 1, as grep."""
    listing = ", ".join(every) if every else "none"
    print(f"polymodal: no {what} match {pattern!r}; registered ({len(every)}): {listing}", file=sys.stderr)
    return 1


def _list_rows(what: str, pattern: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The entries of ``polymodal list WHAT PATTERN`` as dicts (what ``--json`` prints), and every name of WHAT."""
    from polymodal import registry
    from polymodal.configs import CONFIG_DIR, PREFIX, config_summary, list_configs
    from polymodal.registry import plugins

    if what == "configs":
        rows = [
            {"name": PREFIX + n, "path": str(CONFIG_DIR / n), "summary": config_summary(CONFIG_DIR / n)}
            for n in list_configs(pattern)
        ]
        return rows, [PREFIX + n for n in list_configs()]
    if what == "plugins":
        infos = plugins.list_plugins()
        rows = [
            {
                "name": i.name,
                "status": i.status,
                "distribution": i.distribution,
                "version": i.version,
                "entry_point": i.entry_point,
                "components": list(i.components),
                "error": i.error,
            }
            for i in infos
            if fnmatch.fnmatchcase(i.name, pattern)
        ]
        return rows, [i.name for i in infos]
    if what == "modalities":
        sources = [registry.get("data source", n) for n in registry.list_data_sources()]
        rows = []
        for m in registry.list_modalities(pattern):
            toks = [n for n in registry.list_tokenizers() if registry.get("tokenizer", n).modality == m]
            rows.append(
                {
                    "modality": m,
                    "tokenizers": toks,
                    "data_sources": [s.name for s in sources if s.modality == m],
                }
            )
        return rows, registry.list_modalities()
    kind = KINDS[what]
    rows = []
    for name in registry.list_names(kind, pattern):
        cls = registry.get(kind, name)
        doc = (cls.__doc__ or "").strip().splitlines()
        row = {
            "name": name,
            "summary": doc[0] if doc else "",
            "class": f"{cls.__module__}.{cls.__qualname__}",
        }
        if getattr(cls, "modality", ""):
            row["modality"] = cls.modality
        rows.append(row)
    return rows, registry.list_names(kind)


def _cmd_list(args: argparse.Namespace) -> int:
    from polymodal import registry
    from polymodal.registry import plugins

    what = args.what
    pattern = args.filter
    if args.markdown and (what != "modalities" or args.json):
        print("polymodal: --markdown is for 'polymodal list modalities', without --json", file=sys.stderr)
        return 2
    if what not in ("plugins", "configs"):
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
    rows, every = _list_rows(what, pattern)
    if args.json:
        print(json.dumps(rows, indent=2))
    if not rows:
        return _no_match(what, pattern, every)
    if args.json:
        return 0
    if args.markdown:
        print(modality_table(pattern), end="")
        return 0
    if what == "plugins":
        _table(
            [("plugin", "status", "distribution", "components")]
            + [
                (
                    r["name"],
                    r["status"],
                    f"{r['distribution']} {r['version']}".strip(),
                    ", ".join(r["components"]),
                )
                for r in rows
            ]
        )
        for r in rows:
            if r["status"] == "failed":
                info = plugins.PluginInfo(**r)
                print(
                    f"\n{r['name']}: {r['error']}\n  entry point: {r['entry_point']}\n  {plugins.block_hint(info)}"
                )
        return 0
    if what == "modalities":
        _table(
            [("modality", "tokenizers", "data sources")]
            + [(r["modality"], ", ".join(r["tokenizers"]), ", ".join(r["data_sources"])) for r in rows]
        )
        return 0
    width = max(24, *(len(r["name"]) + 1 for r in rows))
    for r in rows:
        print(f"{r['name']:<{width}} {r['summary']}")
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
    found = [
        (kind, registry.get(kind, args.name)) for kind in kinds if args.name in registry.list_names(kind)
    ]
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
    from polymodal.configs import ConfigError
    from polymodal.train.serialization import CheckpointReadError, UnsafeCheckpointError
    from polymodal.train.workdir import WorkDirLockedError

    return (ConfigError, CheckpointReadError, UnsafeCheckpointError, WorkDirLockedError, FileNotFoundError)


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


# -- predict ------------------------------------------------------------------------------------------------------
PREDICT_ROW = "_polymodal_row"  # the stand-in target column from_table needs (predictions have no targets)


class PredictError(ValueError):
    """``polymodal predict`` cannot run as asked; the message says why and what to pass."""


def _predict_input(model: Any, key: str | None) -> tuple[str, list[str]]:
    """The input to feed (``--input``, or the model's only one) and the tasks whose heads read only it."""
    inputs = list(model.config.tokenizers)
    if key is None:
        if len(inputs) != 1:
            raise PredictError(
                f"the model has {len(inputs)} inputs ({', '.join(inputs)}); pass --input KEY (one per call)"
            )
        key = inputs[0]
    elif key not in inputs:
        raise PredictError(f"--input {key!r}: the model has no such input; its inputs: {', '.join(inputs)}")
    tasks = [task for task, keys in model.head_inputs.items() if list(keys) == [key]]
    if not tasks:
        reads = "; ".join(f"{task} reads {', '.join(keys)}" for task, keys in model.head_inputs.items())
        raise PredictError(
            f"--input {key!r}: no head of the model reads this input alone ({reads or 'no heads'})"
        )
    return key, tasks


def _predict_files(names: Sequence[str], extensions: Sequence[str], modality: str) -> list[Path]:
    """The files to predict: each name a file, or a folder searched (recursively) for the modality's files."""
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    paths: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                f
                for f in path.rglob("*")
                if f.is_file()
                and f.suffix.lower() in exts
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
            )
            if not found:
                raise PredictError(
                    f"{name}: a folder without {modality} files ({', '.join(sorted(exts)) or 'none declared'})"
                )
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"{name}: no such file or folder")
    return paths


def _predict_dataset(config: Any, args: argparse.Namespace) -> Any:
    """The samples to predict, read and preprocessed with the model's own tokenizer config: files through the
    modality's reader, a table through ``from_table`` (file paths in a column, or rows in the modality's form)."""
    import numpy as np

    from polymodal.data import FileDataset, from_table, read_table, reader_for
    from polymodal.registry import get

    config = type(config).model_validate(config.model_dump())  # every field explicit: nothing is refitted
    if args.table is not None:
        if args.files:
            raise PredictError("give files or --table, not both")
        frame = read_table(args.table)
        if len(frame) == 0:
            raise PredictError(f"{args.table}: the table has no rows")
        frame = frame.assign(**{PREDICT_ROW: np.arange(len(frame), dtype=float)})
        columns = args.column
        # a table schema (tabular) reads its own columns of each row, not a label or id column beside them
        schema = list(getattr(config, "column_names", None) or [])
        if columns is None and schema and set(schema) <= set(frame.columns):
            columns = schema
        return from_table(
            frame,
            config,
            target=PREDICT_ROW,
            columns=columns,
            root=Path(args.table).parent,
            task="regression",
            tokenizer=config,
        )
    if not args.files:
        raise PredictError("give input files (or folders), or --table TABLE")
    cls = get("tokenizer", config.type)
    if not cls.file_extensions:
        raise PredictError(
            f"{config.type}: samples of this modality come in tables, not files; pass --table TABLE"
        )
    paths = _predict_files(args.files, cls.file_extensions, config.type)
    return FileDataset(paths, np.zeros(len(paths)), config, reader_for(config), task="regression")


def _plain(value: Any) -> Any:
    """One sample's prediction as plain Python (a number, or nested lists)."""
    return value.item() if value.ndim == 0 else value.tolist()


def _predict_rows(
    model: Any, dataset: Any, key: str, tasks: Sequence[str], batch_size: int = 32
) -> list[dict[str, Any]]:
    """``[{"source": path or row, task: prediction, ...}]`` for every sample of ``dataset`` fed to input ``key``
    (``head.predict``: class indices for classification, 0/1 per class for multi-label, values for regression)."""
    import torch

    tokenizer = model.tokenizers[key]
    rows: list[dict[str, Any]] = []
    model.eval()
    for start in range(0, len(dataset), batch_size):
        indices = range(start, min(len(dataset), start + batch_size))
        batch = tokenizer.collate([dataset.sample(i) for i in indices])
        with torch.no_grad():
            preds = model({key: model.data_preprocessor.cast_data(batch)}, mode="predict")
        for j, i in enumerate(indices):
            source = dataset.source(i)
            row: dict[str, Any] = {"source": str(source) if isinstance(source, Path) else source}
            row.update({task: _plain(preds[task][j].cpu()) for task in tasks})
            rows.append(row)
    return rows


def _write_predictions(rows: list[dict[str, Any]], out: str | None, fmt: str) -> None:
    stream = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout
    try:
        if fmt == "json":
            stream.write(json.dumps(rows, indent=2) + "\n")
            return
        writer = csv.writer(stream, lineterminator="\n")
        header = list(rows[0]) if rows else ["source"]
        writer.writerow(header)
        for row in rows:
            writer.writerow([json.dumps(v) if isinstance(v, list) else v for v in (row[h] for h in header)])
    finally:
        if out:
            stream.close()


def _cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from polymodal.data import MissingExtraError
    from polymodal.model import from_pretrained

    fmt = args.format or ("json" if args.out and args.out.lower().endswith(".json") else "csv")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise PredictError(
                f"--device {device}: torch sees no CUDA device on this machine; use --device cpu"
            )
        model = from_pretrained(args.model, device=device)
        key, tasks = _predict_input(model, args.input)
        dataset = _predict_dataset(model.config.tokenizers[key], args)
        rows = _predict_rows(model, dataset, key, tasks, batch_size=args.batch_size)
    except (OSError, ValueError, MissingExtraError) as err:
        print(f"polymodal: {err}", file=sys.stderr)
        return 2
    except KeyError as err:
        print(f"polymodal: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    _write_predictions(rows, args.out, fmt)
    if args.out:
        print(
            f"polymodal: {len(rows)} predictions of {', '.join(tasks)} (input {key!r}) written to {args.out}",
            file=sys.stderr,
        )
    return 0


def _export_example(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The example batch an export traces: ``--example`` (a ``torch.save``'d ``{input: batch}``, read weights-only)
    or every chosen input's ``example_input(--batch-size)``."""
    import torch

    keys = args.inputs or list(model.tokenizers)
    unknown = sorted(set(keys) - set(model.tokenizers))
    if unknown:
        raise PredictError(
            f"--inputs {unknown}: the model has no such input; its inputs: {', '.join(model.tokenizers)}"
        )
    if args.example:
        try:
            example = torch.load(args.example, map_location="cpu", weights_only=True)
        except Exception:  # a pickle of more than tensors and plain containers, or not a torch file
            raise PredictError(
                f"--example {args.example}: expected a torch.save'd dict {{input: batch tensors}} of tensors and "
                "plain containers only (read weights-only), got a file that is not one"
            ) from None
        if not isinstance(example, dict):
            raise PredictError(
                f"--example {args.example}: expected a dict {{input: batch}}, got {type(example).__name__}"
            )
        return {k: v for k, v in example.items() if not args.inputs or k in keys}
    generator = torch.Generator().manual_seed(0)
    example = {}
    for key in keys:
        tok = model.tokenizers[key]
        batch = tok.example_input(args.batch_size, generator=generator)
        if isinstance(batch, (list, tuple)):  # raw samples (texts, ...): the batch tensors collate makes of them
            batch = tok.collate([tok.preprocess(sample) for sample in batch])
        example[key] = batch
    return example


def _cmd_export(args: argparse.Namespace) -> int:
    import torch
    from torch.utils import _pytree as pytree

    from polymodal.model import export_onnx, export_program, from_pretrained
    from polymodal.model.export import onnx_input_names

    out = Path(args.out)
    if out.suffix not in (".onnx", ".pt2"):
        print(
            f"polymodal: {out}: expected a file name ending in .onnx (ONNX) or .pt2 (torch.export)",
            file=sys.stderr,
        )
        return 2
    try:
        model = from_pretrained(args.model, device="cpu").eval()
        example = _export_example(model, args)
        dynamic = not args.fixed_batch
        if out.suffix == ".onnx":
            export_onnx(model, example, out, dynamic_batch=dynamic)
        else:
            torch.export.save(export_program(model, example, dynamic_batch=dynamic), str(out))
    except (OSError, ValueError, KeyError, TypeError, ImportError) as err:
        print(f"polymodal: {err.args[0] if isinstance(err, KeyError) and err.args else err}", file=sys.stderr)
        return 2
    shapes = ", ".join(
        f"{name} {list(leaf.shape)}"
        for name, leaf in zip(onnx_input_names(example), pytree.tree_flatten(example)[0])
    )
    batch = "dynamic" if dynamic else "fixed"
    print(f"polymodal: wrote {out} (inputs {shapes}; batch dimension {batch}, every other dimension fixed)")
    if not args.example:
        print(
            "polymodal: the shapes are those of each tokenizer's example_input (small ones, made for tests); to "
            "export for the shapes you will feed, torch.save a dict {input: batch} and pass it as --example",
            file=sys.stderr,
        )
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

    p.add_argument(
        "config",
        help="mmengine config file, or a shipped one: polymodal::image_digits.py (see 'polymodal list configs')",
    )
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
        help="job launcher: 'pytorch' under torchrun (DDP; gloo when there is no GPU), 'slurm' under srun",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _type_name(annotation: object) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _table(rows: list[tuple[str, ...]], indent: str = "") -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            print(indent + "  ".join("-" * w for w in widths))


def build_parser() -> argparse.ArgumentParser:
    from polymodal import __version__

    parser = argparse.ArgumentParser(prog="polymodal", description="Unified multimodal learning.")
    parser.add_argument("--version", action="version", version=f"polymodal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list registered modalities, components, plugins or the shipped configs")
    p.add_argument("what", nargs="?", default="modalities", choices=list(KINDS))
    p.add_argument("filter", nargs="?", default="*", help="fnmatch pattern, e.g. 'vit_*'")
    p.add_argument("--json", action="store_true", help="print the entries as a JSON list")
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
        "predict",
        help="predict with a saved model (save_pretrained) on files or a table; CSV or JSON per sample",
        description="Load a model folder written by save_pretrained (e.g. <work_dir>/pretrained after `polymodal "
        "train`), read the inputs with the model's own tokenizer config (files through the modality's reader; a "
        "table through from_table: a column of file paths, or rows in the modality's form such as table rows, "
        "texts or SMILES) and print one row per sample: its source (file or row number) and the prediction of "
        "every task whose head reads that input (class index, 0/1 per class, or values).",
    )
    p.add_argument("model", help="folder holding config.json and model.safetensors")
    p.add_argument("files", nargs="*", help="input files, or folders searched for the modality's files")
    p.add_argument("--table", help="a CSV/TSV/JSONL/Parquet table of samples instead of files")
    p.add_argument(
        "--column",
        help="with --table: the column of samples (file paths by default in 'path'; text, smiles, …)",
    )
    p.add_argument("--input", help="the model input to feed (needed when the model has several)")
    p.add_argument("--out", help="write here instead of standard output (.json: JSON)")
    p.add_argument("--format", choices=["csv", "json"], help="output format (default: from --out, else csv)")
    p.add_argument(
        "--batch-size", type=_positive_int, default=32, help="samples per forward pass (default 32)"
    )
    p.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    p.set_defaults(func=_cmd_predict)
    p = sub.add_parser(
        "export",
        help="export a saved model's tensor forward as ONNX (.onnx) or a torch.export program (.pt2)",
        description="Load a model folder written by save_pretrained and trace its tensor forward (the tokenizers' "
        "forward, the shared encoder, the heads; preprocess and collate stay Python) on an example batch: by default "
        "each input's example_input, or --example. The batch dimension is dynamic, every other dimension is fixed at "
        "the example's (pad text to the length you will feed). See docs/export.md.",
    )
    p.add_argument("model", help="folder holding config.json and model.safetensors")
    p.add_argument("out", help="output file: .onnx (needs polymodal[export]) or .pt2")
    p.add_argument("--inputs", nargs="+", metavar="KEY", help="export only these inputs (default: all)")
    p.add_argument("--example", help="a torch.save'd dict {input: batch tensors} to trace with")
    p.add_argument(
        "--batch-size", type=_positive_int, default=2, help="batch of the generated example (default 2)"
    )
    p.add_argument("--fixed-batch", action="store_true", help="fix the batch dimension too")
    p.set_defaults(func=_cmd_export)
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

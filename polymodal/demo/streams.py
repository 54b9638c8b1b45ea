"""What ``polymodal demo`` trains: one stream per registered modality, from the data sources' own settings.

Every data source declares how the demo trains it (:class:`~polymodal.core.source.DemoSettings`: source, tokenizer
and head overrides sized for a CPU step, and settings fitted on the training split such as a vocabulary). For each
registered modality the demo takes the source that declares settings, or else the modality's first source with
its tokenizer's defaults and the source's own sample counts; so a plugin installed later (or written in a test)
is in the demo without an edit here. :class:`DemoPreset` sizes a run; :func:`demo_config` is its mmengine config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmengine.config import Config

from polymodal import registry

__all__ = ["PRESETS", "DemoPreset", "DemoStream", "demo_config", "demo_streams", "source_spec"]


@dataclass(frozen=True)
class DemoStream:
    """What the demo trains for one modality: a data-source config (``type`` and overrides), tokenizer settings
    (over the source's own ``tokenizer_config()``), head settings (over the source's ``task()``) and an optional
    ``fit(source, folder)`` giving tokenizer settings fitted on the training split."""

    source: Mapping[str, Any]
    tokenizer: Mapping[str, Any] = field(default_factory=dict)
    head: Mapping[str, Any] = field(default_factory=dict)
    fit: Callable[[Any, Path], Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class DemoPreset:
    """Size of a demo run: the encoder, the steps (``epochs`` over ``num_train`` samples per modality, in steps of
    ``batch_per_stream`` samples of every modality) and the learning-rate schedule (linear warm-up over
    ``warmup`` epochs, then cosine decay)."""

    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 4
    epochs: int = 4
    batch_per_stream: int = 16
    num_train: int = 1024
    num_test: int = 256
    lr: float = 2e-3
    warmup: float = 0.25
    num_workers: int = 0
    seed: int = 0


# Steps: epochs * num_train / batch_per_stream (each step holds batch_per_stream samples of every modality).
PRESETS: dict[str, DemoPreset] = {
    "default": DemoPreset(),  # 256 steps
    "quick": DemoPreset(epochs=3, num_train=384, num_test=128),  # 72 steps
}


def _stream_of(modality: str) -> DemoStream | None:
    """The demo stream of ``modality``: its source that declares demo settings (the first by name), else its first
    source with defaults and that source's own sample counts (a real data set may have no more); ``None`` when it
    has no data source."""
    sources = [registry.get("data source", n) for n in registry.list_data_sources()]
    own = [cls for cls in sources if cls.modality == modality]
    if not own:
        return None
    chosen = next((cls for cls in own if cls.demo is not None), None)
    if chosen is not None:
        d = chosen.demo
        return DemoStream({"type": chosen.name, **d.source}, dict(d.tokenizer), dict(d.head), d.fit)
    fields = own[0].config_class.model_fields
    sizes = {k: fields[k].default for k in ("num_train", "num_test") if k in fields}
    return DemoStream({"type": own[0].name, **sizes})


def demo_streams(modalities: Sequence[str] | None = None) -> dict[str, DemoStream]:
    """The streams to train, by modality: every registered modality that has a data source (in the registry's
    order), or those in ``modalities`` (each must have one)."""
    if modalities is None:
        found = {m: _stream_of(m) for m in registry.list_modalities()}
        return {m: s for m, s in found.items() if s is not None}
    out = {}
    for m in modalities:
        stream = _stream_of(m)
        if stream is None:
            known = sorted({registry.get("data source", n).modality for n in registry.list_data_sources()})
            raise ValueError(
                f"demo: no data source for modality {m!r}; modalities with data: {', '.join(known)}"
            )
        out[m] = stream
    return out


def source_spec(stream: DemoStream, preset: DemoPreset) -> dict[str, Any]:
    """The stream's data-source config, with the preset's sample counts where the stream sets none."""
    spec = {"type": stream.source} if isinstance(stream.source, str) else dict(stream.source)
    fields = registry.get("data source", spec["type"]).config_class.model_fields
    if "num_train" in fields:
        spec.setdefault("num_train", preset.num_train)
    if "num_test" in fields:
        spec.setdefault("num_test", preset.num_test)
    return spec


def demo_config(
    streams: Mapping[str, DemoStream],
    preset: DemoPreset,
    *,
    frozen: bool = False,
    amp: bool = False,
    out: str | Path = "demo_out",
) -> Config:
    """The mmengine config of a demo run: no checkpoints, no validation during training, the test splits at the
    end; mmengine's logs go to ``out/run``, files that tokenizers are fitted with (a vocabulary) to ``out/model``.
    ``amp``: bf16 autocast (CUDA)."""
    from polymodal.train.multitask import build_source

    tokenizers, data_streams, heads = {}, {}, {}
    largest = 1
    for key, stream in streams.items():
        spec = source_spec(stream, preset)
        source = build_source(spec)
        # the source's own tokenizer entry (e.g. a table's fitted column schema), then the demo's settings
        own = source.tokenizer_config() if hasattr(source, "tokenizer_config") else {}
        fitted = stream.fit(source, Path(out) / "model") if stream.fit is not None else {}
        tokenizers[key] = {"type": source.modality, **own, **stream.tokenizer, **fitted}
        data_streams[key] = {"source": spec}
        heads[key] = {**source.task(), **stream.head}
        largest = max(largest, int(source.config.num_train))
    # round-robin mixing: an epoch ends when the largest stream has been seen once
    steps_per_epoch = max(1, largest // preset.batch_per_stream)
    warmup = min(preset.warmup, preset.epochs / 2)
    optim_wrapper: dict[str, Any] = dict(
        type="AmpOptimWrapper" if amp else "OptimWrapper",
        optimizer=dict(type="AdamW", lr=preset.lr, betas=(0.9, 0.999), weight_decay=0.05),
        constructor="PolymodalOptimWrapperConstructor",
        clip_grad=dict(max_norm=1.0),
    )
    if amp:
        optim_wrapper["dtype"] = "bfloat16"
    schedule = [
        dict(
            type="CosineAnnealingLR",
            by_epoch=True,
            begin=warmup,
            end=preset.epochs,
            T_max=preset.epochs - warmup,
            eta_min=preset.lr * 0.02,
            convert_to_iter_based=True,
        )
    ]
    if warmup > 0:
        schedule.insert(
            0,
            dict(
                type="LinearLR",
                start_factor=0.1,
                by_epoch=True,
                begin=0,
                end=warmup,
                convert_to_iter_based=True,
            ),
        )
    loader = dict(
        num_workers=preset.num_workers,
        persistent_workers=False,
        collate_fn=dict(type="polymodal.multitask_collate"),
    )
    cfg = dict(
        default_scope="polymodal",
        custom_imports=dict(imports=["polymodal.train"], allow_failed_imports=False),
        env_cfg=dict(
            cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork"), dist_cfg=dict(backend="nccl")
        ),
        default_hooks=dict(
            runtime_info=dict(type="RuntimeInfoHook"),
            timer=dict(type="IterTimerHook"),
            sampler_seed=dict(type="DistSamplerSeedHook"),
            logger=dict(type="LoggerHook", interval=max(1, steps_per_epoch // 2)),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=None,
        ),
        custom_hooks=[dict(type="MetricsJsonHook")],
        log_processor=dict(type="PolymodalLogProcessor", window_size=10, by_epoch=True),
        log_level="WARNING",  # the progress hook prints; mmengine's log file in run/ keeps the details
        randomness=dict(seed=preset.seed, deterministic=False),
        model=dict(
            type="MultimodalModel",
            encoder=dict(
                type="vit",
                embed_dim=preset.embed_dim,
                depth=preset.depth,
                num_heads=preset.num_heads,
                freeze="frozen" if frozen else "tuned",
            ),
            tokenizers=tokenizers,
            heads=heads,
        ),
        train_dataloader=dict(
            batch_size=preset.batch_per_stream * len(streams),
            sampler=dict(type="MultiTaskSampler", mode="round_robin", shuffle=True),
            batch_sampler=dict(type="MultiTaskBatchSampler", drop_last=True),
            dataset=dict(type="MultiTaskDataset", split="train", streams=data_streams, tokenizers=tokenizers),
            **loader,
        ),
        test_dataloader=dict(
            batch_size=128,
            sampler=dict(type="MultiTaskSampler", mode="proportional", shuffle=False),
            batch_sampler=dict(type="MultiTaskBatchSampler", drop_last=False),
            dataset=dict(type="MultiTaskDataset", split="test", streams=data_streams, tokenizers=tokenizers),
            **loader,
        ),
        test_evaluator=dict(type="MultiTaskMetric", prefix="test"),  # keys test/<task>/<metric>
        test_cfg=dict(),
        optim_wrapper=optim_wrapper,
        param_scheduler=schedule,
        train_cfg=dict(by_epoch=True, max_epochs=preset.epochs),
        work_dir=str(Path(out) / "run"),
    )
    return Config(cfg)

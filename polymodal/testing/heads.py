"""Conformance checks of task heads (any registered name): one output row per sample, padding that never changes
a sample's output, a finite differentiable loss, predictions, registered metrics, clear errors for bad targets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from polymodal.core.tokens import Tokens
from polymodal.registry.lookup import get, list_metrics
from polymodal.testing._checks import (
    Check,
    backward_reaches,
    close,
    expect_error,
    finite,
    problem,
    round_trips,
    run_checks,
    unbuildable,
)

__all__ = ["check_head", "head_checks"]


def _row(t: Tokens, i: int) -> Tokens:
    """Row ``i`` of ``t`` alone, without padding."""
    n = int(t.mask[i].sum())
    return t.replace(embeddings=t.embeddings[i : i + 1, :n], mask=t.mask[i : i + 1, :n])


def _sample_output(out: Tensor, i: int, real: int, tokens_wide: int) -> Tensor:
    """Row ``i`` of an output; per-token outputs (second dim = the batch's non-prefix tokens) cut to ``real``."""
    row = out[i]
    return row[:real] if out.dim() >= 2 and out.shape[1] == tokens_wide else row


def head_checks(
    name: str, *, embed_dim: int = 16, batch_size: int = 3, seed: int = 0, **overrides: Any
) -> Iterator[Check]:
    """The checks of head ``name`` (built from ``example_config()`` and ``overrides``), one
    :class:`~polymodal.testing.Check` each."""
    cls = get("head", name)
    try:
        config = cls.default_config(**{**cls.example_config(), "embed_dim": embed_dim, **overrides})
        torch.manual_seed(seed)
        head = cls(config).eval()
        g = torch.Generator().manual_seed(seed)
        inputs = head.example_input(batch_size, generator=g)
        target = head.example_target(inputs[0], generator=g)
    except Exception as exc:
        yield unbuildable("head", name, "example_config(), example_input() and example_target()", exc)
        return

    def config_round_trips() -> None:
        round_trips(config)

    def example_input_matches_the_declared_inputs() -> None:
        if len(inputs) != len(config.inputs("task")):
            raise problem(f"example_input gave {len(inputs)} Tokens for inputs {config.inputs('task')}")

    def one_output_row_per_sample() -> None:
        with torch.no_grad():
            out = head(*inputs)
        if not isinstance(out, Tensor) or out.shape[0] != batch_size:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise problem(f"expected an output with {batch_size} rows, got {got}")
        finite(out, "output")

    def padding_does_not_change_a_sample() -> None:
        with torch.no_grad():
            out = head(*inputs)
            for i in range(batch_size):
                alone = head(*(_row(t, i) for t in inputs))
                t = inputs[0]
                real = int(t.mask[i].sum()) - t.prefix
                wide = t.num_tokens - t.prefix
                close(_sample_output(out, i, real, wide), alone[0], f"sample {i} in a padded batch vs alone")

    def loss_is_a_finite_scalar_with_gradients() -> None:
        if target is None and head.requires_target:
            raise problem("example_target gave None, but the head requires targets")
        head.train()
        try:
            out = head(*inputs)
            loss = head.loss(out, head.align_target(inputs[0], target))
            if not isinstance(loss, Tensor) or loss.dim() != 0:
                raise problem(
                    f"loss must be a scalar tensor, got {getattr(loss, 'shape', type(loss).__name__)}"
                )
            finite(loss, "loss")
            backward_reaches([p for p in head.parameters() if p.requires_grad], loss, "loss")
        finally:
            head.zero_grad(set_to_none=True)
            head.eval()

    def predictions_have_one_row_per_sample() -> None:
        with torch.no_grad():
            pred = head.predict(head(*inputs))
        if not isinstance(pred, Tensor) or pred.shape[0] != batch_size:
            raise problem(
                f"predict must give {batch_size} rows, got {getattr(pred, 'shape', type(pred).__name__)}"
            )

    def scores_have_one_row_per_sample() -> None:
        with torch.no_grad():
            scores = head.scores(head(*inputs))
        if scores is None:
            return
        if not isinstance(scores, Tensor) or scores.shape[0] != batch_size:
            got = getattr(scores, "shape", type(scores).__name__)
            raise problem(f"scores must give {batch_size} rows, got {got}")
        finite(scores, "scores")

    def metrics_are_registered() -> None:
        unknown = [m for m in head.metrics if m not in list_metrics()]
        if unknown:
            raise problem(f"metrics {unknown} are not registered; registered: {', '.join(list_metrics())}")
        json.dumps(head.metric_params())  # plain values only

    def targets_of_another_batch_size_are_refused_clearly() -> None:
        if not isinstance(target, Tensor):
            return
        bad = target[:-1]

        def run() -> None:
            with torch.no_grad():
                head.loss(head(*inputs), head.align_target(inputs[0], bad))

        expect_error(run, (ValueError,), name, f"targets for {batch_size - 1} of {batch_size} samples")

    for fn in (
        config_round_trips,
        example_input_matches_the_declared_inputs,
        one_output_row_per_sample,
        padding_does_not_change_a_sample,
        loss_is_a_finite_scalar_with_gradients,
        predictions_have_one_row_per_sample,
        scores_have_one_row_per_sample,
        metrics_are_registered,
        targets_of_another_batch_size_are_refused_clearly,
    ):
        yield Check("head", name, fn.__name__, fn)


def check_head(
    name: str, *, embed_dim: int = 16, batch_size: int = 3, seed: int = 0, **overrides: Any
) -> None:
    """Run every head check on the registered head ``name``, built with its ``example_config()`` and ``overrides``
    on its ``example_input()`` and ``example_target()``. Raises :class:`~polymodal.testing.ConformanceError`
    naming the check."""
    run_checks(head_checks(name, embed_dim=embed_dim, batch_size=batch_size, seed=seed, **overrides))

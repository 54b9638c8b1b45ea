"""Conformance checks of shared encoders (any registered name): the list-of-Tokens contract, packing invariances
(padding and the other inputs of a step never change a sequence's result), gradients, clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from polymodal.core.tokens import Tokens
from polymodal.registry.lookup import get
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

__all__ = ["check_encoder", "encoder_checks"]


def _tokens(lengths: list[int], dim: int, name: str, seed: int, pad: int = 0) -> Tokens:
    """Tokens ``[B, max(lengths) + pad, dim]`` with ``lengths`` real tokens per row, zeros at padding."""
    g = torch.Generator().manual_seed(seed)
    n = max(lengths) + pad
    mask = torch.arange(n)[None] < torch.tensor(lengths)[:, None]
    x = torch.randn(len(lengths), n, dim, generator=g) * mask[..., None]
    return Tokens(x, mask, name, meta={"marker": seed}, prefix=1)


def encoder_checks(name: str, *, seed: int = 0, **overrides: Any) -> Iterator[Check]:
    """The checks of encoder ``name`` (built from ``example_config()`` and ``overrides``), one
    :class:`~polymodal.testing.Check` each."""
    cls = get("encoder", name)
    try:
        config = cls.default_config(**{**cls.example_config(), **overrides})
        torch.manual_seed(seed)
        enc = cls(config).eval()
    except Exception as exc:
        yield unbuildable("encoder", name, "example_config()", exc)
        return
    d = enc.embed_dim

    def config_round_trips() -> None:
        round_trips(config)

    def returns_one_tokens_per_input_in_order() -> None:
        ins = [_tokens([4, 2, 3], d, "a", seed), _tokens([5], d, "b", seed + 1, pad=2)]
        with torch.no_grad():
            out = enc(ins)
        if not isinstance(out, list) or len(out) != len(ins):
            raise problem(f"expected a list of {len(ins)} Tokens, got {type(out).__name__} of {len(out)}")
        for t, o in zip(ins, out):
            if not isinstance(o, Tokens):
                raise problem(f"expected Tokens, got {type(o).__name__}")
            if o.modality != t.modality or o.prefix != t.prefix or o.meta != t.meta:
                raise problem(f"input {t.modality!r}: modality, prefix and meta must come back unchanged")
            if o.embeddings.shape != t.embeddings.shape or not torch.equal(o.mask, t.mask):
                raise problem(
                    f"input {t.modality!r}: expected {tuple(t.embeddings.shape)} with the same mask, got "
                    f"{tuple(o.embeddings.shape)}"
                )
            finite(o.embeddings, f"output of {t.modality!r}")

    def padded_positions_are_zero() -> None:
        t = _tokens([5, 2], d, "a", seed, pad=1)
        with torch.no_grad():
            (o,) = enc([t])
        if bool(o.embeddings[~o.mask].abs().gt(0).any()):
            raise problem("padded positions of the output must be zero")

    def padding_does_not_change_results() -> None:
        t = _tokens([5, 2], d, "a", seed, pad=3)
        alone = Tokens(t.embeddings[1:2, :2], t.mask[1:2, :2], "a", prefix=1)
        with torch.no_grad():
            (o,) = enc([t])
            (a,) = enc([alone])
        close(o.embeddings[1, :2], a.embeddings[0], "a padded sequence vs the same sequence alone")

    def other_inputs_do_not_change_results() -> None:
        t, u = _tokens([3, 4], d, "a", seed), _tokens([6, 1, 2], d, "b", seed + 1)
        with torch.no_grad():
            both = enc([t, u])
            (alone,) = enc([t])
        close(both[0].embeddings, alone.embeddings, "input 'a' encoded with 'b' vs alone")

    def empty_list_gives_empty_list() -> None:
        if enc([]) != []:
            raise problem("an empty list of inputs must give an empty list")

    def wrong_width_is_refused_clearly() -> None:
        bad = _tokens([2], d + 1, "a", seed)
        expect_error(lambda: enc([bad]), (ValueError,), cls.name, f"tokens of width {d + 1}")

    def non_tokens_are_refused_clearly() -> None:
        expect_error(lambda: enc([torch.zeros(1, 2, d)]), (TypeError, ValueError), cls.name, "a tensor")

    def gradients_reach_the_parameters() -> None:
        params = [p for p in enc.parameters() if p.requires_grad]
        if not params:  # an encoder frozen by its config has nothing to train
            return
        enc.train()
        try:
            t = _tokens([4, 3], d, "a", seed)
            (o,) = enc([t])
            backward_reaches(params, (o.embeddings[o.mask] ** 2).mean(), "encoder output")
        finally:
            enc.zero_grad(set_to_none=True)
            enc.eval()

    def eval_is_deterministic() -> None:
        t = _tokens([4, 3], d, "a", seed)
        with torch.no_grad():
            (a,), (b,) = enc([t]), enc([t])
        if not torch.equal(a.embeddings, b.embeddings):
            raise problem("two eval-mode passes over the same input differ")

    for fn in (
        config_round_trips,
        returns_one_tokens_per_input_in_order,
        padded_positions_are_zero,
        padding_does_not_change_results,
        other_inputs_do_not_change_results,
        empty_list_gives_empty_list,
        wrong_width_is_refused_clearly,
        non_tokens_are_refused_clearly,
        gradients_reach_the_parameters,
        eval_is_deterministic,
    ):
        yield Check("encoder", name, fn.__name__, fn)


def check_encoder(name: str, *, seed: int = 0, **overrides: Any) -> None:
    """Run every encoder check on the registered encoder ``name``, built with its ``example_config()`` (small
    settings) and ``overrides``. Raises :class:`~polymodal.testing.ConformanceError` naming the check."""
    run_checks(encoder_checks(name, seed=seed, **overrides))

"""Conformance checks of tokenizers (any registered name): config, shapes, mask, gradients, malformed input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from polymodal.core.component import ModalityInputError
from polymodal.core.tokens import Tokens
from polymodal.registry.lookup import get
from polymodal.testing._checks import Check, backward_reaches, finite, problem, round_trips, run_checks

__all__ = ["check_tokenizer", "tokenizer_checks"]

_GARBAGE: tuple[Any, ...] = (object(), 42, None)


class _Subject:
    """A tokenizer built once for all its checks, with its example batch and tokens."""

    def __init__(self, name: str, embed_dim: int, batch_size: int, seed: int) -> None:
        self.cls = get("tokenizer", name)
        self.config = self.cls.default_config(embed_dim=embed_dim)
        self.batch_size, self.embed_dim, self.seed = batch_size, embed_dim, seed
        self._tokens: Tokens | None = None
        torch.manual_seed(seed)
        self.tok = self.cls(self.config)
        self.tok.train()

    @property
    def tokens(self) -> Tokens:
        if self._tokens is None:
            batch = self.tok.example_input(
                self.batch_size, generator=torch.Generator().manual_seed(self.seed)
            )
            out = self.tok(batch)
            if not isinstance(out, Tokens):
                raise problem(f"forward must return Tokens, got {type(out).__name__}")
            self._tokens = out
        return self._tokens


def tokenizer_checks(
    name: str, *, embed_dim: int = 32, batch_size: int = 2, seed: int = 0
) -> Iterator[Check]:
    """The checks of tokenizer ``name``, one :class:`~polymodal.testing.Check` each (run one with ``check()``)."""
    s = _Subject(name, embed_dim, batch_size, seed)
    modality = s.cls.modality

    def config_round_trips() -> None:
        round_trips(s.config)

    def example_gives_tokens_of_its_modality() -> None:
        out = s.tokens
        if out.modality != modality:
            raise problem(f"tokens name modality {out.modality!r}, expected {modality!r}")
        if out.embeddings.shape[0] != batch_size or out.embeddings.shape[2] != embed_dim:
            raise problem(
                f"expected tokens [{batch_size}, N, {embed_dim}], got {tuple(out.embeddings.shape)}"
            )

    def every_row_has_a_real_token() -> None:
        if not bool(s.tokens.mask.any(dim=1).all()):
            raise problem("a sequence of the example batch has no real token")

    def tokens_are_finite() -> None:
        finite(s.tokens.embeddings[s.tokens.mask], "tokens")

    def gradients_reach_the_parameters() -> None:
        out = s.tokens
        params = [p for p in s.tok.parameters() if p.requires_grad]
        backward_reaches(params, (out.embeddings[out.mask].float() ** 2).mean(), "tokens")

    def malformed_input_is_refused_clearly() -> None:
        for bad in (*_GARBAGE, *s.tok.invalid_examples()):
            try:
                s.tok(bad)
            except ModalityInputError as exc:
                if not str(exc).startswith(f"{modality}:"):
                    raise problem(
                        f"error for malformed input must start with '{modality}:', got {exc}"
                    ) from None
            except Exception as exc:  # a raw torch error is a defect
                raise problem(
                    f"malformed input raised {type(exc).__name__} instead of ModalityInputError: {exc}"
                ) from None
            else:
                raise problem(f"malformed input was accepted: {bad!r:.80}")

    for fn in (
        config_round_trips,
        example_gives_tokens_of_its_modality,
        every_row_has_a_real_token,
        tokens_are_finite,
        gradients_reach_the_parameters,
        malformed_input_is_refused_clearly,
    ):
        yield Check("tokenizer", name, fn.__name__, fn)


def check_tokenizer(name: str, *, embed_dim: int = 32, batch_size: int = 2, seed: int = 0) -> Tokens:
    """Run every tokenizer check on the registered tokenizer ``name``; return the example's tokens.

    Checks: the config round-trips through JSON; the example input gives finite ``[B, N, D]`` tokens of this
    modality with a bool mask that has a real token in every row; gradients reach the parameters and are finite;
    garbage and the tokenizer's own ``invalid_examples()`` raise :class:`ModalityInputError` naming the modality.
    Raises :class:`~polymodal.testing.ConformanceError` naming the check that failed.
    """
    checks = list(tokenizer_checks(name, embed_dim=embed_dim, batch_size=batch_size, seed=seed))
    run_checks(iter(checks))
    # the tokens of a fresh forward (the checks' backward pass consumed the graph of theirs)
    cls = get("tokenizer", name)
    torch.manual_seed(seed)
    tok = cls(cls.default_config(embed_dim=embed_dim)).train()
    return tok(tok.example_input(batch_size, generator=torch.Generator().manual_seed(seed)))

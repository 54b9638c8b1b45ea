"""Conformance checks every plugin must pass, ours and third parties'.

Use them in a plugin's own test suite::

    from polymodal.testing import check_tokenizer, check_data_source

    def test_my_tokenizer():
        check_tokenizer("eeg")

Each check raises ``AssertionError`` with a message naming the component and what went wrong.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from polymodal.core.component import ModalityInputError
from polymodal.core.tokens import Tokens
from polymodal.registry.lookup import get

__all__ = ["check_data_source", "check_tokenizer"]

_GARBAGE: tuple[Any, ...] = (object(), 42, None)


def _fail(name: str, problem: str) -> AssertionError:
    return AssertionError(f"{name}: {problem}")


def check_tokenizer(name: str, *, embed_dim: int = 32, batch_size: int = 2, seed: int = 0) -> Tokens:
    """Run the tokenizer contract on the registered tokenizer ``name``; return the example's tokens.

    Checks: the config round-trips through JSON; the example input gives finite ``[B, N, D]`` tokens of this
    modality with a bool mask that has a real token in every row; gradients reach the parameters and are finite;
    garbage and the tokenizer's own ``invalid_examples()`` raise :class:`ModalityInputError` naming the modality.
    """
    cls = get("tokenizer", name)
    config = cls.default_config(embed_dim=embed_dim)
    again = cls.config_class.model_validate(json.loads(config.model_dump_json()))
    if again != config:
        raise _fail(name, f"config does not round-trip through JSON: {config!r} -> {again!r}")
    torch.manual_seed(seed)
    tok = cls(config)
    tok.train()
    batch = tok.example_input(batch_size, generator=torch.Generator().manual_seed(seed))
    out = tok(batch)
    if not isinstance(out, Tokens):
        raise _fail(name, f"forward must return Tokens, got {type(out).__name__}")
    if out.modality != cls.modality:
        raise _fail(name, f"tokens name modality {out.modality!r}, expected {cls.modality!r}")
    if out.embeddings.shape[0] != batch_size or out.embeddings.shape[2] != embed_dim:
        raise _fail(
            name, f"expected tokens [{batch_size}, N, {embed_dim}], got {tuple(out.embeddings.shape)}"
        )
    if not bool(out.mask.any(dim=1).all()):
        raise _fail(name, "a sequence of the example batch has no real token")
    if not bool(torch.isfinite(out.embeddings[out.mask]).all()):
        raise _fail(name, "tokens are not finite")
    params = [p for p in tok.parameters() if p.requires_grad]
    if not params:
        raise _fail(name, "a tokenizer must have learnable parameters")
    (out.embeddings[out.mask].float() ** 2).mean().backward()
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or not any(bool(g.abs().sum() > 0) for g in grads):
        raise _fail(name, "no gradient reaches the tokenizer's parameters")
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise _fail(name, "gradients are not finite")
    for bad in (*_GARBAGE, *tok.invalid_examples()):
        try:
            tok(bad)
        except ModalityInputError as exc:
            if not str(exc).startswith(f"{cls.modality}:"):
                raise _fail(
                    name, f"error for malformed input must start with '{cls.modality}:', got {exc}"
                ) from None
        except Exception as exc:  # a raw torch error is a defect
            raise _fail(
                name, f"malformed input raised {type(exc).__name__} instead of ModalityInputError: {exc}"
            ) from exc
        else:
            raise _fail(name, f"malformed input was accepted: {bad!r:.80}")
    return out


def check_data_source(name: str, *, embed_dim: int = 32, num_samples: int = 4) -> None:
    """Run the data-source contract: train/test splits of ``(sample, target)``, samples that the modality's
    tokenizer collates and tokenizes, a head config that builds, and a baseline in a sane range."""
    cls = get("data source", name)
    source = cls.from_config()
    splits = source.splits()
    if not {"train", "test"} <= set(splits):
        raise _fail(name, f"splits() must give 'train' and 'test', got {sorted(splits)}")
    tok = get("tokenizer", cls.modality).from_config(embed_dim=embed_dim)
    for split, data in splits.items():
        if len(data) < num_samples:
            raise _fail(name, f"split {split!r} has {len(data)} samples, fewer than {num_samples}")
        items = [data[i] for i in range(num_samples)]
        if not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
            raise _fail(name, "samples must be (sample, target) pairs")
        out = tok(tok.collate([s for s, _ in items]))
        if out.batch_size != num_samples:
            raise _fail(name, f"collated batch of {num_samples} gave {out.batch_size} sequences")
    head = get("head", source.task()["type"]).from_config({**source.task(), "embed_dim": embed_dim})
    if head is None:
        raise _fail(name, "task() did not give a head")
    baseline = source.baseline()
    if not isinstance(baseline, float):
        raise _fail(name, f"baseline() must be a float, got {type(baseline).__name__}")

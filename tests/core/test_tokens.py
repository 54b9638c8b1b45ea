"""Tokens: shape checks, lengths, device moves."""

from __future__ import annotations

import pytest
import torch

from polymodal.core.tokens import Tokens


def test_full_and_lengths() -> None:
    t = Tokens.full(torch.zeros(2, 5, 4), "image", grid=(1, 5))
    assert t.mask.dtype == torch.bool and t.mask.all()
    assert (t.batch_size, t.num_tokens, t.dim) == (2, 5, 4)
    assert t.lengths.tolist() == [5, 5] and t.meta == {"grid": (1, 5)} and t.prefix == 0
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert Tokens(torch.zeros(2, 3, 4), mask, "text").lengths.tolist() == [2, 1]


@pytest.mark.parametrize(
    ("emb", "mask", "match"),
    [
        (
            torch.zeros(2, 5),
            torch.ones(2, 5, dtype=torch.bool),
            r"^audio: Tokens.embeddings must be a float tensor \[B, N, D\], got \(2, 5\)$",
        ),
        (
            torch.zeros(2, 5, 4, dtype=torch.long),
            torch.ones(2, 5, dtype=torch.bool),
            "must be a float tensor",
        ),
        (
            torch.zeros(2, 5, 4),
            torch.ones(2, 5),
            r"^audio: Tokens.mask must be a bool tensor of shape \(2, 5\)",
        ),
        (torch.zeros(2, 5, 4), torch.ones(2, 4, dtype=torch.bool), r"got \(\(2, 4\), torch.bool\)"),
    ],
)
def test_bad_shapes_are_rejected(emb: torch.Tensor, mask: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Tokens(emb, mask, "audio")


def test_replace_and_to_keep_fields() -> None:
    t = Tokens.full(torch.ones(1, 2, 3), "x", k=1)
    u = t.replace(embeddings=torch.zeros(1, 2, 3), prefix=1).to("cpu")
    assert u.meta == {"k": 1} and u.prefix == 1 and u.modality == "x" and float(u.embeddings.sum()) == 0.0
    with pytest.raises(ValueError):
        t.replace(mask=torch.ones(1, 3, dtype=torch.bool))

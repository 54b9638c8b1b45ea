"""polymodal.testing on components that break their contract: each is caught by the named check, in the kit's own
words (never a raw torch error)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

import polymodal
from polymodal.core.encoders import Encoder, EncoderConfig
from polymodal.core.encoders.packing import PackedLayout
from polymodal.core.heads import ClassificationHead, ClassificationHeadConfig
from polymodal.registry.tables import unregister
from polymodal.testing import ConformanceError, check_encoder, check_head, check_tokenizer, encoder_checks


@pytest.fixture
def registered() -> Iterator[list[tuple[str, str]]]:
    names: list[tuple[str, str]] = []
    yield names
    for kind, name in names:
        unregister(kind, name)


def _register(registered: list[tuple[str, str]], cls: type) -> None:
    polymodal.register(cls)
    registered.append((cls.kind, cls.name))


class MixingConfig(EncoderConfig):
    type: str = "kit_mixing"
    embed_dim: int = 16


class MixingEncoder(Encoder):
    """Adds the mean of the whole stream to every token: sequences see each other (a broken packed encoder)."""

    name: ClassVar[str] = "kit_mixing"
    config_class = MixingConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.proj = nn.Linear(16, 16)

    def encode_packed(self, x: Tensor, layout: PackedLayout) -> Tensor:
        return self.proj(x) + x.mean(0, keepdim=True)


def test_an_encoder_whose_sequences_see_each_other_fails_the_named_checks(registered: list) -> None:
    _register(registered, MixingEncoder)
    failed = {}
    for check in encoder_checks("kit_mixing"):
        try:
            check()
        except ConformanceError as exc:
            failed[exc.check] = exc.problem
    assert set(failed) == {"padding_does_not_change_results", "other_inputs_do_not_change_results"}
    assert failed["other_inputs_do_not_change_results"].startswith(
        "input 'a' encoded with 'b' vs alone: differs by"
    )
    with pytest.raises(ConformanceError, match=r"encoder 'kit_mixing': padding_does_not_change_results: "):
        check_encoder("kit_mixing")


def test_the_builtin_encoder_passes() -> None:
    check_encoder("vit", embed_dim=32, num_heads=2, depth=1)


class NoGradConfig(polymodal.TokenizerConfig):
    type: str = "kit_nograd"


class NoGradTokenizer(polymodal.Tokenizer):
    """Detaches its tokens: no gradient reaches its parameters."""

    name: ClassVar[str] = "kit_nograd"
    config_class = NoGradConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.proj = nn.Linear(1, self.embed_dim)

    def forward(self, batch: Any) -> polymodal.Tokens:
        if not isinstance(batch, Tensor) or batch.dim() != 2 or not batch.is_floating_point():
            raise self.fail("a float tensor (B, L)", batch)
        return polymodal.Tokens.full(self.proj(batch[..., None]).detach(), self.modality)

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(batch_size, 4, generator=generator)


def test_a_tokenizer_without_a_gradient_path_gets_the_kits_message(registered: list) -> None:
    _register(registered, NoGradTokenizer)
    with pytest.raises(ConformanceError) as info:
        check_tokenizer("kit_nograd")
    assert info.value.check == "gradients_reach_the_parameters"
    assert str(info.value) == (
        "tokenizer 'kit_nograd': gradients_reach_the_parameters: tokens: the output does not depend on any "
        "learnable parameter (no gradient path)"
    )


class SloppyHeadConfig(ClassificationHeadConfig):
    type: str = "kit_sloppy"


class SloppyHead(ClassificationHead):
    """Pools over padding too and accepts targets of any batch size (broadcasting them)."""

    name: ClassVar[str] = "kit_sloppy"
    config_class = SloppyHeadConfig

    def forward(self, tokens: polymodal.Tokens) -> Tensor:
        return self.fc(self.norm(tokens.embeddings[:, tokens.prefix :].mean(1)))

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return (output.logsumexp(-1).mean() - output[:, 0].mean()) * target.float().mean()


def test_a_head_that_pools_padding_and_ignores_target_shapes_fails_the_named_checks(registered: list) -> None:
    _register(registered, SloppyHead)
    with pytest.raises(
        ConformanceError, match=r"head 'kit_sloppy': padding_does_not_change_a_sample: sample 0"
    ):
        check_head("kit_sloppy")
    from polymodal.testing import head_checks

    (targets,) = [
        c for c in head_checks("kit_sloppy") if c.name == "targets_of_another_batch_size_are_refused_clearly"
    ]
    with pytest.raises(ConformanceError, match="targets for 2 of 3 samples: was accepted"):
        targets()


def test_a_head_without_an_example_config_is_reported_not_raised(registered: list) -> None:
    class NeedsConfig(SloppyHeadConfig):
        type: str = "kit_needs"
        width: int

    class NeedsHead(SloppyHead):
        name: ClassVar[str] = "kit_needs"
        config_class = NeedsConfig

    _register(registered, NeedsHead)
    with pytest.raises(
        ConformanceError, match=r"head 'kit_needs': builds_from_its_examples: cannot build it from"
    ):
        check_head("kit_needs")

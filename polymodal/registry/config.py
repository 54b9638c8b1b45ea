"""Component configs resolved against the registry at validation time (names, dicts or config objects).

A component entry is a registry name (``"vit_tiny"``) or a dict with ``type`` and that component's fields. The
``type`` is looked up when the config is validated, so a plugin installed later is accepted, and a nested
error keeps its path (``tokenizers.image.patch_size: Input should be greater than 0``). Configs round-trip
through JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    SerializeAsAny,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from polymodal.core.component import ComponentConfig
from polymodal.core.encoders import EncoderConfig
from polymodal.core.heads import HeadConfig
from polymodal.core.tokenizer import TokenizerConfig
from polymodal.registry.errors import UnknownNameError
from polymodal.registry.lookup import get

__all__ = ["EncoderSpec", "HeadSpec", "TokenizerSpec", "resolve_config"]


def resolve_config(kind: str, value: Any) -> ComponentConfig:
    """Turn a name, dict or config object into the registered component's validated config."""
    if isinstance(value, str):
        value = {"type": value}
    if isinstance(value, ComponentConfig):
        cls = get(kind, value.type)
        if isinstance(value, cls.config_class):
            return value.model_copy(deep=True)  # the model fills in widths; never mutate the caller's object
        value = value.model_dump()
    if not isinstance(value, dict):
        raise ValueError(f"expected a {kind} name or a dict with 'type', got {type(value).__name__}")
    if "type" not in value:
        raise ValueError(
            f"a {kind} entry needs a 'type' (a registered {kind} name); got keys {sorted(value)}"
        )
    cls = get(kind, value["type"])
    return cls.config_class.model_validate(value)


def _resolver(kind: str) -> Callable[[Any, ValidatorFunctionWrapHandler], ComponentConfig]:
    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> ComponentConfig:
        try:
            return resolve_config(kind, value)
        except UnknownNameError as exc:
            raise ValueError(str(exc)) from None

    return validate


TokenizerSpec = Annotated[SerializeAsAny[TokenizerConfig], WrapValidator(_resolver("tokenizer"))]
EncoderSpec = Annotated[SerializeAsAny[EncoderConfig], WrapValidator(_resolver("encoder"))]
HeadSpec = Annotated[SerializeAsAny[HeadConfig], WrapValidator(_resolver("head"))]

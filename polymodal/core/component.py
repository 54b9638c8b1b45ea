"""What every registered component (tokenizer, encoder, head, data source) shares.

A component class names its registry ``name`` and its pydantic ``config_class``; hyperparameters are declared
once, as fields of that config, with bounds and descriptions. ``Component.from_config`` is the one build path.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

__all__ = ["Component", "ComponentConfig", "ModalityInputError"]


class ComponentConfig(BaseModel):
    """Base of every component's config: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    type: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of this config (round-trips through ``model_validate``)."""
        return self.model_dump(mode="json")


class Component:
    """Mixin for registered classes. Subclasses set ``name`` and ``config_class``.

    ``kind`` (``"tokenizer"``, ``"encoder"``, ``"head"``, ``"data source"``) is set by each family's base class
    and routes ``polymodal.register(cls)`` to the right registry table.
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    config_class: ClassVar[type[ComponentConfig]] = ComponentConfig

    @classmethod
    def default_config(cls, **overrides: Any) -> ComponentConfig:
        """This component's config with its defaults, optionally overridden."""
        return cls.config_class.model_validate({"type": cls.name, **overrides})

    @classmethod
    def coerce_config(cls, config: ComponentConfig | dict[str, Any] | None = None, **overrides: Any) -> Any:
        """Accept a config object, a dict, or keyword overrides, and return a validated config."""
        if isinstance(config, ComponentConfig):
            if not isinstance(config, cls.config_class):
                raise TypeError(
                    f"{cls.name}: expected a {cls.config_class.__name__} or a dict, got {type(config).__name__}"
                )
            if not overrides:
                return config
            config = config.model_dump()
        elif config is not None and not isinstance(config, dict):
            raise TypeError(
                f"{cls.name}: expected a {cls.config_class.__name__} or a dict, got {type(config).__name__}"
            )
        return cls.config_class.model_validate({"type": cls.name, **(config or {}), **overrides})

    @classmethod
    def from_config(cls, config: ComponentConfig | dict[str, Any] | None = None, **overrides: Any) -> Any:
        """Build the component from its config (a config object, a dict or keyword overrides)."""
        return cls(cls.coerce_config(config, **overrides))


class ModalityInputError(ValueError):
    """Malformed input for a modality. The message names the modality, the expectation and what came."""

    def __init__(self, modality: str, expected: str, got: str) -> None:
        self.modality, self.expected, self.got = modality, expected, got
        super().__init__(f"{modality}: expected {expected}, got {got}")

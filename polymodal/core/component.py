"""What every registered component (tokenizer, encoder, head, data source) shares.

A component class names its registry ``name`` and its pydantic ``config_class``; hyperparameters are declared
once, as fields of that config, with bounds and descriptions. ``Component.from_config`` is the one build path.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

__all__ = ["Component", "ComponentConfig", "LocalFile", "ModalityInputError", "local_file_fields"]


class _LocalFileMarker:
    """The metadata that marks a config field as the path of a local file (see :data:`LocalFile`)."""

    def __repr__(self) -> str:
        return "LocalFile"


LOCAL_FILE = _LocalFileMarker()

#: A config field holding the path of a local file a component reads (a vocabulary, a lookup table):
#: ``save_pretrained`` copies the file into the saved folder and stores its name relative to the folder, and
#: ``from_pretrained`` resolves that name against the folder, so a saved model can be moved.
LocalFile = Annotated[str | None, LOCAL_FILE]


def local_file_fields(config: BaseModel | type[BaseModel]) -> list[str]:
    """The names of a config's fields declared as :data:`LocalFile`, in declaration order."""
    cls = config if isinstance(config, type) else type(config)
    return [name for name, f in cls.model_fields.items() if any(m is LOCAL_FILE for m in f.metadata)]


def _numeric_kind(annotation: Any) -> str | None:
    """``"an integer"`` / ``"a number"`` when the annotation wants an int or a float (optionally in a union without
    ``bool``), where pydantic's lax mode would take ``True`` as 1; else ``None``."""
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if bool in args or Any in args:
            return None
        kinds = {_numeric_kind(a) for a in args} - {None}
        if kinds:
            return "a number" if "a number" in kinds else "an integer"
    return None


def _bool_for_number(value: Any, annotation: Any) -> str | None:
    """What ``annotation`` expects when ``value`` is a bool, or a list/tuple holding one, standing for a number
    (``tuple[int, int]``, ``tuple[float, ...]``, ``list[int]``, also inside a union); else ``None``."""
    if isinstance(value, bool):
        return _numeric_kind(annotation)
    if not isinstance(value, (list, tuple)) or not any(isinstance(v, bool) for v in value):
        return None
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    for option in options:
        origin, args = get_origin(option), get_args(option)
        if origin not in (tuple, list) or not args:
            continue
        for i, v in enumerate(value):
            ann = args[0] if origin is list or args[-1] is Ellipsis else (args[i] if i < len(args) else None)
            kind = _numeric_kind(ann) if isinstance(v, bool) else None
            if kind is not None:
                return f"{kind} at position {i}"
    return None


class ComponentConfig(BaseModel):
    """Base of every component's config: unknown keys are errors, assignments are validated, and a bool is
    refused where a field wants an integer or a number (pydantic would take ``True`` as 1)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    type: str

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        kind = _bool_for_number(value, field.annotation) if field is not None else None
        if kind is not None:
            got = f"the bool {value!r}" if isinstance(value, bool) else f"a bool in {value!r}"
            raise ValueError(f"{info.field_name}: expected {kind}, got {got}")
        return value

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

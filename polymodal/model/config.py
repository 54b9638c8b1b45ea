"""The config of a whole model (:class:`ModelConfig`): one shared encoder, a tokenizer per input, a head per task.

A component entry is a registry name (``"vit_tiny"``) or a dict with ``type`` and that component's fields. The
``type`` is looked up when the config is validated, so a plugin installed later is accepted, and a nested
error keeps its path (``tokenizers.image.patch_size: Input should be greater than 0``). Configs round-trip
through JSON.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from polymodal.registry.config import EncoderSpec, HeadSpec, TokenizerSpec, resolve_config

__all__ = ["ModelConfig"]


class ModelConfig(BaseModel):
    """A whole model: one shared encoder, one tokenizer per input, one head per task.

    ``tokenizers`` maps an input key (usually the modality name) to a tokenizer; ``heads`` maps a task name to a
    head, which reads the tokens of ``head.modality`` (default: the task's own key). Widths (``embed_dim``) of
    tokenizers and heads are taken from the encoder unless set, in which case they must match.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=False, protected_namespaces=())

    encoder: EncoderSpec = Field(default_factory=lambda: resolve_config("encoder", "vit_base"))  # type: ignore[assignment]
    tokenizers: dict[str, TokenizerSpec] = Field(..., min_length=1, description="Input key -> tokenizer.")
    heads: dict[str, HeadSpec] = Field(default_factory=dict, description="Task name -> head.")
    cls_token: bool = Field(True, description="Prepend a learned [CLS] token per input.")
    modality_embedding: bool = Field(True, description="Add a learned embedding that tells inputs apart.")
    fusion: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Early fusion: fused input key -> the inputs (two or more) whose token sequences are "
        "concatenated, in this order, into one sequence before the encoder; heads read the fused key.",
    )
    check_finite: bool = Field(
        True,
        description="Check that every input's tokens, every head's output and every loss are finite, and raise an "
        "error naming the input or task otherwise (one torch.isfinite(...).all() per tensor); False skips them.",
    )

    @model_validator(mode="after")
    def _wire(self) -> ModelConfig:
        width = self.encoder.embed_dim
        for section, entries in (("tokenizers", self.tokenizers), ("heads", self.heads)):
            for key, cfg in entries.items():
                if "embed_dim" not in cfg.model_fields_set:
                    cfg.embed_dim = width
                elif cfg.embed_dim != width:
                    raise ValueError(
                        f"{section}.{key}.embed_dim is {cfg.embed_dim} but the encoder "
                        f"{self.encoder.type!r} has width {width}; leave it unset to follow the encoder"
                    )
        for key, members in self.fusion.items():
            if key in self.tokenizers or len(members) < 2 or len(set(members)) != len(members):
                raise ValueError(
                    f"fusion.{key}: expected a new key fusing two or more distinct inputs, got {members}"
                )
            unknown = sorted(set(members) - set(self.tokenizers))
            if unknown:
                raise ValueError(f"fusion.{key}: inputs {unknown} have no tokenizer")
        inputs = sorted([*self.tokenizers, *self.fusion])
        for task, head in self.heads.items():
            unknown = [k for k in head.inputs(task) if k not in inputs]
            if unknown:
                raise ValueError(
                    f"heads.{task} reads inputs {unknown}, which have no tokenizer; inputs: {', '.join(inputs)} "
                    "(set the head's 'modality')"
                )
        return self

    def input_of(self, task: str) -> str:
        """The (first) input key a task's head reads."""
        return self.heads[task].inputs(task)[0]

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        """Read a model config from an mmengine config file (``.py``/``.json``/``.yaml``), its ``model`` section
        if it has one; a ``type`` key naming the model class is ignored."""
        from mmengine.config import Config

        cfg = Config.fromfile(str(path)).to_dict()
        model = dict(cfg.get("model", cfg))
        model.pop("type", None)
        model.pop("data_preprocessor", None)
        return cls.model_validate(model)

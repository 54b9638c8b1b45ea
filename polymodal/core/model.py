"""``MultimodalModel``: tokenizers -> one shared encoder -> heads (F = h ∘ g ∘ f), as an mmengine ``BaseModel``.

Input: a dict ``{input_key: batch}`` with any subset of the model's inputs. Each tokenizer gives ``Tokens``;
the model adds a learned modality embedding and prepends a learned [CLS] per input, the encoder encodes all
inputs of the step in one call, and every head whose input is present predicts. Output (``mode="tensor"``):
``{task: output}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from mmengine.model import BaseModel
from torch import Tensor, nn

from polymodal.core.tokens import Tokens
from polymodal.registry.config import ModelConfig
from polymodal.registry.tables import MODELS, get

__all__ = ["MultimodalModel", "build_model"]


@MODELS.register_module()
class MultimodalModel(BaseModel):
    """One shared encoder, a tokenizer per input and a head per task.

    Args:
        config: a :class:`ModelConfig`, or a dict of its fields. Keyword arguments are its fields too, which is
            how mmengine's Runner builds it from ``model = dict(type="MultimodalModel", ...)``.
        data_preprocessor: mmengine data preprocessor config (moves batches to the device).
    """

    def __init__(
        self,
        config: ModelConfig | Mapping[str, Any] | None = None,
        data_preprocessor: dict[str, Any] | nn.Module | None = None,
        init_cfg: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if isinstance(config, ModelConfig):
            if fields:
                config = config.model_copy(update=fields)
                config = ModelConfig.model_validate(config.model_dump())
        else:
            config = ModelConfig.model_validate({**dict(config or {}), **fields})
        self.config = config
        dim = config.encoder.embed_dim
        self.encoder = get("encoder", config.encoder.type)(config.encoder)
        self.tokenizers = nn.ModuleDict(
            {key: get("tokenizer", cfg.type)(cfg) for key, cfg in config.tokenizers.items()}
        )
        self.heads = nn.ModuleDict({task: get("head", cfg.type)(cfg) for task, cfg in config.heads.items()})
        self.cls_tokens = nn.ParameterDict(
            {key: nn.Parameter(torch.zeros(1, 1, dim)) for key in config.tokenizers}
            if config.cls_token
            else {}
        )
        self.modality_embeddings = nn.ParameterDict(
            {key: nn.Parameter(torch.zeros(1, 1, dim)) for key in config.tokenizers}
            if config.modality_embedding
            else {}
        )
        for p in (*self.cls_tokens.values(), *self.modality_embeddings.values()):
            nn.init.trunc_normal_(p, std=0.02)

    # -- the forward path ---------------------------------------------------------------------------------------
    def tokenize(self, inputs: Mapping[str, Any]) -> dict[str, Tokens]:
        """Tokenize each present input and add the model's modality embedding and [CLS]."""
        unknown = sorted(set(inputs) - set(self.tokenizers))
        if unknown:
            raise KeyError(
                f"inputs {unknown} have no tokenizer in this model; inputs it takes: {sorted(self.tokenizers)}"
            )
        if not inputs:
            raise ValueError(f"no inputs given; this model takes {sorted(self.tokenizers)}")
        out = {}
        for key, batch in inputs.items():
            tokens = self.tokenizers[key](batch)
            x, mask = tokens.embeddings, tokens.mask
            if key in self.modality_embeddings:
                x = x + self.modality_embeddings[key].to(x.dtype)
            prefix = 0
            if key in self.cls_tokens:
                cls = self.cls_tokens[key].to(x.dtype).expand(x.shape[0], -1, -1)
                if key in self.modality_embeddings:
                    cls = cls + self.modality_embeddings[key].to(x.dtype)
                x = torch.cat([cls, x], dim=1)
                mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
                prefix = 1
            out[key] = tokens.replace(embeddings=x, mask=mask, modality=key, prefix=tokens.prefix + prefix)
        return out

    def encode(self, inputs: Mapping[str, Any]) -> dict[str, Tokens]:
        """Tokenize every input and run all of them through the shared encoder in one call."""
        tokens = self.tokenize(inputs)
        encoded = self.encoder(list(tokens.values()))
        return dict(zip(tokens, encoded))

    def forward(
        self,
        inputs: Mapping[str, Any],
        data_samples: Mapping[str, Tensor] | None = None,
        mode: str = "tensor",
    ) -> dict[str, Any]:
        """Run the model.

        Args:
            inputs: ``{input_key: batch}``; any subset of the model's inputs.
            data_samples: ``{task: target}`` for ``mode="loss"``.
            mode: ``"tensor"`` -> ``{task: output}``; ``"loss"`` -> ``{"loss_<task>": weighted loss}``;
                ``"predict"`` -> ``{task: prediction}``.
        """
        encoded = self.encode(inputs)
        outputs = {
            task: head(encoded[self.config.input_of(task)])
            for task, head in self.heads.items()
            if self.config.input_of(task) in encoded
        }
        if mode == "tensor":
            return outputs
        if mode == "predict":
            return {task: self.heads[task].predict(out) for task, out in outputs.items()}
        if mode == "loss":
            targets = data_samples or {}
            missing = sorted(set(outputs) - set(targets))
            if missing:
                raise KeyError(
                    f"mode='loss' needs targets for tasks {missing}; got targets for {sorted(targets)}"
                )
            return {
                f"loss_{task}": self.heads[task].loss(out, targets[task])
                * self.config.heads[task].loss_weight
                for task, out in outputs.items()
            }
        raise ValueError(f"mode must be 'tensor', 'predict' or 'loss', got {mode!r}")

    # -- persistence --------------------------------------------------------------------------------------------
    def config_json(self) -> str:
        return json.dumps(self.config.model_dump(mode="json"), indent=2)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (each file atomically)."""
        from polymodal.core.checkpoint import save_pretrained

        return save_pretrained(self, directory)


def build_model(
    config: ModelConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    modalities: list[str] | None = None,
    encoder: str | Mapping[str, Any] | None = None,
    tokenizers: Mapping[str, Any] | None = None,
    heads: Mapping[str, Any] | None = None,
    **fields: Any,
) -> MultimodalModel:
    """Build a :class:`MultimodalModel`.

    Accepts registry names (``build_model(modalities=["image"], encoder="vit_tiny", heads={"image":
    {"type": "classification", "num_classes": 10}})``), a dict of :class:`ModelConfig` fields, a ``ModelConfig``,
    or the path of an mmengine config file (its ``model`` section). Keyword arguments override the config.
    """
    if isinstance(config, (str, Path)):
        base: dict[str, Any] = ModelConfig.from_file(config).model_dump()
    elif isinstance(config, ModelConfig):
        base = config.model_dump()
    else:
        base = dict(config or {})
    merged_tokenizers = dict(base.get("tokenizers", {}))
    for m in modalities or []:
        merged_tokenizers.setdefault(m, m)
    merged_tokenizers.update(tokenizers or {})
    if merged_tokenizers:
        base["tokenizers"] = merged_tokenizers
    if encoder is not None:
        base["encoder"] = encoder
    if heads is not None:
        base["heads"] = {**base.get("heads", {}), **heads}
    base.update(fields)
    return MultimodalModel(ModelConfig.model_validate(base))

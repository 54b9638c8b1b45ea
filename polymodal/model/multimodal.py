"""``MultimodalModel``: tokenizers -> one shared encoder -> heads (F = h ∘ g ∘ f), as an mmengine ``BaseModel``.

Input: a dict ``{input_key: batch}`` with any subset of the model's inputs. Each tokenizer gives ``Tokens``;
the model adds a learned modality embedding and prepends a learned [CLS] per input, the encoder encodes all
inputs of the step in one call, and every head whose inputs are present predicts. Output (``mode="tensor"``):
``{task: output}``; ``mode="loss"``: ``{"loss_<task>": weighted loss}``; ``mode="predict"``: ``{task: prediction}``.

Early fusion (``ModelConfig.fusion``, e.g. ``{"image_audio": ["image", "audio"]}``): when every member of a group
is in the batch, their token sequences (each with its own modality embedding) are concatenated, in order, behind
one [CLS] of the fused key, and go through the encoder as one sequence that heads read as ``"image_audio"``. A
member is also encoded on its own only if some head reads it directly.

Checks on the way (they name the input or the task): unknown input keys; every input's tokens finite; every head's
output finite; targets checked by their head (``Head.check_target``: class indices in range, integer, of the right
shape, finite values, …) in training (``mode="loss"``) and in evaluation (``mode="evaluate"``), raising a
:class:`~polymodal.core.heads.TargetError` that names the task; every loss finite. The finiteness checks cost one
``torch.isfinite(x).all()`` per tensor; ``ModelConfig.check_finite=False`` (or ``model.check_finite = False``)
skips them. Under ``torch.compile`` / ``torch.export`` the output and loss checks are in-graph assertions
(``torch._assert_async``: a ``RuntimeError`` naming the task) and the tokens are checked by their tokenizers only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from mmengine.model import BaseDataPreprocessor, BaseModel
from torch import Tensor, nn

from polymodal.core.component import ModalityInputError
from polymodal.core.encoders.pretrained import LoadReport, load_vit_weights
from polymodal.core.heads import Head, TargetError
from polymodal.core.tokenizer import tracing
from polymodal.core.tokens import Tokens
from polymodal.model.checkpoint import load_pretrained, save_pretrained
from polymodal.model.config import ModelConfig
from polymodal.model.hub import push_to_hub, resolve_pretrained
from polymodal.registry.lookup import component_class
from polymodal.registry.tables import MODELS

__all__ = [
    "MultimodalDataPreprocessor",
    "MultimodalModel",
    "NonFiniteError",
    "build_model",
    "from_pretrained",
]


class NonFiniteError(ValueError):
    """NaN or Inf where the model needs finite values (a task's output, a loss). The message names the task."""


def _assert_finite_traced(x: Any, message: str) -> None:
    """While torch.compile / torch.export traces: an in-graph assertion that ``x`` is finite (no graph break)."""
    if isinstance(x, Tensor) and x.is_floating_point():
        torch._assert_async(torch.isfinite(x).all(), message)


def _count_non_finite(x: Tensor) -> int:
    """NaN/Inf entries of ``x`` (0 for an integer tensor); the common case costs one ``isfinite(...).all()``."""
    if not x.is_floating_point() or bool(torch.isfinite(x).all()):
        return 0
    return int((~torch.isfinite(x)).sum())


@MODELS.register_module()
class MultimodalDataPreprocessor(BaseDataPreprocessor):
    """Moves a batch ``{"inputs": …, "data_samples": …}`` to the model's device.

    Tensors, and any object with a ``.to(device)`` method (a PyG ``Batch``, ``Tokens``), are moved; mappings,
    lists, tuples and named tuples are walked; everything else (strings, numbers, ``None``) is kept.
    """

    def cast_data(self, data: Any) -> Any:
        if data is None or isinstance(data, (str, bytes, int, float, bool)):
            return data
        if isinstance(data, Tensor):
            return data.to(self.device, non_blocking=self._non_blocking)
        if isinstance(data, Mapping):
            return {k: self.cast_data(v) for k, v in data.items()}
        if isinstance(data, tuple) and hasattr(data, "_fields"):  # named tuple
            return type(data)(*(self.cast_data(v) for v in data))
        if isinstance(data, (list, tuple)):
            return type(data)(self.cast_data(v) for v in data)
        to = getattr(data, "to", None)
        if callable(to):
            return to(self.device)
        return data


@MODELS.register_module()
class MultimodalModel(BaseModel):
    """One shared encoder, a tokenizer per input and a head per task.

    Args:
        config: a :class:`ModelConfig`, or a dict of its fields. Keyword arguments are its fields too, which is
            how mmengine's Runner builds it from ``model = dict(type="MultimodalModel", ...)``.
        data_preprocessor: mmengine data preprocessor (config or module); default
            :class:`MultimodalDataPreprocessor`, which moves batches to the device.
        init_cfg: mmengine weight-init config (rarely needed: components initialise themselves).

    Attributes:
        check_finite: check that tokens, outputs and losses are finite (from ``config.check_finite``; set it to
            ``False`` to skip the checks, e.g. in a tuned production loop).
    """

    def __init__(
        self,
        config: ModelConfig | Mapping[str, Any] | None = None,
        data_preprocessor: dict[str, Any] | nn.Module | None = None,
        init_cfg: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        if data_preprocessor is None:
            data_preprocessor = MultimodalDataPreprocessor()
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if isinstance(config, ModelConfig):
            if fields:
                config = config.model_copy(update=fields)
                config = ModelConfig.model_validate(config.model_dump())
        else:
            config = ModelConfig.model_validate({**dict(config or {}), **fields})
        self.config = config
        self.check_finite = config.check_finite
        dim = config.encoder.embed_dim
        self.encoder = component_class("encoder", config.encoder)(config.encoder)
        self.tokenizers = nn.ModuleDict(
            {key: component_class("tokenizer", cfg)(cfg) for key, cfg in config.tokenizers.items()}
        )
        self.heads = nn.ModuleDict(
            {task: component_class("head", cfg)(cfg) for task, cfg in config.heads.items()}
        )
        keys = [*config.tokenizers, *config.fusion]
        self.cls_tokens = nn.ParameterDict(
            {key: nn.Parameter(torch.zeros(1, 1, dim)) for key in keys} if config.cls_token else {}
        )
        self.modality_embeddings = nn.ParameterDict(
            {key: nn.Parameter(torch.zeros(1, 1, dim)) for key in keys} if config.modality_embedding else {}
        )
        for p in (*self.cls_tokens.values(), *self.modality_embeddings.values()):
            nn.init.trunc_normal_(p, std=0.02)
        self.head_inputs = {task: head.inputs(task) for task, head in config.heads.items()}
        self._read_directly = {k for ks in self.head_inputs.values() for k in ks if k in config.tokenizers}

    # -- the forward path ---------------------------------------------------------------------------------------
    def _check_inputs(self, inputs: Mapping[str, Any]) -> None:
        if not isinstance(inputs, Mapping):
            raise TypeError(f"inputs must be a dict {{input_key: batch}}, got {type(inputs).__name__}")
        unknown = sorted(set(inputs) - set(self.tokenizers))
        if unknown:
            raise KeyError(
                f"inputs: expected keys among {sorted(self.tokenizers)} (the inputs this model has tokenizers for), "
                f"got unknown {unknown}"
            )
        if not inputs:
            raise ValueError(f"no inputs given; this model takes {sorted(self.tokenizers)}")

    def _with_modality(self, key: str, tokens: Tokens) -> Tensor:
        x = tokens.embeddings
        if key in self.modality_embeddings:
            x = x + self.modality_embeddings[key].to(x.dtype)
        return x

    def _with_cls(self, key: str, tokens: Tokens, x: Tensor, mask: Tensor) -> Tokens:
        prefix = 0
        if key in self.cls_tokens:
            cls = self.cls_tokens[key].to(x.dtype).expand(x.shape[0], -1, -1)
            if key in self.modality_embeddings:
                cls = cls + self.modality_embeddings[key].to(x.dtype)
            x = torch.cat([cls, x], dim=1)
            mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
            prefix = 1
        return tokens.replace(embeddings=x, mask=mask, modality=key, prefix=tokens.prefix + prefix)

    def fusion_groups(self, inputs: Mapping[str, Any]) -> dict[str, list[str]]:
        """The fusion groups all of whose members are in ``inputs``."""
        return {k: m for k, m in self.config.fusion.items() if all(x in inputs for x in m)}

    def tokenize(self, inputs: Mapping[str, Any]) -> dict[str, Tokens]:
        """Tokenize the present inputs, add modality embeddings and [CLS], and build fused sequences."""
        self._check_inputs(inputs)
        groups = self.fusion_groups(inputs)
        fused_members = {m for members in groups.values() for m in members}
        raw = {key: self.tokenizers[key](batch) for key, batch in inputs.items()}
        # tokenizers check their own output (in-graph under tracing); this covers one that does not, in eager mode
        if self.check_finite and not tracing():
            for key, tokens in raw.items():
                bad = _count_non_finite(tokens.embeddings)
                if bad:
                    raise ModalityInputError(
                        key,
                        "finite tokens",
                        f"{bad} NaN/Inf of {tokens.embeddings.numel()} token values from the tokenizer "
                        f"{self.config.tokenizers[key].type!r}; input values may be too large to represent after the "
                        "tokenizer's projection (scale them down)",
                    )
        out = {}
        for key, tokens in raw.items():
            if key not in fused_members or key in self._read_directly:
                out[key] = self._with_cls(key, tokens, self._with_modality(key, tokens), tokens.mask)
        for key, members in groups.items():
            several = {m: raw[m].rows_per_sample for m in members if raw[m].rows_per_sample != 1}
            if several:
                raise ValueError(
                    f"fusion.{key}: members need one token sequence per sample, got {several} rows per sample "
                    "(their tokenizers make one sequence per channel); configure them to make one per sample"
                )
            sizes = {m: raw[m].batch_size for m in members}
            if len(set(sizes.values())) != 1:
                raise ValueError(f"fusion.{key}: members need one row per sample, got batch sizes {sizes}")
            x = torch.cat([self._with_modality(m, raw[m]) for m in members], dim=1)
            mask = torch.cat([raw[m].mask for m in members], dim=1)
            fused = Tokens(x, mask, key, {m: raw[m].meta for m in members})
            out[key] = self._with_cls(key, fused, x, mask)
        return out

    def encode(self, inputs: Mapping[str, Any]) -> dict[str, Tokens]:
        """Tokenize every input and run all of them through the shared encoder in one call."""
        tokens = self.tokenize(inputs)
        encoded = self.encoder(list(tokens.values()))
        return dict(zip(tokens, encoded))

    def head_outputs(self, encoded: Mapping[str, Tokens]) -> dict[str, Tensor]:
        """``{task: output}`` for every head whose inputs were encoded (each checked finite, see ``check_finite``)."""
        outputs = {
            task: head(*(encoded[k] for k in self.head_inputs[task]))
            for task, head in self.heads.items()
            if all(k in encoded for k in self.head_inputs[task])
        }
        if self.check_finite and tracing():
            for task, out in outputs.items():
                _assert_finite_traced(out, f"{task}: expected finite outputs, got NaN/Inf in the head output")
        elif self.check_finite:
            for task, out in outputs.items():
                bad = _count_non_finite(out) if isinstance(out, Tensor) else 0
                if bad:
                    raise NonFiniteError(
                        f"{task}: expected finite outputs, got {bad} NaN/Inf of {out.numel()} values in the "
                        f"{self.config.heads[task].type!r} head's output {tuple(out.shape)}; the tokens of "
                        f"{list(self.head_inputs[task])} were finite, so values overflowed in the encoder or the head "
                        "(inputs of too large a magnitude, or weights that diverged in training)"
                    )
        return outputs

    def _target(self, task: str, output: Tensor, encoded: Mapping[str, Tokens], target: Any) -> Any:
        """``target`` aligned to the encoded tokens and checked by the task's head (``align_target``, then
        ``check_target``); a :class:`TargetError` names the task."""
        head = self.heads[task]
        try:
            target = head.align_target(encoded[self.head_inputs[task][0]], target)
            return head.check_target(output, target)
        except TargetError as exc:
            raise exc.for_task(task) from None

    @staticmethod
    def _loss(task: str, head: Head, output: Tensor, target: Any) -> Tensor:
        try:
            return head.loss(output, target)
        except TargetError as exc:
            raise exc.for_task(task) from None

    def forward(
        self,
        inputs: Mapping[str, Any],
        data_samples: Mapping[str, Any] | None = None,
        mode: str = "tensor",
    ) -> dict[str, Any]:
        """Run the model.

        Args:
            inputs: ``{input_key: batch}``; any subset of the model's inputs.
            data_samples: ``{task: target}`` for ``mode="loss"``.
            mode: ``"tensor"`` -> ``{task: output}``; ``"loss"`` -> ``{"loss_<task>": weighted loss}``;
                ``"predict"`` -> ``{task: prediction}``; ``"evaluate"`` -> ``[{task: record}]``, what
                mmengine's evaluator consumes (see :meth:`evaluation_records`).
        """
        if mode not in ("tensor", "predict", "loss", "evaluate"):
            raise ValueError(f"mode must be 'tensor', 'predict', 'loss' or 'evaluate', got {mode!r}")
        encoded = self.encode(inputs)
        outputs = self.head_outputs(encoded)
        if mode == "tensor":
            return outputs
        if mode == "predict":
            return {task: self.heads[task].predict(out) for task, out in outputs.items()}
        if mode == "evaluate":
            return [self.evaluation_records(outputs, encoded, data_samples or {})]
        return self.losses(outputs, encoded, data_samples or {})

    def losses(
        self, outputs: Mapping[str, Tensor], encoded: Mapping[str, Tokens], targets: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        """``{"loss_<task>": loss * loss_weight}`` for every task with an output."""
        if not outputs:
            raise ValueError(
                f"mode='loss': no head reads the inputs {sorted(encoded)}; heads read "
                f"{ {t: list(k) for t, k in self.head_inputs.items()} }"
            )
        missing = sorted(t for t in outputs if t not in targets and self.heads[t].requires_target)
        if missing:
            raise KeyError(
                f"mode='loss' needs targets for tasks {missing}; got targets for {sorted(targets)}"
            )
        losses = {}
        for task, out in outputs.items():
            target = targets.get(task)
            if target is not None:
                target = self._target(task, out, encoded, target)
            loss = self._loss(task, self.heads[task], out, target)
            if self.check_finite and tracing():
                _assert_finite_traced(loss, f"{task}: expected a finite loss, got NaN/Inf")
            elif self.check_finite and isinstance(loss, Tensor) and _count_non_finite(loss):
                raise NonFiniteError(
                    f"{task}: expected a finite loss, got {loss.detach().float().cpu().tolist()} from finite outputs"
                    " and targets (values overflowed in the loss: scale the targets down, or lower the learning "
                    "rate if training diverged)"
                )
            losses[f"loss_{task}"] = loss * self.config.heads[task].loss_weight
        return losses

    # -- evaluation (mmengine's ValLoop / TestLoop) ---------------------------------------------------------------
    def evaluation_records(
        self, outputs: Mapping[str, Tensor], encoded: Mapping[str, Tokens], targets: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """Per task: ``pred`` (``head.predict``), ``score`` (``head.scores``, float32, e.g. probabilities ``[B, C]``,
        when one of the head's metrics ranks scores (``uses_scores``: AUROC, average precision, top-k accuracy),
        else ``None``), the aligned ``target`` (or ``None``), the head's metric names and parameters, all on the
        CPU: what :class:`polymodal.train.metrics.MultiTaskMetric` consumes (and gathers across processes)."""
        from polymodal.registry.lookup import get

        records = {}
        for task, out in outputs.items():
            head = self.heads[task]
            target = targets.get(task)
            if target is not None:
                target = self._target(task, out, encoded, target)
            pred = head.predict(out).detach()
            score = None
            if any(get("metric", name).uses_scores for name in head.metrics):
                score = head.scores(out)
                score = score.detach().float().cpu() if isinstance(score, Tensor) else score
            records[task] = {
                "pred": (pred.float() if pred.is_floating_point() else pred).cpu(),
                "score": score,
                "target": target.detach().cpu() if isinstance(target, Tensor) else target,
                "metrics": tuple(head.metrics),
                "params": head.metric_params(),
            }
        return records

    def val_step(self, data: dict | tuple | list) -> list[dict[str, dict[str, Any]]]:
        """One evaluation batch ``{"inputs", "data_samples"}`` -> ``[evaluation records]`` (a one-element list:
        mmengine's evaluator iterates over what this returns)."""
        data = self.data_preprocessor(data, False)
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a batch dict {{'inputs', 'data_samples'}}, got {type(data).__name__}")
        return self._run_forward(data, mode="evaluate")

    def test_step(self, data: dict | tuple | list) -> list[dict[str, dict[str, Any]]]:
        return self.val_step(data)

    # -- persistence --------------------------------------------------------------------------------------------
    def config_json(self) -> str:
        """The config as saved: with the encoder's current config (its freeze policy or LayerNorm eps may have
        changed since the model was built, e.g. by set_freeze or by loading a pretrained file)."""
        config = self.config.model_copy(update={"encoder": self.encoder.config})
        return json.dumps(config.model_dump(mode="json"), indent=2)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (each file atomically)."""
        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        modalities: Sequence[str] | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        local_files_only: bool = True,
    ) -> MultimodalModel:
        """Rebuild a model written by :meth:`save_pretrained` (a local folder) or :meth:`push_to_hub` (a Hub repo
        id ``"org/name"``); see :func:`polymodal.from_pretrained`."""
        directory = resolve_pretrained(
            name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
        )
        return load_pretrained(cls, directory, modalities, device=device, dtype=dtype)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        card_metadata: Mapping[str, Any] | None = None,
    ) -> Any:
        """Upload the model to the Hugging Face Hub repo ``repo_id`` (``"org/name"``, created if missing): what
        :meth:`save_pretrained` writes and a generated model card (``README.md``: inputs and tokenizers, encoder, heads
        with classes and metrics, ``library_name: polymodal``). Returns the Hub's ``CommitInfo``; read it back with
        ``polymodal.from_pretrained(repo_id)``. See :func:`polymodal.model.hub.push_to_hub`."""
        return push_to_hub(
            self,
            repo_id,
            commit_message=commit_message,
            private=private,
            token=token,
            revision=revision,
            create_pr=create_pr,
            card_metadata=card_metadata,
        )

    # -- export -----------------------------------------------------------------------------------------------
    def export(self, example_inputs: Mapping[str, Any], **kwargs: Any) -> Any:
        """``torch.export`` the tensor forward (tokenizers' batch tensors -> ``{task: output}``) for inputs shaped
        like ``example_inputs``: an ``ExportedProgram`` (see :func:`polymodal.model.export.export_program`)."""
        from polymodal.model.export import export_program

        return export_program(self, example_inputs, **kwargs)

    def export_onnx(self, example_inputs: Mapping[str, Any], path: str | Path, **kwargs: Any) -> Path:
        """Write the tensor forward as an ONNX file (see :func:`polymodal.model.export.export_onnx`)."""
        from polymodal.model.export import export_onnx

        return export_onnx(self, example_inputs, path, **kwargs)

    def load_pretrained_image(
        self, path: str | Path, key: str = "image", *, strict: bool | None = None
    ) -> LoadReport:
        """Load a whole ViT image model from a local timm or OpenCLIP file into the input ``key``: its tokenizer's
        patch embedding and positions, its [CLS] (the file's class token with its position added), its modality
        embedding (set to zero), and the encoder's blocks and norms. The tokens ``encode({key: x})[key]`` then equal
        timm's ``forward_features(x)`` (OpenCLIP: the tokens after ``ln_post``) when the tokenizer has the file's
        patch and image size and the encoder its width, depth, heads, ``pre_norm`` / ``final_norm`` and activation
        (the epsilon is set for OpenCLIP; timm's is the config's).

        All or nothing (:func:`~polymodal.core.encoders.pretrained.load_vit_weights`): anything that does not fit
        raises a :class:`~polymodal.core.encoders.pretrained.PretrainedLoadError` naming it before a weight changes.
        ``strict`` defaults to the encoder's ``pretrained_strict``. Returns the report, which is also logged; an
        epsilon it sets is written to ``config.encoder`` too, so :meth:`save_pretrained` keeps it.
        """
        if key not in self.tokenizers:
            raise KeyError(
                f"load_pretrained_image: no input {key!r}; this model has tokenizers for {sorted(self.tokenizers)}"
            )
        if strict is None:
            strict = getattr(self.encoder.config, "pretrained_strict", True)
        report = load_vit_weights(
            path,
            tokenizer=self.tokenizers[key],
            encoder=self.encoder,
            cls_token=self.cls_tokens[key] if key in self.cls_tokens else None,
            modality_embedding=self.modality_embeddings[key] if key in self.modality_embeddings else None,
            strict=strict,
            name=key,
        )
        for name, (_, value) in report.settings.items():
            setattr(self.config.encoder, name, value)
        return report


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
    if isinstance(modalities, (str, bytes)):
        raise TypeError(
            f"modalities: expected a list of names, got the string {modalities!r}; did you mean [{modalities!r}]?"
        )
    for name, value in (("tokenizers", tokenizers), ("heads", heads)):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{name}: expected a dict {{key: name or config}}, got {type(value).__name__}")
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


def from_pretrained(
    name_or_path: str | Path,
    modalities: Sequence[str] | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = True,
) -> MultimodalModel:
    """Rebuild a :class:`MultimodalModel` saved with ``save_pretrained``, or pushed with ``push_to_hub``.

    Args:
        name_or_path: the folder holding ``config.json`` and ``model.safetensors`` (always the first meaning of a
            name that exists), or a Hugging Face Hub repo id ``"org/name"``: only its ``config.json``,
            ``model.safetensors`` and ``files/`` are read from the Hugging Face cache (fetched into it only with
            ``local_files_only=False``), then read like a folder.
        modalities: keep only these inputs (and the heads and fusion groups that read only them); only their
            weights are read from the file.
        device: where to put the model (default CPU).
        dtype: cast floating-point weights to this dtype (default: as saved).
        revision: a branch, tag or commit of the Hub repo (default: its main branch).
        cache_dir: the Hugging Face cache (default ``HF_HUB_CACHE``).
        token: a Hub token for a private or gated repo (default: the stored login, or ``HF_TOKEN``).
        local_files_only: ``True`` (the default): read a Hub repo from the cache only, never the network;
            ``False`` downloads what the cache lacks (unless ``HF_HUB_OFFLINE=1``).

    Both are checked alike: safetensors only, the SHA-256 of the config and files recorded with the weights, shapes,
    keys and finite values. The model is returned in eval mode.
    """
    return MultimodalModel.from_pretrained(
        name_or_path,
        modalities,
        device=device,
        dtype=dtype,
        revision=revision,
        cache_dir=cache_dir,
        token=token,
        local_files_only=local_files_only,
    )

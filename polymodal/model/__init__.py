"""Model assembly above the registry: the model config, the multimodal model (tokenizers -> shared encoder ->
heads) and saving/loading whole models, in local folders and on the Hugging Face Hub."""

from polymodal.model.checkpoint import atomic_write, save_pretrained, select_modalities
from polymodal.model.config import ModelConfig
from polymodal.model.export import TensorForward, export_onnx, export_program
from polymodal.model.hub import model_card, push_to_hub, resolve_pretrained
from polymodal.model.multimodal import (
    MultimodalDataPreprocessor,
    MultimodalModel,
    NonFiniteError,
    build_model,
    from_pretrained,
)

__all__ = [
    "ModelConfig",
    "MultimodalDataPreprocessor",
    "MultimodalModel",
    "NonFiniteError",
    "TensorForward",
    "atomic_write",
    "build_model",
    "export_onnx",
    "export_program",
    "from_pretrained",
    "model_card",
    "push_to_hub",
    "resolve_pretrained",
    "save_pretrained",
    "select_modalities",
]

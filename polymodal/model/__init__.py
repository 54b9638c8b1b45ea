"""Model assembly above the registry: the model config, the multimodal model (tokenizers -> shared encoder ->
heads) and saving/loading whole models."""

from polymodal.model.checkpoint import atomic_write, save_pretrained, select_modalities
from polymodal.model.config import ModelConfig
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
    "atomic_write",
    "build_model",
    "from_pretrained",
    "save_pretrained",
    "select_modalities",
]

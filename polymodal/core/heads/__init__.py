"""Task heads ``h``: the interface (:mod:`.base`) and the built-in heads, one per module."""

from polymodal.core.heads.base import (
    IGNORE_INDEX,
    Head,
    HeadConfig,
    TargetError,
    check_class_indices,
    check_multi_hot,
    check_target_tensor,
    check_value_target,
    pool_tokens,
)
from polymodal.core.heads.classification import ClassificationHead, ClassificationHeadConfig
from polymodal.core.heads.embedding import EmbeddingHead, EmbeddingHeadConfig, info_nce
from polymodal.core.heads.regression import RegressionHead, RegressionHeadConfig, mse_loss
from polymodal.core.heads.token_classification import TokenClassificationHead, TokenClassificationHeadConfig

HEAD_CLASSES = (ClassificationHead, RegressionHead, TokenClassificationHead, EmbeddingHead)

__all__ = [
    "HEAD_CLASSES",
    "IGNORE_INDEX",
    "ClassificationHead",
    "ClassificationHeadConfig",
    "EmbeddingHead",
    "EmbeddingHeadConfig",
    "Head",
    "HeadConfig",
    "RegressionHead",
    "RegressionHeadConfig",
    "TargetError",
    "TokenClassificationHead",
    "TokenClassificationHeadConfig",
    "check_class_indices",
    "check_multi_hot",
    "check_target_tensor",
    "check_value_target",
    "info_nce",
    "mse_loss",
    "pool_tokens",
]

"""Modality-agnostic machinery: tokens, component interfaces, the shared encoder, heads and the model."""

from polymodal.core.component import Component, ComponentConfig, ModalityInputError
from polymodal.core.encoders import Encoder, EncoderConfig, TransformerEncoder, TransformerEncoderConfig
from polymodal.core.heads import ClassificationHead, ClassificationHeadConfig, Head, HeadConfig
from polymodal.core.source import DataSource, DataSourceConfig
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, describe
from polymodal.core.tokens import Tokens

__all__ = [
    "ClassificationHead",
    "ClassificationHeadConfig",
    "Component",
    "ComponentConfig",
    "DataSource",
    "DataSourceConfig",
    "Encoder",
    "EncoderConfig",
    "Head",
    "HeadConfig",
    "ModalityInputError",
    "Tokenizer",
    "TokenizerConfig",
    "Tokens",
    "TransformerEncoder",
    "TransformerEncoderConfig",
    "check_tensor",
    "describe",
]

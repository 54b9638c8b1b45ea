"""polymodal: unified multimodal learning (Meta-Transformer, arXiv 2307.10802).

Every modality is turned into tokens by its own tokenizer, one shared transformer encoder encodes all of them,
and small heads predict. Modalities are plugins found through the entry-point group ``polymodal.plugins``.

The names below are imported lazily, so ``import polymodal`` stays cheap until something is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    # building and loading
    "build_model": "polymodal.model",
    "MultimodalModel": "polymodal.model",
    "from_pretrained": "polymodal.model",
    "ModelConfig": "polymodal.model",
    # registry
    "register": "polymodal.registry.lookup",
    "get": "polymodal.registry.lookup",
    "list_modalities": "polymodal.registry.lookup",
    "list_tokenizers": "polymodal.registry.lookup",
    "list_encoders": "polymodal.registry.lookup",
    "list_heads": "polymodal.registry.lookup",
    "list_metrics": "polymodal.registry.lookup",
    "list_data_sources": "polymodal.registry.lookup",
    "list_plugins": "polymodal.registry.plugins",
    "load_plugin": "polymodal.registry.plugins",
    "hookimpl": "polymodal.registry.hookspecs",
    "UnknownNameError": "polymodal.registry.errors",
    "DuplicateNameError": "polymodal.registry.errors",
    # base classes
    "Tokens": "polymodal.core.tokens",
    "Tokenizer": "polymodal.core.tokenizer",
    "TokenizerConfig": "polymodal.core.tokenizer",
    "Encoder": "polymodal.core.encoders",
    "EncoderConfig": "polymodal.core.encoders",
    "Head": "polymodal.core.heads",
    "HeadConfig": "polymodal.core.heads",
    "Metric": "polymodal.core.metrics",
    "DataSource": "polymodal.core.source",
    "DataSourceConfig": "polymodal.core.source",
    "ModalityInputError": "polymodal.core.component",
    "TargetError": "polymodal.core.heads",
    "NonFiniteError": "polymodal.model",
    # your own data and fine-tuning (polymodal.evaluate evaluates a model object; the CLI's config-file evaluation
    # is polymodal.train.evaluate_from_config)
    "ArrayDataset": "polymodal.data",
    "FileDataset": "polymodal.data",
    "stratified_split": "polymodal.data",
    "summarize": "polymodal.data",
    "fit": "polymodal.train.fit",
    "evaluate": "polymodal.train.fit",
    "FitResult": "polymodal.train.fit",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


# public subpackages, importable as attributes (``polymodal.data.from_folder`` after a plain ``import polymodal``)
_SUBPACKAGES = ("data", "testing", "train")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"polymodal.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'polymodal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBPACKAGES])


if TYPE_CHECKING:  # pragma: no cover
    from polymodal.core.component import ModalityInputError
    from polymodal.core.encoders import Encoder, EncoderConfig
    from polymodal.core.heads import Head, HeadConfig, TargetError
    from polymodal.core.metrics import Metric
    from polymodal.core.source import DataSource, DataSourceConfig
    from polymodal.core.tokenizer import Tokenizer, TokenizerConfig
    from polymodal.core.tokens import Tokens
    from polymodal.data import ArrayDataset, FileDataset, stratified_split, summarize
    from polymodal.model import ModelConfig, MultimodalModel, NonFiniteError, build_model, from_pretrained
    from polymodal.registry.errors import DuplicateNameError, UnknownNameError
    from polymodal.registry.hookspecs import hookimpl
    from polymodal.registry.lookup import (
        get,
        list_data_sources,
        list_encoders,
        list_heads,
        list_metrics,
        list_modalities,
        list_tokenizers,
        register,
    )
    from polymodal.registry.plugins import list_plugins, load_plugin
    from polymodal.train.fit import FitResult, evaluate, fit

"""Shared encoders: the interface (:mod:`.base`), the packed ViT (:mod:`.vit`), packing (:mod:`.packing`) and
pretrained weights from local files (:mod:`.pretrained`)."""

from polymodal.core.encoders.base import Encoder, EncoderConfig
from polymodal.core.encoders.vit import (
    ENCODER_CLASSES,
    TransformerEncoder,
    TransformerEncoderConfig,
    VitBaseEncoder,
    VitLargeEncoder,
    VitSmallEncoder,
    VitTinyEncoder,
)

__all__ = [
    "ENCODER_CLASSES",
    "Encoder",
    "EncoderConfig",
    "TransformerEncoder",
    "TransformerEncoderConfig",
    "VitBaseEncoder",
    "VitLargeEncoder",
    "VitSmallEncoder",
    "VitTinyEncoder",
]

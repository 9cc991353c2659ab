"""Networks: dilated ResNet backbones and DeepLabv3+."""

from cps_jax.models.deeplab import (
    ASPP,
    DeepLabV3Plus,
    build_model,
    interpolation_matrix,
    resize_bilinear_align_corners,
)
from cps_jax.models.resnet import ResNet

__all__ = [
    "ASPP",
    "DeepLabV3Plus",
    "ResNet",
    "build_model",
    "interpolation_matrix",
    "resize_bilinear_align_corners",
]

"""Backbones (one interface over tiny / torchvision / pytorchvideo / Hugging Face / your module) and projection heads."""

from vdiag.models.backbones import BACKBONES, VideoBackbone, build_backbone, build_huggingface_backbone, build_module_backbone
from vdiag.models.heads import mlp

__all__ = ["BACKBONES", "VideoBackbone", "build_backbone", "build_huggingface_backbone", "build_module_backbone", "mlp"]

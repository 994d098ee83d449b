"""Backbones (one interface over tiny / torchvision / pytorchvideo) and projection heads."""

from vdiag.models.backbones import BACKBONES, VideoBackbone, build_backbone
from vdiag.models.heads import mlp

__all__ = ["BACKBONES", "VideoBackbone", "build_backbone", "mlp"]

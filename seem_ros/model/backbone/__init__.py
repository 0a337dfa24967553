"""Image backbones of SEEM (parameter names = checkpoint keys under ``backbone.``)."""
from .focal import FOCAL_L, FOCAL_T, FocalNet, FocalNetConfig

__all__ = ['FOCAL_L', 'FOCAL_T', 'FocalNet', 'FocalNetConfig']

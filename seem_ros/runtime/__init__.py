"""Inference backends of SEEM (torch, onnxruntime, TensorRT), ONNX export and the engine cache.

Entry point: :func:`select_backend` (``auto`` = tensorrt -> onnxruntime-cuda -> torch-cuda ->
onnxruntime-cpu -> torch-cpu). No ROS imports; TensorRT and CUDA are imported only when used.
"""
from .backend import BACKENDS, Backend, BackendUnavailable, create_backend, select_backend

__all__ = ['BACKENDS', 'Backend', 'BackendUnavailable', 'create_backend', 'select_backend']

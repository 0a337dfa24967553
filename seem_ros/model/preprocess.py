"""Image preprocessing of SEEM: optional short-side resize, normalization and padding.

Images are RGB, (H, W, 3) uint8 (NumPy array or torch tensor). Normalization uses the official
``PIXEL_MEAN``/``PIXEL_STD`` on the 0-255 scale; padding is bottom/right with 0 *after*
normalization, to a multiple of ``size_divisibility`` (detectron2 ``ImageList.from_tensors``).
"""
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def _as_hwc_uint8(image) -> torch.Tensor:
    tensor = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(image))
    if tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[-1] != 3:
        raise ValueError(f'expected an (H, W, 3) uint8 RGB image, got {tuple(tensor.shape)} {tensor.dtype}')
    return tensor


def resize_short_side(image, short_side: int = 512):
    """Resize so that the shorter side equals ``short_side`` (0: return ``image`` unchanged).

    The longer side becomes ``int(short_side * long / short)`` (floor), as torchvision's
    ``Resize(short_side)`` used by the official demo. Interpolation is bicubic with antialiasing
    (``F.interpolate(mode='bicubic', antialias=True)``), torch's counterpart of PIL's BICUBIC
    resize; values may differ from PIL by one grey level after rounding. Returns the same type
    as the input ((H', W', 3) uint8 NumPy array or tensor).
    """
    tensor = _as_hwc_uint8(image)
    height, width = tensor.shape[:2]
    if short_side == 0 or min(height, width) == short_side:
        return image
    if height <= width:
        size = (short_side, int(short_side * width / height))
    else:
        size = (int(short_side * height / width), short_side)
    chw = tensor.permute(2, 0, 1)[None].float()
    resized = F.interpolate(chw, size=size, mode='bicubic', align_corners=False, antialias=True)
    out = resized.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).contiguous()
    return out if isinstance(image, torch.Tensor) else out.numpy()


def normalize_and_pad(image, size_divisibility: int = 32, *, device: Optional[torch.device] = None
                      ) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Normalize an (H, W, 3) uint8 RGB image and zero-pad it bottom/right.

    Returns a (1, 3, Hp, Wp) float32 tensor on ``device`` (default: the image's device, CPU for
    NumPy), with Hp, Wp the next multiples of ``size_divisibility``, and the unpadded (H, W).
    """
    tensor = _as_hwc_uint8(image).to(device)
    height, width = tensor.shape[:2]
    mean = torch.tensor(PIXEL_MEAN, dtype=torch.float32, device=tensor.device).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD, dtype=torch.float32, device=tensor.device).view(3, 1, 1)
    normalized = (tensor.permute(2, 0, 1).float() - mean) / std
    padded = F.pad(normalized, (0, -width % size_divisibility, 0, -height % size_divisibility))
    return padded[None], (height, width)

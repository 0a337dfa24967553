"""Image preprocessing of SEEM: short-side resize, normalization and padding.

Images are RGB, (H, W, 3) uint8 (NumPy array or torch tensor). The resize is the official demo's
(``torchvision.transforms.Resize(512, BICUBIC)`` on a PIL image, i.e. Pillow's fixed-point
two-pass bicubic), done by Pillow itself. Normalization uses the official ``PIXEL_MEAN``/
``PIXEL_STD`` on the 0-255 scale; padding is bottom/right with 0 *after* normalization, to a
multiple of ``size_divisibility`` (detectron2 ``ImageList.from_tensors``).
"""
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def _as_hwc_uint8(image) -> torch.Tensor:
    tensor = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(image))
    if tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[-1] != 3:
        raise ValueError(f'expected an (H, W, 3) uint8 RGB image, got {tuple(tensor.shape)} {tensor.dtype}')
    return tensor


def resized_size(height: int, width: int, short_side: int) -> Tuple[int, int]:
    """(h, w) of an (height, width) image after the short-side resize (0: unchanged).

    The short side becomes ``short_side`` and the long side ``int(short_side * long / short)``
    (floored), as torchvision's ``Resize(short_side)``: 640x480 -> 682x512, 1280x720 -> 910x512.
    """
    if not short_side or min(height, width) == short_side:
        return height, width
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def resize_short_side(image, short_side: int = 512):
    """Resize an (H, W, 3) uint8 RGB image so its short side is ``short_side`` (0: unchanged).

    Every image that enters the model goes through here (camera frames, referring patches, CLI
    and training images). It is ``PIL.Image.resize((w, h), Image.BICUBIC)`` with (h, w) from
    :func:`resized_size`, bit-exact to the official demo. An image already at the size is
    returned as is. Returns the same type as the input (NumPy array or CPU/GPU tensor).
    """
    tensor = _as_hwc_uint8(image)
    height, width = tensor.shape[:2]
    size = resized_size(height, width, short_side)
    if size == (height, width):
        return image
    pil = Image.fromarray(tensor.cpu().numpy())
    out = np.array(pil.resize((size[1], size[0]), Image.Resampling.BICUBIC))
    return torch.from_numpy(out).to(tensor.device) if isinstance(image, torch.Tensor) else out


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

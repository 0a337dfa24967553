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


def fitted_size(height: int, width: int, short_side: int, canvas: Tuple[int, int]) -> Tuple[int, int]:
    """(h, w) of an (height, width) image resized for a fixed ``canvas`` (Hc, Wc).

    The short-side resize (:func:`resized_size`) when its result fits the canvas; otherwise the
    largest size of the same aspect ratio inside the canvas (sides floored, at least 1 pixel).
    """
    h, w = resized_size(height, width, short_side)
    if h <= canvas[0] and w <= canvas[1]:
        return h, w
    scale = min(canvas[0] / height, canvas[1] / width)
    return max(1, min(canvas[0], int(height * scale))), max(1, min(canvas[1], int(width * scale)))


def resize_to(image, size: Tuple[int, int]):
    """``PIL.Image.resize`` of an (H, W, 3) uint8 RGB image to ``size`` (h, w) with BICUBIC, the
    official demo's resampling; an image already at the size is returned as is. Returns the same
    type as the input (NumPy array or CPU/GPU tensor)."""
    tensor = _as_hwc_uint8(image)
    if tuple(size) == tuple(tensor.shape[:2]):
        return image
    pil = Image.fromarray(tensor.cpu().numpy())
    out = np.array(pil.resize((size[1], size[0]), Image.Resampling.BICUBIC))
    return torch.from_numpy(out).to(tensor.device) if isinstance(image, torch.Tensor) else out


def resize_short_side(image, short_side: int = 512):
    """Resize an (H, W, 3) uint8 RGB image so its short side is ``short_side`` (0: unchanged).

    Every camera frame that enters the model goes through here (and CLI and training images). It
    is :func:`resize_to` the size of :func:`resized_size`, bit-exact to the official demo.
    """
    tensor = _as_hwc_uint8(image)
    height, width = tensor.shape[:2]
    return resize_to(image, resized_size(height, width, short_side))


def normalize_and_pad(image, size_divisibility: int = 32, *, device: Optional[torch.device] = None,
                      canvas: Optional[Tuple[int, int]] = None) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Normalize an (H, W, 3) uint8 RGB image and zero-pad it bottom/right.

    Returns a (1, 3, Hp, Wp) float32 tensor on ``device`` (default: the image's device, CPU for
    NumPy), with Hp, Wp the next multiples of ``size_divisibility`` (or ``canvas`` (Hp, Wp), which
    must hold the image), and the unpadded (H, W).
    """
    tensor = _as_hwc_uint8(image).to(device)
    height, width = tensor.shape[:2]
    mean = torch.tensor(PIXEL_MEAN, dtype=torch.float32, device=tensor.device).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD, dtype=torch.float32, device=tensor.device).view(3, 1, 1)
    normalized = (tensor.permute(2, 0, 1).float() - mean) / std
    hp, wp = canvas or (height + -height % size_divisibility, width + -width % size_divisibility)
    if hp < height or wp < width:
        raise ValueError(f'a {width}x{height} image does not fit the {wp}x{hp} canvas')
    padded = F.pad(normalized, (0, wp - width, 0, hp - height))
    return padded[None], (height, width)

"""sensor_msgs images <-> numpy, and stamps: what the node, replay and the teleop page share
(no model code here, so ``seem_ui`` starts without loading torch). Every rejected image raises
:class:`ImageError` naming the problem."""
from __future__ import annotations

import array
import io
from typing import Literal

import cv2
import numpy as np
from PIL import Image as PILImage
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ..prompts import InputLimits
from .guard import clip_text

# encoding -> (numpy dtype, channels)
ENCODINGS = {
    'rgb8': (np.uint8, 3), 'bgr8': (np.uint8, 3), 'rgba8': (np.uint8, 4), 'bgra8': (np.uint8, 4),
    'mono8': (np.uint8, 1), '8UC1': (np.uint8, 1), 'mono16': (np.uint16, 1), '16UC1': (np.uint16, 1),
    '32FC1': (np.float32, 1),
}
COLOR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8')


class ImageError(ValueError):
    """An image message that cannot be converted."""


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def image_to_numpy(msg: Image, limits: InputLimits = InputLimits()) -> np.ndarray:
    """Pixels of a ``sensor_msgs/Image`` as (H, W) or (H, W, C) in native byte order.

    Honours ``step`` (padded rows) and ``is_bigendian``. Raises :class:`ImageError` for an
    unsupported encoding, a zero size, a size over ``limits``, a ``step`` shorter than a row, or
    truncated data.
    """
    if msg.encoding not in ENCODINGS:
        raise ImageError(f"unsupported image encoding '{clip_text(msg.encoding, 40)}' "
                         f"(supported: {', '.join(ENCODINGS)})")
    dtype, channels = ENCODINGS[msg.encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ImageError(f'zero-size image ({w}x{h})')
    _check_size(w, h, limits)
    row = w * channels * np.dtype(dtype).itemsize
    if step < row:
        raise ImageError(f"step {step} is shorter than a row of {w} '{msg.encoding}' pixels ({row} bytes)")
    data = np.frombuffer(msg.data, np.uint8)
    if data.size < step * (h - 1) + row:
        raise ImageError(f'truncated image data: {data.size} bytes for {w}x{h} with step {step} '
                         f'(needs {step * (h - 1) + row})')
    rows = np.lib.stride_tricks.as_strided(data, (h, row), (step, 1))
    order: Literal['>', '<'] = '>' if msg.is_bigendian else '<'
    pixels = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order)).astype(dtype, copy=False)
    return pixels.reshape((h, w, channels) if channels > 1 else (h, w))


def _check_size(width: int, height: int, limits: InputLimits) -> None:
    try:
        limits.check_image_size(width, height, 'image')
    except ValueError as exc:
        raise ImageError(str(exc)) from None


def image_to_rgb(msg: Image, limits: InputLimits = InputLimits()) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an rgb8, bgr8, rgba8, bgra8 or mono8 image (size within ``limits``)."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise ImageError(f"unsupported colour image encoding '{clip_text(msg.encoding, 40)}' "
                         f"(supported: {', '.join(COLOR_ENCODINGS)})")
    pixels = image_to_numpy(msg, limits)
    if msg.encoding == 'mono8':
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if msg.encoding.startswith('bgr'):
        pixels = pixels[:, :, 2::-1]
    return np.ascontiguousarray(pixels[:, :, :3])


def compressed_to_rgb(msg: CompressedImage, limits: InputLimits = InputLimits()) -> np.ndarray:
    """(H, W, 3) uint8 RGB decoded from a JPEG/PNG ``sensor_msgs/CompressedImage``.

    The size in the file's header is checked against ``limits`` before anything is decoded (a
    small file claiming a huge image is refused, not allocated).
    """
    data = np.frombuffer(msg.data, np.uint8)
    try:
        with PILImage.open(io.BytesIO(data.tobytes())) as header:
            width, height = header.size
    except PILImage.DecompressionBombError as exc:
        raise ImageError(f'image: {exc}') from None
    except Exception:  # noqa: BLE001 - any unreadable header: cannot decode, reported below
        width = height = 0
    if width and height:
        _check_size(width, height, limits)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size and width and height else None
    if image is None:
        raise ImageError(f"cannot decode compressed image (format '{clip_text(msg.format, 40)}', {data.size} bytes)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def numpy_to_image(pixels: np.ndarray, encoding: str, header: Header) -> Image:
    """A dense (step = row size), little-endian ``sensor_msgs/Image`` of ``pixels`` in ``encoding``."""
    dtype, channels = ENCODINGS[encoding]
    pixels = np.asarray(pixels)
    if pixels.dtype != dtype or (pixels.shape[2] if pixels.ndim == 3 else 1) != channels:
        raise ImageError(f"{pixels.dtype} array of shape {pixels.shape} is not '{encoding}'")
    h, w = pixels.shape[:2]
    data = array.array('B', np.ascontiguousarray(pixels, np.dtype(dtype).newbyteorder('<')).tobytes())
    return Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                 step=w * channels * np.dtype(dtype).itemsize, data=data)

"""Reading, validating and writing SEEM checkpoints in the official format.

An official checkpoint (``seem_focal{t,l}_v{0,1}.pt``) is a flat ``state_dict`` of the inner
``GeneralizedSEEM`` module: plain keys (``backbone.*``, ``sem_seg_head.pixel_decoder.*``,
``sem_seg_head.predictor.*``, ``criterion.empty_weight``, ``dilation_kernel``), float tensors.
Our module names equal those keys, so loading is a strict ``load_state_dict`` after:

* unwrapping ``{'model': sd}`` / ``{'state_dict': sd}`` containers;
* stripping a ``module.`` (DataParallel) or ``model.`` prefix shared by every key;
* applying :data:`KEY_RENAMES` (official prefix -> our prefix; empty: no module deviates);
* dropping :data:`IGNORED_KEYS` the model does not have (each listed with its reason).

Any other difference (missing or unexpected keys, shape mismatches) raises
:class:`CheckpointError`.

A checkpoint may also say how it is meant to run: ``{'model': sd, 'seem_ros': {'variant': 'tiny',
'version': 'v1', 'short_side': 120}}`` (:func:`read_metadata`; ``seem-ros train`` writes it). Its
state dict is still the official one; official files carry no metadata.
"""
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

# Official key prefix -> our key prefix. Empty: every module is named like the official one.
KEY_RENAMES: Dict[str, str] = {}

# Keys of official files that a model may lack, with the reason they are safe to drop.
IGNORED_KEYS: Dict[str, str] = {
    'criterion.empty_weight': 'training-loss class weights (eos_coef 0.1); unused at inference',
    'dilation_kernel': 'constant 3x3 ones used by the official click simulator; not a learned weight',
}

_WRAPPER_KEYS = ('model', 'state_dict')
METADATA_KEY = 'seem_ros'
METADATA_FIELDS = {'variant': str, 'version': str, 'short_side': int}
"""What a checkpoint may say about itself, with the type of each field."""
_KEY_PREFIXES = ('module.', 'model.')
_MAX_LISTED = 10


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or does not match the model."""


def _listing(title: str, items: List[str]) -> str:
    shown = ', '.join(items[:_MAX_LISTED])
    more = f', ... ({len(items) - _MAX_LISTED} more)' if len(items) > _MAX_LISTED else ''
    return f'{len(items)} {title}: {shown}{more}'


def _torch_load(path: Path):
    try:
        return torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except RuntimeError as error:
        if 'mmap' not in str(error):  # legacy (non-zip) files cannot be memory-mapped
            raise
        return torch.load(path, map_location='cpu', weights_only=True)


def normalize_keys(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Strip a shared ``module.``/``model.`` prefix and apply :data:`KEY_RENAMES`."""
    keys = list(state_dict)
    for prefix in _KEY_PREFIXES:
        if keys and all(key.startswith(prefix) for key in keys):
            state_dict = {key[len(prefix):]: value for key, value in state_dict.items()}
            break
    renamed = {}
    for key, value in state_dict.items():
        for old, new in KEY_RENAMES.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


def _load(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    try:
        return _torch_load(path)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise CheckpointError(f'cannot read checkpoint {path}: {error}') from error


def read_metadata(path) -> Dict[str, Any]:
    """What the checkpoint says about itself (:data:`METADATA_FIELDS`; {} for official files).

    Raises:
        FileNotFoundError, CheckpointError: as :func:`read_state_dict`, or malformed metadata.
    """
    data = _load(path)
    metadata = data.get(METADATA_KEY, {}) if isinstance(data, dict) else {}
    if not isinstance(metadata, dict) or any(key not in METADATA_FIELDS or not isinstance(value, METADATA_FIELDS[key])
                                             for key, value in metadata.items()):
        raise CheckpointError(f'{path}: malformed {METADATA_KEY!r} metadata {metadata!r} (fields: '
                              f'{", ".join(f"{k} ({t.__name__})" for k, t in METADATA_FIELDS.items())})')
    return dict(metadata)


def read_state_dict(path) -> Dict[str, torch.Tensor]:
    """Load the flat state dict of a checkpoint file (CPU, memory-mapped where possible).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is not a readable checkpoint holding a dict of tensors.
    """
    data = _load(path)
    for wrapper in _WRAPPER_KEYS:
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
            break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f'{path} does not hold a state dict (a dict of tensors)')
    return normalize_keys(data)


def check_state_dict(expected: Mapping[str, Tuple[int, ...]], state_dict: Mapping[str, torch.Tensor],
                     source: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """Validate ``state_dict`` against ``expected`` key -> shape; return it minus ignored keys.

    Raises:
        CheckpointError: listing missing keys, unexpected keys and shape mismatches.
    """
    state_dict = {key: value for key, value in state_dict.items()
                  if key in expected or key not in IGNORED_KEYS}
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [f'{key} {tuple(state_dict[key].shape)} != {tuple(shape)}'
                  for key, shape in expected.items()
                  if key in state_dict and tuple(state_dict[key].shape) != tuple(shape)]
    problems = [_listing(title, items) for title, items in (
        ('missing keys', missing), ('unexpected keys', unexpected),
        ('shape mismatches (file != model)', mismatched)) if items]
    if problems:
        raise CheckpointError(f'{source} does not match the model:\n  ' + '\n  '.join(problems))
    return state_dict


def load_checkpoint(model: nn.Module, path, *, assign: bool = False) -> None:
    """Strictly load an official-format checkpoint file into ``model`` (in place).

    ``assign=True`` replaces the parameters by the file's tensors instead of copying into them,
    so ``model`` may be built on the ``meta`` device (no initialization, no second copy).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: unreadable file, or keys / shapes that differ from the model's.
    """
    expected = {key: value.shape for key, value in model.state_dict().items()}
    state_dict = check_state_dict(expected, read_state_dict(path), source=str(path))
    model.load_state_dict(state_dict, strict=True, assign=assign)


def save_checkpoint(state_dict: Mapping[str, torch.Tensor], path, metadata: Optional[Mapping[str, Any]] = None) -> None:
    """Write ``state_dict`` in the official format (flat dict of CPU tensors, plain keys), with
    ``metadata`` (:data:`METADATA_FIELDS`) beside it under ``'model'`` when given.

    The file is written next to ``path`` and renamed into place, so readers never see a
    partial file.
    """
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    tensors = {key: value.detach().cpu() for key, value in state_dict.items()}
    torch.save({'model': tensors, METADATA_KEY: dict(metadata)} if metadata else tensors, tmp)
    os.replace(tmp, path)

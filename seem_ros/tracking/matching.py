"""What both trackers use to match a frame's masks to tracks: the candidate mask, the
assignment tiers (priorities of :func:`~seem_ros.tracking.association.assign`) and the rule for
a match entering the track's appearance bank."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .association import Box
from .config import AssociationConfig
from .state import Track

KEEP = 2        # tier of a protected continuity match of a visible track: wins every conflict
MATCH = 1       # tier of any other match of a born (prompted: found) track
TENTATIVE = 0   # tier of a match of a track never found (prompted) or not yet born (everything)


@dataclass
class Candidate:
    """One predicted mask: from request ``request`` (prompted) or segment ``request`` (everything)."""

    request: int
    mask: np.ndarray
    bbox: Box
    centroid: np.ndarray
    score: float
    vector: np.ndarray
    logits: Optional[torch.Tensor] = None
    label: str = ''


def update_bank(track: Track, vector: np.ndarray, similarity: float, score: float, stamp_ns: int,
                config: AssociationConfig) -> None:
    """Add ``vector`` to the bank of ``track`` matched at ``stamp_ns`` with ``similarity`` and
    ``score``: always into an empty bank, else only a confident, similar match at most once per
    ``bank_interval_s``."""
    if not len(track.bank) or (score >= config.bank_confidence and similarity >= config.min_similarity
                               and (stamp_ns - track.bank_ns) * 1e-9 >= config.bank_interval_s):
        track.bank.add(vector)
        track.bank_ns = stamp_ns

"""``seem-ros train``: train a small SEEM on procedural scenes, on CPU (see :mod:`seem_ros.training.train`).

Example::

    seem-ros train --out models/seem_tiny.pt --steps 3000 --minutes 60     # run again to resume
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..training.train import train


def build_parser(parser=None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog='seem-ros train',
                                               description='Train a small SEEM on procedural scenes, on CPU.')
    parser.add_argument('--out', required=True, type=Path, help='checkpoint to write (official format, float16)')
    parser.add_argument('--variant', default='tiny', help='model configuration (default tiny)')
    parser.add_argument('--steps', type=int, default=3000, help='training steps of the schedule (default 3000)')
    parser.add_argument('--minutes', type=float, default=None,
                        help='stop after this many minutes of this run (state saved; run again to resume)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    parser.add_argument('--batch', type=int, default=4, help='images per step (default 4)')
    parser.add_argument('--lr', type=float, default=4e-4, help='peak learning rate (default 4e-4)')
    parser.add_argument('--short-side', type=int, default=120, help='model input short side (default 120)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads of the training process (default 1: the model is small, and on a '
                             'busy machine more threads mostly wait for each other); one loader process renders '
                             'the scenes beside it')
    parser.add_argument('--state', type=Path, default=None,
                        help='training state for resuming (default: OUT with suffix .state)')
    parser.add_argument('--save-every', type=int, default=50, help='save state and checkpoint every N steps')
    parser.add_argument('--fresh', action='store_true', help='ignore an existing state and start over')
    parser.add_argument('--progress', action='store_true', help='show progress even when stderr is not a terminal')
    return parser


def main(argv=None) -> int:
    return train(build_parser().parse_args(argv))

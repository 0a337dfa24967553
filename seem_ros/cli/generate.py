"""``seem-ros generate``: render a procedural scene into a rosbag2 with ground-truth sidecars.

Example::

    seem-ros generate --out demo_bag --scenario demo --seed 0
    seem-ros generate --out held_out_7 --scenario random --seed 7 --frames 300 --storage sqlite3

Writes the bag directory ``OUT`` and ``OUT.gt.npz`` / ``OUT.gt.json`` beside it (format in
:mod:`seem_ros.scenes.bag`). The same options always give the same bag.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ..scenes.bag import STORAGES, sidecar_paths, write_bag
from ..scenes.render import SCENARIO_SECONDS, build_scene


def build_parser(parser=None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog='seem-ros generate', description='Render a procedural scene into a rosbag2 with ground-truth sidecars.')
    parser.add_argument('--out', required=True, type=Path, help='bag directory to create')
    parser.add_argument('--scenario', default='demo', choices=list(SCENARIO_SECONDS),
                        help='scripted scene (default demo); random: seed-controlled held-out scenes')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    parser.add_argument('--frames', type=int, default=None,
                        help='number of frames (default: the scenario duration, ' + ', '.join(
                            f'{k} {v:g} s' for k, v in SCENARIO_SECONDS.items()) + ', times --fps)')
    parser.add_argument('--fps', type=float, default=15.0, help='frame rate in Hz (default 15)')
    parser.add_argument('--width', type=int, default=640, help='image width in pixels (default 640)')
    parser.add_argument('--height', type=int, default=480, help='image height in pixels (default 480)')
    parser.add_argument('--storage', default='mcap', choices=list(STORAGES), help='rosbag2 storage (default mcap)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing bag directory OUT and its sidecars')
    parser.add_argument('--progress', action='store_true', help='show progress even when stderr is not a terminal')
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    out: Path = args.out
    if out.exists():
        if not args.overwrite:
            parser.error(f'--out {out} exists (use --overwrite to replace it)')
        if not (out / 'metadata.yaml').is_file():
            parser.error(f'--out {out} exists and is not a rosbag2 directory; not replacing it')
        shutil.rmtree(out)
        for sidecar in sidecar_paths(out):
            sidecar.unlink(missing_ok=True)
    try:
        scene = build_scene(args.scenario, args.seed, width=args.width, height=args.height, fps=args.fps,
                            frames=args.frames)
    except ValueError as e:
        parser.error(str(e))
    start = time.monotonic()
    with tqdm(total=scene.n_frames, desc='generate', unit='frames', disable=False if args.progress else None) as bar:
        meta = write_bag(scene, out, storage=args.storage, progress=bar)
    seconds = time.monotonic() - start
    npz, js = sidecar_paths(out)
    print(f'{out} ({args.storage}): {scene.n_frames} frames {args.width}x{args.height} at {args.fps:g} Hz, '
          f'scenario {args.scenario} seed {args.seed}, {seconds:.1f} s ({scene.n_frames / seconds:.0f} frames/s)')
    for o in meta['objects']:
        print(f'  object {o["id"]}: {o["sentence"]}')
    for p in meta['prompts']:
        print(f'  prompt at frame {p["frame"]}: {p["kind"]} -> object {p["object_id"]}')
    print(f'  ground truth: {npz}, {js}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

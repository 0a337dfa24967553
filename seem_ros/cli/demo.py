"""``seem-ros demo`` (``make demo``): the product end to end on a generated scene.

1. Renders the demo scene into a rosbag2 (``OUT/input_bag``, MCAP, ground truth beside it): four
   objects with an occlusion, an exit and re-entry and a scale change, and four scripted
   ``seem_ros/msg/Prompt`` messages: a language command, a click, a box, and a referring patch cut
   from a different scene.
2. Replays it offline with the shipped small model (``models/seem_tiny.pt``) through the node's
   pipeline, applying the bag's prompts.
3. Writes ``OUT/output_bag`` (objects, label images, overlays), ``OUT/overlay.mp4`` and overlay
   PNGs, and prints the replay summary and the mask quality of every prompted object against the
   ground truth (mean IoU over the frames where it is visible).

Defaults (320x240, 15 Hz, 10 s, short side 120, one inference thread) take about 70 s of CPU time.
``--backend onnxruntime`` (or ``tensorrt`` on a machine that has it) runs the exported graphs of
the demo's size, exported on first use into the cache of :mod:`seem_ros.runtime.export_cache`.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
from tqdm import tqdm

from ..scenes.bag import TOPICS, read_ground_truth, sidecar_paths, write_bag
from ..scenes.render import build_scene
from ..replay.bagio import BagReader
from .replay import replay_and_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='seem-ros demo', description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, default=Path('demo_out'), help='output directory (default demo_out)')
    parser.add_argument('--checkpoint', default='models/seem_tiny.pt', help='model (default models/seem_tiny.pt)')
    parser.add_argument('--variant', help='model variant (default: what the checkpoint says)')
    parser.add_argument('--short-side', type=int, help='model input short side (default: what the checkpoint says)')
    parser.add_argument('--width', type=int, default=320, help='image width (default 320)')
    parser.add_argument('--height', type=int, default=240, help='image height (default 240)')
    parser.add_argument('--fps', type=float, default=15.0, help='frame rate (default 15)')
    parser.add_argument('--frames', type=int, default=None, help='frames (default: the 10 s scenario)')
    parser.add_argument('--seed', type=int, default=0, help='scene seed (default 0)')
    parser.add_argument('--backend', default='torch',
                        help='inference backend: torch (default), onnxruntime, tensorrt, auto or a full name of '
                             'seem_ros.runtime.BACKENDS; graph backends export the model on first use')
    parser.add_argument('--onnx-dir', type=Path,
                        help='exported graphs for graph backends (default: the export cache, filled on first use)')
    parser.add_argument('--threads', type=int, default=1,
                        help='CPU threads for inference (default 1: the small model gains little from more, and one '
                             'thread stays fast on a busy machine)')
    return parser


def generate(out: Path, args) -> Path:
    """Render the demo scene into ``out/input_bag`` (replacing an earlier one)."""
    bag = out / 'input_bag'
    if bag.exists():
        shutil.rmtree(bag)
    for sidecar in sidecar_paths(bag):
        sidecar.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    scene = build_scene('demo', args.seed, width=args.width, height=args.height, fps=args.fps, frames=args.frames)
    with tqdm(total=scene.n_frames, desc='generate', unit='frames', disable=None) as bar:
        meta = write_bag(scene, bag, progress=bar)
    print(f'1. generated {bag}: {scene.n_frames} frames {args.width}x{args.height} at {args.fps:g} Hz')
    for p in meta['prompts']:
        target = next(o for o in meta['objects'] if o['id'] == p['object_id'])
        what = {'text': lambda: f"text \"{p['text']}\"", 'click': lambda: f"click at ({p['point'][0]:.0f}, "
                f"{p['point'][1]:.0f})", 'box': lambda: f"box {[round(v) for v in p['box']]}",
                'reference': lambda: f"referring patch from scene '{p['reference']['scenario']}' seed "
                f"{p['reference']['seed']}"}[p['kind']]()
        print(f'   prompt at frame {p["frame"]:>3}: {what:<58} -> {target["sentence"]}')
    return bag


def quality(bag: Path, output: Path) -> list:
    """Rows (prompt kind, target sentence, id, mean IoU, frames, frames with IoU > 0.5) of every
    prompted object: its mask in the object arrays against the ground truth, from its prompt's frame
    on, over the frames where the object is visible."""
    from rclpy.serialization import deserialize_message

    from ..mask_codec import CompactMask
    from ..msg import TrackedObjectArray
    gt = read_ground_truth(bag)
    index = {f['stamp_ns']: f['index'] for f in gt.meta['frames']}
    masks: Dict[Tuple[int, str], np.ndarray] = {}    # (frame, object name) -> mask
    ids: Dict[str, int] = {}                          # object name -> id
    with BagReader(output) as reader:
        for msg in reader.messages(['/seem/objects']):
            arr = deserialize_message(msg.data, TrackedObjectArray)
            k = index[arr.header.stamp.sec * 1_000_000_000 + arr.header.stamp.nanosec]
            for o in arr.objects:
                ids.setdefault(o.prompt_name, o.id)
                masks[k, o.prompt_name] = CompactMask(o.mask_x_offset, o.mask_y_offset, o.mask_width, o.mask_height,
                                                      np.asarray(o.mask_rle)).to_mask(arr.image_height, arr.image_width)
    sentences = {o['id']: o['sentence'] for o in gt.meta['objects']}
    rows = []
    for p in gt.prompts:
        ious = []
        for k in range(p['frame'], gt.ids.shape[0]):
            truth = gt.ids[k] == p['object_id']
            if truth.any():
                found = masks.get((k, p['object_name']), np.zeros_like(truth))
                ious.append(np.count_nonzero(found & truth) / np.count_nonzero(found | truth))
        rows.append((p['kind'], sentences[p['object_id']], ids.get(p['object_name'], '-'),
                     float(np.mean(ious)) if ious else float('nan'), len(ious), int(sum(i > 0.5 for i in ious))))
    return rows


def main(argv=None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not Path(args.checkpoint).is_file():
        print(f'error: the demo model {args.checkpoint} does not exist. Train it with '
              f'`seem-ros train --out {args.checkpoint}` (see the README), or pass --checkpoint FILE --variant NAME.',
              file=sys.stderr)
        return 1
    import torch
    torch.set_num_threads(max(args.threads, 1))
    start = time.monotonic()
    out: Path = args.out
    bag = generate(out, args)
    onnx_dir = args.onnx_dir
    if onnx_dir is None and not args.backend.startswith('torch'):
        from ..predictor import cached_export_for
        onnx_dir = cached_export_for(args.checkpoint, args.height, args.width, variant=args.variant,
                                     short_side=args.short_side)
    replay_args = Namespace(
        bag=bag, out=out / 'output_bag', prompts=None, ignore_bag_prompts=False, image_topic=TOPICS['image'],
        depth_topic=TOPICS['depth'], depth_info_topic=None, storage='mcap', overwrite=True,
        progress=False, params_file=None,
        checkpoint=args.checkpoint, variant=args.variant, version=None, short_side=args.short_side, device=None,
        precision=None, backend=args.backend, onnx_dir=onnx_dir, mode=None, vocabulary=None, overlay=True,
        video=out / 'overlay.mp4', png_dir=out, pngs=4)
    print(f'2. replaying with {args.checkpoint} on {args.backend} ...')
    if replay_and_report(replay_args, []) is None:
        return 1
    print('3. masks against the ground truth (frames where the object is visible, from its prompt on):')
    print(f'   {"prompt":<10} {"object":<28} {"id":>3}  {"mean IoU":>8}  {"IoU>0.5":>12}')
    for kind, sentence, object_id, iou, n, good in quality(bag, out / 'output_bag'):
        print(f'   {kind:<10} {sentence:<28} {object_id:>3}  {iou:8.2f}  {good:>5} of {n:<4}')
    print(f'done in {time.monotonic() - start:.0f} s: {out}/ holds output_bag/, overlay.mp4 and overlay_*.png')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""``seem-ros replay``: run a rosbag2 bag through the node's core and record its outputs, offline
(:mod:`seem_ros.replay.offline`, default) or live into a running node (``--live``,
:mod:`seem_ros.replay.live`).

Examples::

    seem-ros replay demo_bag --out demo_out/bag --video demo_out/overlay.mp4 --png-dir demo_out
    seem-ros replay my.bag --out out --prompts prompts.yaml --ignore-bag-prompts --image-topic /cam/image
    seem-ros replay my.bag --out out --params-file config/seem.yaml --checkpoint models/seem_focalt_v1.pt
    seem-ros replay demo_bag --out out --depth-topic /camera/depth/image_raw
    seem-ros replay demo_bag --live --out live_out
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from tqdm import tqdm

from ..replay.bagio import BagError, BagReader, BagWriter, check_output
from ..replay.offline import (PROMPT_TYPE, REPLAY_DEFAULTS, DepthInput, OverlayFiles, Replay, ReplayError,
                              ReplayStats, load_params, node_output_qos, png_indices, select_depth_topics,
                              select_topics)
from ..replay.prompts_yaml import PromptEvent, PromptFileError, describe, load_prompts
from ..session import LoadError, load_session


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='seem-ros replay', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Run a rosbag2 bag (MCAP or sqlite3) through the seem node\'s pipeline and record its outputs: '
                    'offline (default; every frame, in bag order) or live into a running node (--live).',
        epilog='Prompt YAML format: see seem_ros/replay/prompts_yaml.py (python -m pydoc '
               'seem_ros.replay.prompts_yaml). Model settings: built-in defaults (the shipped small model '
               f'{REPLAY_DEFAULTS["model.checkpoint"]}, run as it says: variant tiny, short side 120), then '
               '--params-file, then the options below.')
    parser.add_argument('bag', type=Path, help='input rosbag2 directory (or a single .mcap / .db3 file)')
    parser.add_argument('--out', type=Path, help='output bag directory to create (required offline; with --live '
                        'optional: without it nothing is recorded)')
    parser.add_argument('--prompts', type=Path, help='YAML prompt script (objects to add at frames or times)')
    parser.add_argument('--ignore-bag-prompts', action='store_true',
                        help=f'do not apply the bag\'s {PROMPT_TYPE} messages')
    parser.add_argument('--image-topic', default='/camera/image_raw',
                        help='sensor_msgs/Image or CompressedImage topic (default /camera/image_raw)')
    parser.add_argument('--depth-topic', help='aligned depth image topic (16UC1 mm or 32FC1 m): fills each object\'s '
                        '3D fields with the depth.* settings (default: none; offline only)')
    parser.add_argument('--depth-info-topic', help='CameraInfo of the depth image (default: the depth topic\'s '
                        'sibling camera_info)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), help='output storage (default: the input\'s)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output bag')
    parser.add_argument('--progress', action='store_true', help='show progress even when stderr is not a terminal')
    model = parser.add_argument_group('model and pipeline (offline)')
    model.add_argument('--params-file', type=Path, help='the node\'s ROS 2 params file (e.g. config/seem.yaml)')
    model.add_argument('--checkpoint', help='SEEM checkpoint (model.checkpoint)')
    model.add_argument('--variant', help='model variant: tiny | focalt | focall (model.variant)')
    model.add_argument('--version', help='decoder version v1 | v0 (model.version)')
    model.add_argument('--short-side', type=int, help='model input short side in pixels (model.short_side)')
    model.add_argument('--device', help='cpu | cuda | cuda:N (runtime.device)')
    model.add_argument('--precision', help='fp32 | fp16 | bf16 (runtime.precision)')
    model.add_argument('--backend', help='auto | torch | onnxruntime | tensorrt | ... (runtime.backend)')
    model.add_argument('--onnx-dir', help='`seem-ros export` output for graph backends (runtime.onnx_dir)')
    model.add_argument('--mode', help='prompted | everything | both (pipeline.mode)')
    model.add_argument('--vocabulary', help='comma-separated class names for everything mode (pipeline.vocabulary)')
    files = parser.add_argument_group('outputs (offline)')
    files.add_argument('--overlay', action='store_true', help='also write /seem/overlay (rgb8) into the output bag')
    files.add_argument('--video', type=Path, help='overlay video to write (.mp4, mp4v)')
    files.add_argument('--png-dir', type=Path, help='directory for overlay PNGs of a few frames')
    files.add_argument('--pngs', type=int, default=4, help='number of overlay PNGs (default 4)')
    live = parser.add_argument_group('live mode (--live)')
    live.add_argument('--live', action='store_true',
                      help='play the bag into a running seem node with the original timing and record its outputs')
    live.add_argument('--node-namespace', default='/', help='namespace of the running node (default /)')
    live.add_argument('--node-name', default='seem', help='name of the running node (default seem)')
    live.add_argument('--loop', action='store_true',
                      help='play the bag again and again until Ctrl-C, each lap later in time (a camera for the '
                           'teleop page without a robot)')
    live.add_argument('--rate', type=float, default=1.0, help='playback rate factor (default 1.0)')
    live.add_argument('--remap', action='append', default=[], metavar='FROM:=TO',
                      help='publish bag topic FROM on TO (repeatable); Prompt topics go to the node\'s ~/prompt '
                           'unless remapped')
    live.add_argument('--no-clock', action='store_true', help='do not publish /clock')
    live.add_argument('--clock-rate', type=float, default=50.0, help='/clock messages per second (default 50)')
    live.add_argument('--wait', type=float, default=60.0,
                      help='seconds to wait for the node to subscribe and publish (default 60)')
    live.add_argument('--drain', type=float, default=30.0,
                      help='seconds to wait after the last message for the last output (default 30)')
    return parser


OFFLINE_ONLY = ('params_file', 'checkpoint', 'variant', 'version', 'short_side', 'device', 'precision', 'backend',
                'onnx_dir', 'mode', 'vocabulary', 'overlay', 'video', 'png_dir', 'pngs', 'depth_topic',
                'depth_info_topic')
LIVE_ONLY = ('node_namespace', 'node_name', 'loop', 'rate', 'remap', 'no_clock', 'clock_rate', 'wait', 'drain')


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    misplaced = [name for name in (OFFLINE_ONLY if args.live else LIVE_ONLY)
                 if getattr(args, name, None) != parser.get_default(name)]
    if misplaced:
        parser.error(f'{"offline options used with --live" if args.live else "live options used without --live"}: '
                     + ', '.join('--' + n.replace('_', '-') for n in misplaced))
    if args.rate <= 0:
        parser.error('--rate must be > 0')
    if args.out is None and not args.live:
        parser.error('--out is required (the output bag to create)')
    try:
        events = load_prompts(args.prompts) if args.prompts else []
    except PromptFileError as exc:
        parser.error(str(exc))
    for line in describe(events):
        print(line, file=sys.stderr)
    for e in events:
        for w in e.warnings:
            print(f'warning: {args.prompts}: prompt {e.index}: {w}', file=sys.stderr)
    if args.live:
        from ..replay.live import run_live
        return run_live(args, events)
    return 0 if replay_and_report(args, events) is not None else 1


def replay_and_report(args, events: Sequence[PromptEvent]) -> Optional[ReplayStats]:
    """:func:`run_offline`, then its table on stdout; None (after the error on stderr) when the
    replay failed, stopped on an error or could not process some frames (the others are written)."""
    try:
        stats = run_offline(args, events)
    except (BagError, ReplayError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return None
    print(stats.table())
    if stats.error:
        print(f'error: {stats.error}', file=sys.stderr)
        return None
    if stats.failed:
        print(f'error: {sum(stats.failed.values())} of {stats.frames_in} frames failed (see the summary)',
              file=sys.stderr)
        return None
    return stats


def run_offline(args, events: Sequence[PromptEvent]) -> ReplayStats:
    """The offline replay of the parsed command line ``args``."""
    overrides = {'model.checkpoint': args.checkpoint, 'model.variant': args.variant, 'model.version': args.version,
                 'model.short_side': args.short_side, 'runtime.device': args.device,
                 'runtime.precision': args.precision,
                 'runtime.backend': args.backend, 'runtime.onnx_dir': args.onnx_dir, 'pipeline.mode': args.mode,
                 'pipeline.vocabulary': ([v.strip() for v in args.vocabulary.split(',') if v.strip()]
                                         if args.vocabulary is not None else None)}
    params = load_params(args.params_file, overrides)
    check_output(args.out, args.overwrite)
    with BagReader(args.bag) as reader:
        image_topic, prompt_topics = select_topics(reader, args.image_topic, not args.ignore_bag_prompts)
        depth_topic, depth_info_topic = select_depth_topics(reader, args.depth_topic, args.depth_info_topic)
        depth = DepthInput(depth_topic, depth_info_topic) if depth_topic else None
        outputs = ['objects'] + (['label_image'] if params.publish__label_image else [])
        if args.overlay or params.publish__overlay:
            outputs.append('overlay')
        files = (OverlayFiles(args.video, args.png_dir, png_indices(image_topic.count, args.pngs))
                 if args.video or args.png_dir else None)
        try:
            session = load_session(params, overlay='overlay' in outputs or files is not None,
                                   depth=depth is not None)
        except LoadError as exc:
            raise ReplayError(f'{exc} (pass --checkpoint FILE, e.g. one written by seem-ros train or '
                              'synth-checkpoint)') from exc
        print(f'replay {args.bag} ({reader.storage}, {image_topic.count or "?"} frames on {image_topic.name}'
              f'{", prompts from " + ", ".join(prompt_topics) if prompt_topics else ""}) with '
              f'{params.model__checkpoint} ({session.pipeline.predictor.model_name})',
              file=sys.stderr)
        writer = BagWriter(args.out, args.storage or reader.storage, overwrite=args.overwrite,
                           qos=lambda _topic: [node_output_qos(params.qos__depth)])
        replay = Replay(reader, writer, session, image_topic=image_topic.name, prompt_topics=prompt_topics,
                        events=events, outputs=outputs, files=files,
                        prompts_name=str(args.prompts) if args.prompts else 'YAML',
                        log=lambda line: print(line, file=sys.stderr), depth=depth)
        with tqdm(total=image_topic.count, desc='replay', unit='frames',
                  disable=False if args.progress else None) as bar:
            return replay.run(bar)

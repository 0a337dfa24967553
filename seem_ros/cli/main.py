"""``seem-ros``: dispatch ``seem-ros COMMAND ARGS...`` to the module that implements COMMAND.

To add a command, register it in ``COMMANDS``; its module needs ``main(argv) -> int`` that parses
``argv`` (the arguments after COMMAND) itself. Modules are imported only when their command runs.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    'segment': ('seem_ros.cli.segment', 'segment one image with text/click/box/scribble/mask/referring prompts'),
    'synth-checkpoint': ('seem_ros.cli.synth_checkpoint', 'write an official-format checkpoint with synthetic weights'),
    'generate': ('seem_ros.cli.generate', 'render a procedural scene into a rosbag2 with ground truth'),
    'train': ('seem_ros.cli.train', 'train a small SEEM on procedural scenes (CPU)'),
    'export': ('seem_ros.cli.export', 'export verified fixed-shape ONNX graphs for onnxruntime / TensorRT'),
    'demo': ('seem_ros.cli.demo', 'the product end to end: generate a scene bag, replay it with the shipped model'),
    'replay': ('seem_ros.cli.replay',
               'run a rosbag2 through the node\'s pipeline (offline or --live) and record outputs'),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='seem-ros', description='SEEM for ROS 2: command-line tools.')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in COMMANDS:
        return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])
    parser = build_parser()
    parser.parse_args(argv)  # handles --help and unknown commands (exit 2)
    parser.print_help()
    return 0


if __name__ == '__main__':
    sys.exit(main())

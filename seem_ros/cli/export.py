"""``seem-ros export``: SEEM checkpoint -> verified fixed-shape ONNX graphs for onnxruntime / TensorRT.

Each graph is run on a probe input in PyTorch and in onnxruntime and only written when they
agree (graph interfaces and tolerances: :mod:`seem_ros.runtime.export`). Image graphs are static
per camera resolution: ``--height/--width`` is the camera image, resized like the predictor
(``--short-side``, default 512) and padded to multiples of 32. Exporting another resolution or
precision into the same ``--out`` adds to its ``manifest.json``.

Exit status: 0 all graphs written; 1 a graph disagreed with PyTorch (it was not written; the
others were); 2 bad arguments.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_PARITY = 1
EXIT_BAD_ARGUMENT = 2


def build_parser() -> argparse.ArgumentParser:
    from ..model.build import VARIANTS
    from ..runtime.export import DEFAULT_GROUPS, GROUPS, OPSET, PRECISIONS
    p = argparse.ArgumentParser(prog='seem-ros export', description=__doc__.split('\n\n')[0])
    p.add_argument('--checkpoint', required=True, help='official-format SEEM checkpoint (.pt)')
    p.add_argument('--variant', default='focalt', choices=sorted(VARIANTS), help='model variant (default focalt)')
    p.add_argument('--version', default='v1', choices=('v1', 'v0'), help='decoder version (default v1)')
    p.add_argument('--out', required=True, help='output directory (manifest.json + .onnx files)')
    p.add_argument('--height', type=int, required=True, help='camera image height in pixels')
    p.add_argument('--width', type=int, required=True, help='camera image width in pixels')
    p.add_argument('--short-side', type=int, default=512,
                   help='short-side resize applied before the model, as the predictor (default 512; 0 = none)')
    p.add_argument('--graphs', default=','.join(DEFAULT_GROUPS),
                   help=f'comma list of {", ".join(GROUPS)} (default {",".join(DEFAULT_GROUPS)}; '
                        'decoder = prompt encoder + decoder, memory = decoder with prev_mask memory prompts)')
    p.add_argument('--p-max', type=int, default=16, help='prompt slots per decoder pass (default 16; v0: 1)')
    p.add_argument('--t-max', type=int, default=77, help='grounding text tokens per pass (default 77)')
    p.add_argument('--n-max', type=int, default=None,
                   help='prompt points per pass (default 2 x 512, the official per-sign budget of the image, '
                        '+ 2048 for referring patches; less leaves less room for patches, below 1024 prompt '
                        'pixels are subsampled to n_max/2 per sign, seeded)')
    p.add_argument('--precision', default='fp32',
                   help=f'comma list of {", ".join(PRECISIONS)} (fp16 keeps LayerNorm/softmax/attention fp32)')
    p.add_argument('--opset', type=int, default=OPSET, help=f'ONNX opset (default {OPSET})')
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..runtime import export as ex
    try:
        groups = [g.strip() for g in args.graphs.split(',') if g.strip()]
        precisions = [p.strip() for p in args.precision.split(',') if p.strip()]
        if args.height < 1 or args.width < 1:
            raise ValueError(f'--height/--width must be positive, got {args.height}x{args.width}')
        if args.p_max < 1 or args.t_max < 1 or (args.n_max is not None and args.n_max < 1):
            raise ValueError('--p-max, --t-max and --n-max must be >= 1')
        size = ex.padded_size(args.height, args.width, short_side=args.short_side)
        jobs = ex.plan(groups, [size], precisions)
        if not Path(args.checkpoint).is_file():
            raise ValueError(f'--checkpoint {args.checkpoint}: file not found')
    except ValueError as exc:
        print(f'seem-ros export: error: {exc}', file=sys.stderr)
        return EXIT_BAD_ARGUMENT
    return run(args, size, jobs)


def run(args, size, jobs) -> int:
    import torch

    with torch.no_grad():
        return _export_all(args, size, jobs)


def _export_all(args, size, jobs) -> int:
    from tqdm import tqdm

    from ..model.build import build_seem
    from ..runtime import export as ex

    print(f'loading {args.variant} ({args.version}) from {args.checkpoint}', file=sys.stderr)
    model = build_seem(args.variant, version=args.version, checkpoint=args.checkpoint)
    cfg = ex.ExportConfig.of(model, args.variant, p_max=args.p_max, t_max=args.t_max, n_max=args.n_max,
                             checkpoint_sha256=ex.sha256_file(args.checkpoint))
    try:
        ex.check_compatible(args.out, cfg)
    except ValueError as exc:
        print(f'seem-ros export: error: {exc}', file=sys.stderr)
        return EXIT_BAD_ARGUMENT
    print(f'model input {size[0]}x{size[1]} (camera {args.height}x{args.width}, short side {args.short_side}); '
          f'P={cfg.p_max} T={cfg.t_max} N={cfg.n_max}; {len(jobs)} graphs -> {args.out}', file=sys.stderr)
    failed = []
    with tqdm(total=len(jobs), desc='export', unit='graph', disable=None) as bar:
        for kind, graph_size, precision in jobs:
            name = ex.graph_name(kind, graph_size, precision)
            try:
                result = ex.export_graph(model, cfg, kind, graph_size, args.out, precision=precision,
                                         opset=args.opset)
            except ex.ExportParityError as exc:
                failed.append(name)
                print(f'{name}: REFUSED, not written: {exc}', file=sys.stderr)
            else:
                worst = max((r.get('max_rel', 0.0) for probe in result.parity.values() for r in probe.values()),
                            default=0.0)
                print(f'{name}: ok, max |err|/scale {worst:.2g} (tolerance {ex.tolerance(kind, precision).rel:g}), '
                      f'{result.path.stat().st_size / 1e6:.1f} MB, {result.seconds:.0f} s')
            bar.update()
    if failed:
        print(f'seem-ros export: {len(failed)} graph(s) disagreed with PyTorch: {", ".join(failed)}', file=sys.stderr)
        return EXIT_PARITY
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
"""Per-stage SEEM latency for every backend that runs on this machine (issue #9).

For each ``--variant`` (weights: ``--checkpoint`` or the synthetic rule; latency does not depend
on weight values), camera size (``--sizes``, default 640x480 and 1280x720, resized like the
predictor with ``--short-side`` and padded to 32) and backend (``--backends``, default all of
``seem_ros.runtime.BACKENDS``; unavailable ones are listed with the reason), it measures:

* ``preprocess``: short-side resize + normalize + pad of the camera image;
* ``encoder``: backbone + pixel decoder;
* ``decoder_1p`` / ``decoder_4p`` / ``decoder_16p``: prompt encoding + decoder for 1, 4, 16 click
  prompts (one point each; fixed-shape backends always run P_max = 16 slots and N_max points: the
  three are the same work there);
* ``decoder_1p_mask`` / ``decoder_4p_mask`` / ``decoder_16p_mask``: the same for 1, 4, 16 mask
  prompts (:func:`object_masks`, the 512-point budget of the image is used up: N = 512 tokens);
* ``text_cold`` / ``text_cached``: open-vocabulary embeddings of ``VOCABULARY`` (81 templates per
  class) on an empty cache (one sample: cold happens once), then from the cache;
* ``postprocess_4p``: 4 mask logits -> binary masks at camera size (bilinear);
* ``postprocess_panoptic``: 101 queries -> panoptic id map at camera size (bicubic + merge);
* ``frame_4p``: a whole prompted frame (preprocess, encoder, 4-click decode, postprocess), timed
  end to end, not summed;
* ``frame_track_1`` / ``frame_track_4`` / ``frame_track_16``: a whole frame of a tracker with 1, 4,
  16 objects: preprocess, encoder, the previous masks as mask prompts plus their ``prev_mask``
  memory, decode, postprocess of the N masks (end to end).
* ``cameras_1`` / ``cameras_2`` / ``cameras_4``: one round of a node serving 1, 2, 4 cameras
  with one model (parameter ``cameras``): each camera's own image tracked with 4 objects, the
  cameras one after the other as the node's worker serves them; the table gives the frames/s of
  all cameras together and per camera, against one camera's.

Every number is a measurement of that stage on that machine (median and p90 over ``--repeat``
runs after ``--warmup``; CUDA work is synchronized before each clock read); nothing is scaled
or extrapolated. Graph backends need ONNX exports of each size: ``--onnx-dir`` is reused and
completed with ``seem-ros export`` logic when graphs are missing (export time is not measured).

Usage::

    python bench/latency.py --variant tiny --variant focalt [--backends onnxruntime-cpu,torch-cpu]
                            [--repeat 5] [--json bench/results/latency.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seem_ros.model.build import build_seem, synthetic_state_dict  # noqa: E402
from seem_ros.model.postprocess import panoptic_inference, resize_mask_logits  # noqa: E402
from seem_ros.model.preprocess import normalize_and_pad, resize_short_side  # noqa: E402
from seem_ros.runtime import BACKENDS, BackendUnavailable, create_backend  # noqa: E402
from seem_ros.runtime import export as ex  # noqa: E402

VOCABULARY = ['person', 'chair', 'cup', 'bottle', 'table', 'laptop', 'dog', 'car', 'book', 'plant']
PROMPT_COUNTS = (1, 4, 16)
CAMERA_COUNTS = (1, 2, 4)
STAGES = ('preprocess', 'encoder', *(f'decoder_{n}p' for n in PROMPT_COUNTS),
          *(f'decoder_{n}p_mask' for n in PROMPT_COUNTS), 'text_cold', 'text_cached', 'postprocess_4p',
          'postprocess_panoptic', 'frame_4p', *(f'frame_track_{n}' for n in PROMPT_COUNTS),
          *(f'cameras_{n}' for n in CAMERA_COUNTS))


def parse_size(text: str):
    width, height = (int(v) for v in text.lower().split('x'))
    return height, width


def camera_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Deterministic smooth RGB test image (H, W, 3) uint8, one per ``seed``."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(height // 40, 2), max(width // 40, 2), 3), dtype=np.uint8)
    tensor = torch.from_numpy(coarse).permute(2, 0, 1)[None].float()
    image = torch.nn.functional.interpolate(tensor, size=(height, width), mode='bilinear', align_corners=False)
    return image[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def click_masks(count: int, padded, valid) -> torch.Tensor:
    """(count, Hp, Wp) bool masks of one click each, spread over the valid image."""
    masks = torch.zeros(count, *padded, dtype=torch.bool)
    for i in range(count):
        y = int((i // 4 + 0.5) / 4 * valid[0]) % valid[0]
        x = int((i % 4 + 0.5) / 4 * valid[1]) % valid[1]
        masks[i, y, x] = True
    return masks


def object_masks(count: int, padded, valid) -> torch.Tensor:
    """(count, Hp, Wp) bool masks of tracked objects: ellipses of 1/8 x 1/8 of the valid image
    (about 1.2 % of it each, thousands of pixels) on a 4 x 4 grid."""
    ys = torch.arange(padded[0])[:, None].float()
    xs = torch.arange(padded[1])[None, :].float()
    masks = torch.zeros(count, *padded, dtype=torch.bool)
    for i in range(count):
        cy, cx = (i // 4 + 0.5) / 4 * valid[0], (i % 4 + 0.5) / 4 * valid[1]
        masks[i] = ((ys - cy) / (valid[0] / 16)) ** 2 + ((xs - cx) / (valid[1] / 16)) ** 2 <= 1
    return masks


class Timer:
    """Median / p90 wall time of a callable, synchronizing CUDA around each run."""

    def __init__(self, cuda: bool, repeat: int, warmup: int):
        self.cuda, self.repeat, self.warmup = cuda, repeat, warmup

    def _sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def once(self, fn: Callable) -> float:
        self._sync()
        start = time.perf_counter()
        fn()
        self._sync()
        return (time.perf_counter() - start) * 1e3

    def measure(self, fn: Callable) -> Dict[str, float]:
        for _ in range(self.warmup):
            fn()
        samples = [self.once(fn) for _ in range(self.repeat)]
        return summary(samples)


def summary(samples: List[float]) -> Dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {'median_ms': statistics.median(ordered), 'p90_ms': p90, 'n': len(ordered)}


def unavailable(name: str):
    """Why backend ``name`` cannot run here (checked before spending minutes on exports), or None."""
    needs_cuda = name in ('tensorrt', 'onnxruntime-cuda', 'torch-cuda')
    if needs_cuda and not torch.cuda.is_available():
        return 'no CUDA device (torch.cuda.is_available() is False)'
    if name == 'tensorrt':
        try:
            import tensorrt  # noqa: F401
        except ImportError as exc:
            return f'tensorrt is not installed ({exc})'
    if name == 'onnxruntime-cuda':
        import onnxruntime
        if 'CUDAExecutionProvider' not in onnxruntime.get_available_providers():
            return 'onnxruntime has no CUDAExecutionProvider'
    return None


def ensure_exports(model, variant, onnx_dir: Path, sizes, precision: str) -> None:
    """Export the graphs this benchmark needs that ``onnx_dir`` does not hold yet (not timed)."""
    cfg = ex.ExportConfig.of(model, variant, p_max=max(PROMPT_COUNTS), t_max=77)
    have = set(ex.read_manifest(onnx_dir)['graphs']) if (onnx_dir / ex.MANIFEST).is_file() else set()
    for kind, size, prec in ex.plan(['encoder', 'text', 'decoder', 'memory'], sizes, [precision]):
        if ex.graph_name(kind, size, prec) not in have:
            print(f'exporting {variant} {ex.graph_name(kind, size, prec)} (not timed)', file=sys.stderr)
            ex.export_graph(model, cfg, kind, size, onnx_dir, precision=prec)


def bench_backend(backend, sizes, camera_sizes, timer: Timer, short_side: int) -> Dict[str, dict]:
    results = {}
    for (height, width), padded in zip(camera_sizes, sizes):
        image = camera_image(height, width)
        rows = {}

        def preprocess():
            resized = resize_short_side(image, short_side)
            tensor, valid = normalize_and_pad(resized, backend.size_divisibility, device=backend.device)
            return resized, tensor, valid

        rows['preprocess'] = timer.measure(preprocess)
        resized, tensor, valid = preprocess()
        assert tuple(tensor.shape[-2:]) == tuple(padded), (tensor.shape, padded)
        rows['encoder'] = timer.measure(lambda: backend.encode_image(tensor, valid))
        features = backend.encode_image(tensor, valid)
        prompts = {(count, suffix): make(count, padded, valid).to(backend.device) for count in PROMPT_COUNTS
                   for suffix, make in (('', click_masks), ('_mask', object_masks))}
        outputs = {}
        for (count, suffix), masks in prompts.items():

            def decode(masks=masks, key=(count, suffix)):
                spatial = backend.encode_prompts(features, masks, generator=torch.Generator().manual_seed(0))
                outputs[key] = backend.decode(features, spatial=spatial)

            rows[f'decoder_{count}p{suffix}'] = timer.measure(decode)
        backend.clear_text_cache()
        rows['text_cold'] = summary([timer.once(lambda: backend.vocabulary_embeddings(VOCABULARY))])
        rows['text_cached'] = timer.measure(lambda: backend.vocabulary_embeddings(VOCABULARY))
        low = outputs[4, '']['prev_mask'][0]
        rows['postprocess_4p'] = timer.measure(
            lambda: resize_mask_logits(low, features.padded_size, valid, (height, width), final_mode='bilinear') > 0)
        text = backend.vocabulary_embeddings(VOCABULARY)
        objects = backend.decode(features, text_embeddings=text)

        def panoptic():
            logits = resize_mask_logits(objects['pred_masks'][0], features.padded_size, valid, (height, width))
            return panoptic_inference(objects['pred_logits'][0], logits)

        rows['postprocess_panoptic'] = timer.measure(panoptic)
        four = click_masks(4, padded, valid).to(backend.device)

        def frame():
            _, frame_tensor, frame_valid = preprocess()
            feats = backend.encode_image(frame_tensor, frame_valid)
            out = backend.decode(feats, spatial=backend.encode_prompts(feats, four))
            return resize_mask_logits(out['prev_mask'][0], feats.padded_size, frame_valid, (height, width),
                                      final_mode='bilinear') > 0

        rows['frame_4p'] = timer.measure(frame)
        for count in PROMPT_COUNTS:

            def track_frame(masks=prompts[count, '_mask'], prev=outputs[count, '_mask']['prev_mask']):
                _, frame_tensor, frame_valid = preprocess()
                feats = backend.encode_image(frame_tensor, frame_valid)
                spatial = backend.encode_prompts(feats, masks, generator=torch.Generator().manual_seed(0))
                out = backend.decode(feats, spatial=spatial, prev_mask=prev)
                return resize_mask_logits(out['prev_mask'][0], feats.padded_size, frame_valid, (height, width),
                                          final_mode='bilinear') > 0

            rows[f'frame_track_{count}'] = timer.measure(track_frame)
        cameras = [camera_image(height, width, seed) for seed in range(max(CAMERA_COUNTS))]
        for count in CAMERA_COUNTS:

            def camera_round(images=cameras[:count], masks=prompts[4, '_mask'], prev=outputs[4, '_mask']['prev_mask']):
                for rgb in images:
                    resized = resize_short_side(rgb, short_side)
                    frame_tensor, frame_valid = normalize_and_pad(resized, backend.size_divisibility,
                                                                  device=backend.device)
                    feats = backend.encode_image(frame_tensor, frame_valid)
                    spatial = backend.encode_prompts(feats, masks, generator=torch.Generator().manual_seed(0))
                    out = backend.decode(feats, spatial=spatial, prev_mask=prev)
                    resize_mask_logits(out['prev_mask'][0], feats.padded_size, frame_valid, (height, width),
                                       final_mode='bilinear')

            rows[f'cameras_{count}'] = timer.measure(camera_round)
        results[f'{width}x{height}'] = {'padded_input': list(padded), **rows}
    return results


def machine_info() -> dict:
    info = {'cpu': platform.processor() or platform.machine(), 'python': platform.python_version(),
            'cpu_count': os.cpu_count(), 'torch': torch.__version__, 'torch_threads': torch.get_num_threads(),
            'load_average_at_start': [round(v, 2) for v in os.getloadavg()], 'date': time.strftime('%Y-%m-%d')}
    try:
        import onnxruntime
        info['onnxruntime'] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        import tensorrt
        info['tensorrt'] = tensorrt.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info['gpu'] = f'{props.name} (sm {props.major}.{props.minor}, {props.total_memory >> 30} GiB)'
    return info


def _ms(value: float) -> str:
    return f'{value:.3f}' if value < 1 else f'{value:.1f}'


def print_table(report: dict) -> None:
    for variant, per_backend in report['results'].items():
        for name, data in per_backend.items():
            if 'skipped' in data:
                print(f'\n{variant} / {name}: skipped ({data["skipped"]})')
                continue
            print(f'\n{variant} / {name} ({data["describe"]}): median ms (p90)')
            sizes = [k for k in data if k not in ('describe',)]
            print('| stage | ' + ' | '.join(f'{s} (in {data[s]["padded_input"][1]}x{data[s]["padded_input"][0]})'
                                         for s in sizes) + ' |')
            print('|---|' + '---|' * len(sizes))
            for stage in STAGES:
                cells = [f'{_ms(data[s][stage]["median_ms"])} ({_ms(data[s][stage]["p90_ms"])})' for s in sizes]
                print(f'| {stage} | ' + ' | '.join(cells) + ' |')
            for stage in ('frame_4p', *(f'frame_track_{n}' for n in PROMPT_COUNTS)):
                frame = [f'{1000 / data[s][stage]["median_ms"]:.2f} fps' for s in sizes]
                print(f'| throughput ({stage}) | ' + ' | '.join(frame) + ' |')
            for n in CAMERA_COUNTS:
                cells = [f'{1000 * n / data[s][f"cameras_{n}"]["median_ms"]:.2f} fps in total, '
                         f'{1000 / data[s][f"cameras_{n}"]["median_ms"]:.2f} per camera '
                         f'(one camera: {1000 / data[s]["cameras_1"]["median_ms"]:.2f})' for s in sizes]
                print(f'| {n} camera{"s" if n > 1 else ""} | ' + ' | '.join(cells) + ' |')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--variant', action='append', help='model variant, repeatable (default tiny)')
    parser.add_argument('--checkpoint', help='official-format checkpoint (one --variant); default synthetic weights')
    parser.add_argument('--backends', default=','.join(BACKENDS), help='comma list (default: all)')
    parser.add_argument('--sizes', default='640x480,1280x720', help='camera sizes WxH (default 640x480,1280x720)')
    parser.add_argument('--short-side', type=int, default=512, help='predictor short-side resize (default 512)')
    parser.add_argument('--precision', default='fp32', choices=ex.PRECISIONS, help='CUDA backends (default fp32)')
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=0, help='CPU threads (0 = library default)')
    parser.add_argument('--onnx-dir', help='export directory to reuse (default: a temporary one per variant)')
    parser.add_argument('--engine-dir', help='TensorRT engine cache (default ~/.cache/seem_ros/engines)')
    parser.add_argument('--json', default='bench/results/latency.json', help='where to write the JSON report')
    args = parser.parse_args(argv)
    variants = args.variant or ['tiny']
    if args.checkpoint and len(variants) != 1:
        parser.error('--checkpoint needs exactly one --variant')
    if args.threads:
        torch.set_num_threads(args.threads)
    camera_sizes = [parse_size(s) for s in args.sizes.split(',')]
    sizes = [ex.padded_size(h, w, short_side=args.short_side) for h, w in camera_sizes]
    report = {'machine': machine_info(), 'settings': {k: v for k, v in vars(args).items() if k != 'json'},
              'vocabulary': VOCABULARY, 'results': {}}
    torch.set_grad_enabled(False)
    for variant in variants:
        model = build_seem(variant, checkpoint=args.checkpoint)
        if not args.checkpoint:
            model.load_state_dict(synthetic_state_dict(variant))
        onnx_dir = Path(args.onnx_dir or tempfile.mkdtemp(prefix=f'seem_{variant}_onnx_'))
        report['results'][variant] = {}
        for name in [b.strip() for b in args.backends.split(',') if b.strip()]:
            missing = unavailable(name)
            if missing:
                report['results'][variant][name] = {'skipped': missing}
                print(f'{variant} / {name}: skipped ({missing})', file=sys.stderr)
                continue
            if not name.startswith('torch'):
                ensure_exports(model, variant, onnx_dir, sizes, 'fp32' if name.endswith('-cpu') else args.precision)
            try:
                backend = create_backend(name, model=model, onnx_dir=onnx_dir, engine_dir=args.engine_dir,
                                         precision=args.precision, threads=args.threads)
                for size in sizes:
                    backend.prepare(size)
            except BackendUnavailable as exc:
                report['results'][variant][name] = {'skipped': str(exc)}
                print(f'{variant} / {name}: skipped ({exc})', file=sys.stderr)
                continue
            print(f'{variant} / {name}: measuring ({backend.describe()})', file=sys.stderr)
            timer = Timer(backend.device.type == 'cuda', args.repeat, args.warmup)
            report['results'][variant][name] = {'describe': backend.describe(),
                                                **bench_backend(backend, sizes, camera_sizes, timer, args.short_side)}
            model = model.cpu()
    report['machine']['load_average_at_end'] = [round(v, 2) for v in os.getloadavg()]
    print_table(report)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + '\n')
    print(f'\nwrote {args.json}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""3D centroid error of :func:`seem_ros.geometry.frame_geometry` against the scenes' ground truth.

Renders generated scenes (every scenario, several seeds, frames spread over each scene), decodes
the depth as the node does (16UC1 millimetres through ``depth_to_metres``) and compares each
object's estimated centroid with the ground truth (mean 3D point of its visible pixels), under:

* ``exact``: ground-truth mask, depth quantised to millimetres;
* ``noise``: plus axial noise sigma(z) = 1.2 mm + 1.9 mm/m^2 * (z - 0.4 m)^2 (the Kinect model of
  Nguyen et al., 3DIMPVT 2012) and 5 % dropouts (0 = invalid);
* ``noise, bleed 3 px``: plus a mask dilated by 3 px onto the background or other objects;
* ``noise, flying pixels``: plus the 2 px either side of every depth edge set to the mean of the
  two sides (the interpolated depth of real sensors);
* ``noise, half-res depth``: the depth rendered at half the colour resolution, the masks at full;
* ``noise, depth 33 ms late``: the depth of the previous frame at 30 fps (a stamp pairing one
  frame off, within the default 50 ms slop), so moving objects have moved;
* ``naive mean, bleed 3 px``: the ``noise, bleed 3 px`` input with a plain mean over the mask (no
  erosion, no depth band), to show what the robust estimate buys.

Objects with fewer than ``--min-px`` visible pixels are not scored. Prints a Markdown table.

Run: ``python bench/depth3d.py [--seeds 5] [--frames 6] [--width 640]``.
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from seem_ros.geometry import CameraIntrinsics, depth_to_metres, frame_geometry
from seem_ros.scenes import SCENARIO_SECONDS, build_scene, depth_to_mm, render_frame

CONDITIONS = ('exact', 'noise', 'noise, bleed 3 px', 'noise, flying pixels', 'noise, half-res depth',
              'noise, depth 33 ms late', 'naive mean, bleed 3 px')
FPS = 30.0


def sensor_depth(depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 metres -> uint16 millimetres with axial noise and 5 % dropouts."""
    sigma = 0.0012 + 0.0019 * (depth - 0.4) ** 2
    mm = depth_to_mm(depth + rng.standard_normal(depth.shape).astype(np.float32) * sigma)
    mm[rng.random(depth.shape) < 0.05] = 0
    return mm


def flying_pixels(depth: np.ndarray) -> np.ndarray:
    """``depth`` with pixels within 2 px of a depth edge (> 5 cm step) replaced by the local
    mean of the near and far sides."""
    near = cv2.erode(depth, np.ones((5, 5), np.uint8))
    far = cv2.dilate(depth, np.ones((5, 5), np.uint8))
    out = depth.copy()
    edge = far - near > 0.05
    out[edge] = 0.5 * (near[edge] + far[edge])
    return out


def naive_centroid(mask: np.ndarray, depth: np.ndarray, intr: CameraIntrinsics) -> np.ndarray:
    ys, xs = np.nonzero(mask & np.isfinite(depth))
    z = depth[ys, xs].astype(np.float64)
    return np.array([((xs - intr.cx) * z / intr.fx).mean(), ((ys - intr.cy) * z / intr.fy).mean(), z.mean()])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, default=5)
    parser.add_argument('--frames', type=int, default=6, help='frames per scene, spread over its duration')
    parser.add_argument('--width', type=int, default=640, help='colour width (height = 3/4 of it)')
    parser.add_argument('--min-px', type=int, default=400, help='fewest visible pixels for an object to be scored')
    args = parser.parse_args(argv)
    width, height = args.width, args.width * 3 // 4
    bleed = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    errors = {c: [] for c in CONDITIONS}
    extent_ratio = []
    invalid = {c: 0 for c in CONDITIONS}
    times_ms = []
    for scenario in SCENARIO_SECONDS:
        for seed in range(args.seeds):
            scene = build_scene(scenario, seed, width=width, height=height, fps=FPS)
            half = build_scene(scenario, seed, width=width // 2, height=height // 2, fps=FPS)
            intr = CameraIntrinsics.from_matrix(scene.camera.K, width, height)
            rng = np.random.default_rng([seed, len(scenario)])
            for k in np.linspace(1, scene.n_frames - 1, args.frames).astype(int):
                frame = render_frame(scene, k)
                objects = [o for o in frame.objects if o.visible_px >= args.min_px]
                if not objects:
                    continue
                masks = [frame.mask(o.id) for o in objects]
                bled = [cv2.dilate(m.view(np.uint8), bleed).view(bool) for m in masks]
                noisy = depth_to_metres(sensor_depth(frame.depth, rng), '16UC1')
                inputs = {
                    'exact': (masks, depth_to_metres(depth_to_mm(frame.depth), '16UC1')),
                    'noise': (masks, noisy),
                    'noise, bleed 3 px': (bled, noisy),
                    'noise, flying pixels': (masks, depth_to_metres(
                        sensor_depth(flying_pixels(frame.depth), rng), '16UC1')),
                    'noise, half-res depth': (masks, depth_to_metres(
                        sensor_depth(render_frame(half, k).depth, rng), '16UC1')),
                    'noise, depth 33 ms late': (masks, depth_to_metres(
                        sensor_depth(render_frame(scene, k - 1).depth, rng), '16UC1')),
                }
                for condition, (obj_masks, depth) in inputs.items():
                    t0 = time.perf_counter()
                    geometries = frame_geometry(obj_masks, depth, intr)
                    if condition == 'noise':
                        times_ms.append((time.perf_counter() - t0) * 1e3 / len(objects))
                    for obj, g in zip(objects, geometries):
                        invalid[condition] += not g.valid
                        errors[condition].append(np.linalg.norm(g.centroid - obj.centroid))
                        if condition == 'noise':
                            x0, y0, x1, y1 = obj.bbox
                            truth = np.array([x1 - x0, y1 - y0]) * obj.depth_m / np.array([intr.fx, intr.fy])
                            extent_ratio.append(np.mean(g.extent[:2] / truth))
                for obj, mask in zip(objects, bled):
                    errors['naive mean, bleed 3 px'].append(
                        np.linalg.norm(naive_centroid(mask, noisy, intr) - obj.centroid))
    n = len(errors['exact'])
    print(f'{n} objects (>= {args.min_px} px visible) in {len(SCENARIO_SECONDS) * args.seeds} scenes x '
          f'{args.frames} frames, colour {width}x{height}; 3D centroid error in cm:\n')
    print('| condition | median | p95 | max | not valid |')
    print('|---|---|---|---|---|')
    for condition in CONDITIONS:
        e = np.asarray(errors[condition]) * 100
        print(f'| {condition} | {np.median(e):.2f} | {np.percentile(e, 95):.2f} | {e.max():.2f} | '
              f'{invalid[condition] if condition in inputs else "-"} |')
    ratio = np.asarray(extent_ratio)
    print(f'\nextent (x, y) / visible size, noise: median {np.median(ratio):.3f}, '
          f'p5 {np.percentile(ratio, 5):.3f}, p95 {np.percentile(ratio, 95):.3f}')
    print(f'time per object (noise): median {np.median(times_ms):.2f} ms, p95 {np.percentile(times_ms, 95):.2f} ms')


if __name__ == '__main__':
    main()

"""The full fuzz set against the running node over DDS: a table of crashes, hangs, stalls and RSS.

Starts the node as users do (``config/seem.yaml``: the shipped model) with depth enabled, sends
``--per-category`` seeded cases of every category of ``test/ros/fuzz_cases.py`` (12 categories;
the lifecycle one sends every transition id in every state once), and after each category checks
that the node is alive, answers a service within 5 s (else a stall), gives a valid image its
``~/objects`` (else a hang), and how much its RSS grew. ``test/ros/test_fuzz.py`` runs a subset
of the same cases in CI.

Run: ``python bench/fuzz.py [--per-category 90] [--seed 20261202] [--json bench/results/fuzz.json]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'test' / 'ros'))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

import fuzz_cases  # noqa: E402
import ros_helpers  # noqa: E402


def run_batch(client, seem, name, cases, scene, rss_start):
    """One category, with a hang (no output within the bound) recorded instead of raised."""
    try:
        return fuzz_cases.run_category(client, seem, cases, scene, rss_start)
    except AssertionError as exc:
        return {'cases': len(cases), 'alive': seem.proc.poll() is None, 'crashed_at': None, 'hang': str(exc),
                'counted': 0, 'rss_mb': float('nan'), 'rss_growth_mb': float('nan'), 'reply_s': float('nan'),
                'output_s': float('nan')}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--per-category', type=int, default=90, help='cases per category (default 90)')
    parser.add_argument('--seed', type=int, default=20261202)
    parser.add_argument('--json', type=Path, help='write the results here')
    args = parser.parse_args(argv)
    namespace = f'/fuzz_{uuid.uuid4().hex[:8]}'
    log = Path(tempfile.mkdtemp(prefix='seem_fuzz_')) / 'node.log'
    seem = ros_helpers.NodeProcess(namespace, log, fuzz_cases.NODE_ARGS)
    cases = fuzz_cases.all_cases(args.seed, args.per_category)
    scene = np.random.default_rng(1).integers(0, 256, (fuzz_cases.H, fuzz_cases.W, 3), dtype=np.uint8)
    results = {}
    start = time.monotonic()
    try:
        with ros_helpers.ros_node('seem_fuzz_bench', namespace) as node:
            client = fuzz_cases.FuzzClient(node)
            fuzz_cases.fuzz(client, seem, {}, scene)            # wait for the node, warm it up
            rss_start = seem.rss_mb()
            for name, batch in cases.items():
                results[name] = run_batch(client, seem, name, batch, scene, rss_start)
                r = results[name]
                print(f'{name}: {r["cases"]} cases, alive {r["alive"]}, reply {r["reply_s"]:.2f} s, '
                      f'RSS {r["rss_mb"]:.0f} MB', flush=True)
                if not r['alive']:
                    break
    finally:
        code = seem.interrupt() if seem.proc.poll() is None else seem.proc.returncode
    total = sum(r['cases'] for r in results.values())
    crashes = sum(not r['alive'] for r in results.values())
    hangs = sum('hang' in r for r in results.values())
    stalls = sum(r['reply_s'] > fuzz_cases.REPLY_BOUND_S for r in results.values())
    print(f'\n{total} cases in {time.monotonic() - start:.0f} s; node exit code on SIGINT: {code}\n')
    print('| category | cases | crash | hang | reply (s) | ~/objects (s) | rejections counted | RSS growth (MB) |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for name, r in results.items():
        print(f'| {name} | {r["cases"]} | {int(not r["alive"])} | {int("hang" in r)} | {r["reply_s"]:.2f} | '
              f'{r["output_s"]:.2f} | {r["counted"]} | {r["rss_growth_mb"]:.0f} |')
    print(f'\ncrashes {crashes}, hangs {hangs}, stalls over {fuzz_cases.REPLY_BOUND_S:g} s {stalls}')
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({'seed': args.seed, 'per_category': args.per_category, 'cases': total,
                                         'crashes': crashes, 'hangs': hangs, 'stalls': stalls,
                                         'exit_code_on_sigint': code, 'categories': results}, indent=1))
    return 0 if not (crashes or hangs or stalls) else 1


if __name__ == '__main__':
    sys.exit(main())

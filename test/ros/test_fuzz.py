"""A seeded fuzz subset against the running node over DDS (``bench/fuzz.py`` runs the full set).

The node runs as users start it (``config/seem.yaml``: the shipped model) with depth enabled.
Every category of :mod:`fuzz_cases` is sent in a batch; after each the node must be alive, answer
a service within 5 s, give a valid image its ``~/objects``, stay within an RSS bound, and count the
rejections of the categories that hold only invalid inputs.
"""
import numpy as np
import pytest

import fuzz_cases
import ros_helpers as helpers
from ros_helpers import ros_node

SEED, PER_CATEGORY = 20261202, 8
ALL_INVALID = ('geometry', 'prompt fields', 'texts', 'depth and camera info', 'compressed', 'parameters')


@pytest.fixture(scope='module')
def results(ros_namespace, tmp_path_factory):
    seem = helpers.NodeProcess(ros_namespace, tmp_path_factory.mktemp('fuzz') / 'node.log', fuzz_cases.NODE_ARGS)
    scene = np.random.default_rng(1).integers(0, 256, (fuzz_cases.H, fuzz_cases.W, 3), dtype=np.uint8)
    try:
        with ros_node('seem_fuzz_client', ros_namespace) as node:
            out = fuzz_cases.fuzz(fuzz_cases.FuzzClient(node), seem, fuzz_cases.all_cases(SEED, PER_CATEGORY), scene)
        yield out, seem
    finally:
        if seem.proc.poll() is None:
            assert seem.interrupt() == 0, f'the node did not stop cleanly on SIGINT:\n{seem.log()}'


@pytest.mark.parametrize('category', list(fuzz_cases.CATEGORIES))
def test_category_leaves_the_node_serving(results, category):
    out, seem = results
    result = out[category]
    assert result['alive'], f'{category}: the node died at {result["crashed_at"]}:\n{seem.log()[-3000:]}'
    assert result['reply_s'] < fuzz_cases.REPLY_BOUND_S and result['output_s'] < fuzz_cases.OUTPUT_BOUND_S
    assert result['rss_growth_mb'] < fuzz_cases.RSS_BOUND_MB, result
    if category in ALL_INVALID:
        assert result['counted'] >= 1, f'{category}: no rejection counted in ~/diagnostics: {result}'
    assert 'Traceback' not in seem.log()

"""The node's parameters: validation, the pipeline and tracker settings they make, and that
config/seem.yaml and the README's parameter table list exactly the declared parameters."""
import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from seem_ros.ros.params import DESCRIPTIONS, RUNTIME, SeemParams, ros_name

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {ros_name(f.name) for f in fields(SeemParams)}


def flatten(node, prefix=''):
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flatten(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def readme_parameters():
    """{name: (default cell, description)} of the README's "The node" parameter table."""
    text = (ROOT / 'README.md').read_text()
    table = text[text.index('### Parameters'):text.index('## Development')]
    rows = re.findall(r'^\| `([a-z_.]+)` \| [a-z\[\]]+ \| ([^|]+) \| ([^|]+) \|$', table, re.M)
    return {name: (default.strip(), description.strip()) for name, default, description in rows}


def test_config_file_and_readme_list_every_declared_parameter():
    config = flatten(yaml.safe_load((ROOT / 'config' / 'seem.yaml').read_text())['/**']['ros__parameters'])
    assert set(config) == DECLARED
    assert set(DESCRIPTIONS) == DECLARED
    documented = readme_parameters()
    assert set(documented) == DECLARED
    for name in DECLARED:
        assert documented[name][1].startswith('*runtime*') == (name in RUNTIME), name
    defaults = SeemParams()
    for f in fields(SeemParams):
        value = getattr(defaults, f.name)
        if isinstance(value, (bool, int, float)) and not isinstance(value, tuple):
            shown = str(value).lower() if isinstance(value, bool) else repr(value)
            assert documented[ros_name(f.name)][0].startswith(f'`{shown}`'), (f.name, documented[ros_name(f.name)])


def test_tracking_and_depth_parameters_make_the_pipeline_config():
    params = SeemParams.from_values({'tracking.min_confidence': 0.3, 'tracking.lost_timeout': 12.0,
                                     'tracking.reid_similarity': 0.8, 'tracking.everything.min_hits': 2,
                                     'tracking.everything.max_misses': 9, 'tracking.everything.lost_timeout': 1.5,
                                     'pipeline.score_threshold': 0.7})
    config = params.pipeline_config()
    assert (config.prompted.min_confidence, config.prompted.lost_timeout_s, config.prompted.reid_similarity) == (
        0.3, 12.0, 0.8)
    e = config.everything
    assert (e.min_hits, e.max_misses, e.lost_timeout_s, e.reid_similarity, e.min_score) == (2, 9, 1.5, 0.8, 0.7)


@pytest.mark.parametrize('name,value', [
    ('tracking.min_confidence', 1.5), ('tracking.reid_similarity', -0.1), ('tracking.lost_timeout', -1.0),
    ('tracking.everything.min_hits', 0), ('tracking.everything.max_misses', -1), ('pipeline.score_threshold', 2.0),
    ('depth.slop_ms', -5.0), ('depth.max_depth', 0.0), ('depth.erode_px', -1), ('depth.min_points', 0),
])
def test_invalid_values_name_the_parameter(name, value):
    with pytest.raises(ValueError, match=re.escape(name)):
        SeemParams.from_values({name: value})

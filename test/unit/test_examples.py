"""The documented Python API example runs end to end (tiny variant, synthetic weights)."""
import subprocess
import sys
from pathlib import Path

import reference

EXAMPLE = Path(__file__).resolve().parents[2] / 'examples' / 'python_api.py'


def test_python_api_example_runs(synthetic_checkpoint):
    out = subprocess.run([sys.executable, str(EXAMPLE), '--checkpoint', str(synthetic_checkpoint('tiny')),
                          '--variant', 'tiny', '--image', str(reference.FIXTURES / 'image_a.png'),
                          '--short-side', '96'], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for line in ('encoded 310x250', 'round 2:', 'grounded queries:', 'referred:', 'semantic maps: (3, 250, 310)',
                 'panoptic segments:'):
        assert line in out.stdout

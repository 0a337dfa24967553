"""Fixtures of the DDS tests."""
import subprocess
import sys

import pytest


@pytest.fixture(scope='session')
def checkpoint(tmp_path_factory):
    """A Tiny checkpoint of synthetic weights, written by ``seem-ros synth-checkpoint`` (the CLI a user runs)."""
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pt'
    subprocess.run([sys.executable, '-m', 'seem_ros.cli.main', 'synth-checkpoint', '--variant', 'tiny',
                    '--out', str(path)], check=True, capture_output=True, timeout=300)
    return path

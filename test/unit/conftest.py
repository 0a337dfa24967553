"""Fixtures for model tests: synthetic official-format checkpoints written by the real command."""
import pytest

from seem_ros.cli.main import main as seem_ros_main


@pytest.fixture(scope='session')
def synthetic_checkpoint(tmp_path_factory):
    """``synthetic_checkpoint(variant)`` -> path of a ``seem-ros synth-checkpoint`` file (cached per session)."""
    made = {}

    def make(variant):
        if variant not in made:
            path = tmp_path_factory.mktemp('ckpt') / f'{variant}.pt'
            assert seem_ros_main(['synth-checkpoint', '--variant', variant, '--out', str(path)]) == 0
            made[variant] = path
        return made[variant]
    return make

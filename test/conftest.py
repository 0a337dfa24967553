"""Shared test setup: every ROS test runs isolated from any other ROS traffic.

At import time, before any test can call ``rclpy.init()``, DDS discovery is limited to this machine
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, so nothing goes out on the network) and a random
``ROS_DOMAIN_ID`` is chosen. Both are set in ``os.environ``, so subprocesses started by tests
inherit them. Tests that may share a domain with a concurrent run on the same machine still get
their own topic namespace from the ``ros_namespace`` fixture.
"""
import os
import random
import uuid

import pytest

os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['ROS_DOMAIN_ID'] = str(random.SystemRandom().randint(1, 101))
# Parallel workers (pytest-xdist) share the cores: one compute thread each, for torch in the
# worker and for the nodes and commands it starts (busy-waiting OpenMP threads of two processes
# on two cores slow both down).
if os.environ.get('PYTEST_XDIST_WORKER'):
    os.environ['OMP_NUM_THREADS'] = '1'
for _name in ('ROS_LOCALHOST_ONLY', 'ROS_STATIC_PEERS', 'ROS_DISCOVERY_SERVER',
              'FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE'):
    os.environ.pop(_name, None)


def pytest_report_header():
    return f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST"


@pytest.fixture(scope='module')
def ros_namespace():
    """A ROS namespace that no other test module or test run uses, e.g. ``/t_3f2a9c0d1e``."""
    return f'/t_{uuid.uuid4().hex[:10]}'


@pytest.fixture(scope='session', autouse=True)
def export_cache(tmp_path_factory):
    """One export cache (``SEEM_ROS_CACHE``, :mod:`seem_ros.runtime.export_cache`) for the whole run,
    shared by parallel workers (pytest-xdist) and inherited by the nodes and commands tests
    start: graphs of a model and size are exported once."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base) / 'export_cache'
    os.environ['SEEM_ROS_CACHE'] = str(path)
    return path


# The longest test files (minutes each: exports and end-to-end replays on both backends) are
# collected first, so that parallel workers (pytest-xdist, whole files) start them early and the
# short files fill in around them instead of leaving one worker on a long file at the end.
LONGEST_FIRST = ('test_backend_parity_demo.py', 'test_backend_parity_bags.py', 'test_export_onnx.py',
                 'test_node_tracking.py', 'test_camera_frames.py', 'test_replay.py')


def pytest_configure(config):
    if os.environ.get('PYTEST_XDIST_WORKER'):
        import torch
        torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))

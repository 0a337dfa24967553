"""pip install of the seem_ros Python library and its console scripts (the dev venv, tools/setup.sh).

The interfaces (seem_ros.msg, seem_ros.srv) are not built here but by CMake (CMakeLists.txt);
a colcon build installs everything through CMake alone. The distribution is named
seem_ros_python because rosidl already registers a distribution named seem_ros for the
generated package, and pip would treat the two as one.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'<version>([^<]+)</version>', (Path(__file__).parent / 'package.xml').read_text()).group(1)

setup(
    name='seem_ros_python',
    version=VERSION,
    description='SEEM (Segment Everything Everywhere All at Once) for ROS 2',
    license='Apache-2.0',
    packages=find_packages(include=['seem_ros', 'seem_ros.*']),
    package_data={'seem_ros': ['**/*.tsv', '**/*.json', '**/*.yaml', 'ui/static/*']},
    python_requires='>=3.10',
    entry_points={'console_scripts': ['seem-ros = seem_ros.cli.main:main', 'seem-node = seem_ros.ros.seem_node:main',
                                      'seem-ui = seem_ros.ui.server:main']},
)

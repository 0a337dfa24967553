"""seem_ros is one package from two places: the generated interfaces and the library.

In the dev venv the library comes from the source tree (editable install); in a colcon install it
is merged into the generated package. Either way both import, from any working directory.
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = """
import seem_ros.mask_codec, seem_ros.cli.main, seem_ros.msg
from seem_ros.msg import Prompt
from seem_ros.srv import SetObject
print(seem_ros.mask_codec.__file__)
print(seem_ros.msg.__file__)
print(Prompt.__module__, SetObject.__module__)
"""


@pytest.mark.parametrize('cwd', [ROOT, Path('/')], ids=['source-root', 'elsewhere'])
def test_library_and_interfaces_import_together(cwd):
    run = subprocess.run([sys.executable, '-c', CHECK], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    codec_file, msg_file, modules = run.stdout.splitlines()
    generated_package = Path(msg_file).resolve().parents[1]
    assert Path(codec_file).resolve() in (ROOT / 'seem_ros' / 'mask_codec.py', generated_package / 'mask_codec.py')
    assert modules == 'seem_ros.msg._prompt seem_ros.srv._set_object'

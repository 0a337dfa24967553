"""`make demo`'s current target, tools/interfaces_demo.py, runs end to end."""
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / 'tools' / 'interfaces_demo.py'


def test_interfaces_demo_exchanges_prompt_and_tracked_objects():
    run = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "<-- SetObject reply: success=True object_id=1" in run.stdout
    assert "<-- TrackedObjectArray: frame_id='camera' image 40x16, 1 object(s)" in run.stdout
    assert run.stdout.rstrip().endswith('interfaces demo: OK')

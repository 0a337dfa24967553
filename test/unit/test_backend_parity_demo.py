"""Backend parity of ``seem-ros demo`` (its own bag: 320x240, 15 Hz, 10 s, four scripted prompts)
with the shipped model: eager torch against the exported graphs on onnxruntime (exported on first
use, as users get them). Both runs give the same ids and states on every frame, and each
object's masks agree with IoU >= 0.98."""
import subprocess
import sys

import pytest
from rclpy.serialization import deserialize_message

from backend_parity import MODEL, ROOT, assert_same_tracks, tracked
from seem_ros.msg import TrackedObjectArray
from seem_ros.replay.bagio import BagReader

BACKENDS = ('torch', 'onnxruntime')

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason='the shipped model is missing')


@pytest.fixture(scope='module')
def demos(tmp_path_factory):
    """backend -> (``seem-ros demo`` output directory, its stdout), default settings."""
    runs = {}
    for backend in BACKENDS:
        out = tmp_path_factory.mktemp(f'demo_{backend}')
        run = subprocess.run([sys.executable, '-m', 'seem_ros.cli.main', 'demo', '--out', str(out),
                              '--backend', backend], capture_output=True, text=True, timeout=900, cwd=ROOT)
        assert run.returncode == 0, run.stdout + run.stderr
        runs[backend] = out, run.stdout
    return runs


@pytest.mark.parametrize('backend', BACKENDS)
def test_demo_runs_on_the_backend(demos, backend):
    out, stdout = demos[backend]
    assert 'frames       150 in, 150 out' in stdout and '4 applied (4 from /seem/prompt)' in stdout
    rows = stdout.split('3. masks against the ground truth')[1].splitlines()[2:6]
    assert [r.split()[0] for r in rows] == ['text', 'click', 'box', 'reference']
    for row in rows:          # every prompted object is right (IoU > 0.5) on most of its visible frames
        good, total = int(row.split()[-3]), int(row.split()[-1])
        assert good >= 0.6 * total, row
    with BagReader(out / 'output_bag') as reader:
        assert {t.name: t.count for t in reader.topics.values()} == {
            '/seem/objects': 150, '/seem/label_image': 150, '/seem/overlay': 150}
    assert (out / 'overlay.mp4').stat().st_size > 0 and len(list(out.glob('overlay_*.png'))) == 4
    with BagReader(out / 'output_bag') as reader:
        *_, last = reader.messages(['/seem/objects'])
    objects = deserialize_message(last.data, TrackedObjectArray).objects
    assert objects and all(o.has_position for o in objects if o.state != o.LOST), 'the demo places objects in 3D'


def test_demo_gives_the_same_ids_and_masks_on_both_backends(demos):
    eager, graphs = (tracked(demos[b][0] / 'output_bag') for b in BACKENDS)
    assert len(eager) == 150
    assert len(assert_same_tracks(eager, graphs)) == 4

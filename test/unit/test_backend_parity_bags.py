"""Backend parity on camera-sized bags: generated 640x480 bags replay on
onnxruntime with every frame out and the same ids, states and masks as on torch (their referring
patches, of another size than the camera, and the trackers' references go through the one
exported size); a frame of a size that was not exported fails alone: counted, logged once, the
others written.

Scenarios: 'demo' (an occlusion, an exit and re-entry, and every prompt kind: text, click, box,
referring patch) and 'random' (seeded paths with depth changes and exits); 'occlusion' and
'exit_reentry' are the same events scripted apart, and are covered on torch by the tracking
benchmark and on both backends by test/ros/test_node_tracking.py's demo bag."""
import pytest

from backend_parity import MODEL, assert_same_tracks, tracked
from seem_ros.cli.main import main as seem_ros
from seem_ros.replay.bagio import BagReader
from seem_ros.runtime.export_cache import cached_export

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason='the shipped model is missing')


@pytest.fixture(scope='module')
def graphs_640x480():
    """The shipped model's graphs for 640x480 camera images at its short side (the export cache)."""
    return cached_export(MODEL, variant='tiny', version='v1', height=480, width=640, short_side=120)


@pytest.mark.parametrize('scenario', ['demo', 'random'])
def test_generated_640x480_bags_replay_alike_on_both_backends(scenario, graphs_640x480, tmp_path, capsys):
    """A scenario at 640x480 (its referring patch is of another size than the camera, and the
    trackers' references go through the one exported size): every frame out on onnxruntime, no
    object's prompt failing, and the same ids, states and masks as eager torch."""
    bag = tmp_path / 'bag'
    assert seem_ros(['generate', '--out', str(bag), '--scenario', scenario, '--seed', '777', '--fps', '5']) == 0
    runs = {}
    for backend, extra in (('torch', []), ('onnxruntime-cpu', ['--onnx-dir', str(graphs_640x480)])):
        capsys.readouterr()
        out = tmp_path / backend
        assert seem_ros(['replay', str(bag), '--out', str(out), '--backend', backend, *extra]) == 0, \
            capsys.readouterr().err
        stdout, stderr = capsys.readouterr()
        runs[backend] = tracked(out)
        frames = len(runs[backend])
        assert f'frames       {frames} in, {frames} out' in stdout and 'FAILED' not in stdout, stdout
        assert 'prompt failed' not in stderr, stderr
    assert assert_same_tracks(runs['torch'], runs['onnxruntime-cpu'])


def test_a_frame_the_graphs_cannot_take_is_counted_and_the_others_are_written(graphs_640x480, tmp_path, capsys):
    """A 640x480 bag whose camera switches to 640x360 for frames 3 and 4: the graphs exported for
    640x480 (model input 160x128) cannot take their model input (224x128; an unexported size is
    an export-time decision). They are
    counted and logged once per cause; every other frame is processed and written, the
    objects keep being tracked, and the exit code says that frames failed."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from seem_ros.scenes import build_scene, render_frame
    from seem_ros.scenes.bag import TOPICS, image_msg, typestore, write_bag

    frames, switched = 8, {3, 4}
    bag, mixed = tmp_path / 'bag', tmp_path / 'mixed'
    write_bag(build_scene('demo', 0, width=640, height=480, frames=frames), bag)
    wide = build_scene('demo', 0, width=640, height=360, frames=frames)
    ts = typestore()
    with BagReader(bag) as reader, Writer(mixed, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {t.name: writer.add_connection(t.name, t.msgtype, typestore=ts)
                       for t in reader.topics.values()}
        k = 0
        for m in reader.messages(list(connections)):
            data = m.data
            if m.topic == TOPICS['image']:
                if k in switched:
                    msg = image_msg(ts, render_frame(wide, k).rgb, 'rgb8', m.log_time_ns)
                    data = ts.serialize_cdr(msg, 'sensor_msgs/msg/Image')
                k += 1
            writer.write(connections[m.topic], m.log_time_ns, data)
    assert seem_ros(['replay', str(mixed), '--out', str(tmp_path / 'out'), '--backend', 'onnxruntime-cpu',
                     '--onnx-dir', str(graphs_640x480)]) == 1
    stdout, stderr = capsys.readouterr()
    assert f'frames       {frames} in, {frames - len(switched)} out' in stdout, stdout
    failed = [line for line in stdout.splitlines() if 'FAILED' in line]
    assert len(failed) == 1 and failed[0].split()[1] == str(len(switched)) and 'encoder-128x224' in failed[0], stdout
    assert stderr.count('error: frame 3 ') == 1 and 'error: frame 4 ' not in stderr, stderr
    assert f'{len(switched)} of {frames} frames failed' in stderr
    out = tracked(tmp_path / 'out')
    assert len(out) == frames - len(switched)
    assert set(out[2]) and set(out[-1]) >= set(out[2])                 # the same objects, still tracked
    assert any(mask.any() for _, mask in out[-1].values())

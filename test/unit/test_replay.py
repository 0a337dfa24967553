"""``seem-ros replay`` offline: generated 12-frame bags (MCAP and sqlite3) through the node's pipeline
with a synthetic tiny checkpoint; bag and YAML prompts; damaged bags, missing topics, unknown types;
3D from the bag's depth with the shipped model."""
import contextlib
import io
import math
import re
import shutil
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapReader, read_string
from rosbags.typesys import get_types_from_msg
from sensor_msgs.msg import Image

from seem_ros.cli.main import main as seem_ros
from seem_ros.mask_codec import CompactMask
from seem_ros.msg import TrackedObjectArray
from seem_ros.replay import bagio
from seem_ros.replay.bagio import BagDamaged, BagError, BagReader, cdr_stamp_ns
from seem_ros.replay.prompts_yaml import PromptFileError, load_prompts
from seem_ros.scenes.bag import TOPICS, read_ground_truth, typestore, write_bag
from seem_ros.scenes.render import build_scene

ROOT = Path(__file__).resolve().parents[2]
N, H, W = 12, 120, 160
BAG_PROMPTS = {'text_2', 'click_3', 'box_1', 'reference_4'}


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    """storage -> a generated 12-frame 160x120 demo bag (with its four scripted prompts)."""
    root = tmp_path_factory.mktemp('bags')
    scene = build_scene('demo', 0, width=W, height=H, frames=N)
    out = {}
    for storage in ('mcap', 'sqlite3'):
        write_bag(scene, root / storage, storage=storage)
        out[storage] = root / storage
    return out


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'tiny.pt'
    assert seem_ros(['synth-checkpoint', '--variant', 'tiny', '--out', str(path)]) == 0
    return path


def replay(bag, out, checkpoint, *extra):
    """Run ``seem-ros replay`` in-process; returns its exit code."""
    return seem_ros(['replay', str(bag), '--out', str(out), '--checkpoint', str(checkpoint), '--variant', 'tiny',
                     '--short-side', '32', *map(str, extra)])


def input_frames(bag):
    """[(log time, header stamp)] of the bag's images."""
    with BagReader(bag) as reader:
        return [(m.log_time_ns, cdr_stamp_ns(m.data)) for m in reader.messages(['/camera/image_raw'])]


def outputs(out):
    """[(log time, TrackedObjectArray, label Image)] of an output bag, in order."""
    with BagReader(out) as reader:
        objects, labels = [], []
        for m in reader.messages(['/seem/objects', '/seem/label_image']):
            if m.topic == '/seem/objects':
                objects.append((m.log_time_ns, deserialize_message(m.data, TrackedObjectArray)))
            else:
                labels.append(deserialize_message(m.data, Image))
    assert len(objects) == len(labels)
    return [(t, o, lab) for (t, o), lab in zip(objects, labels)]


def stamp(header):
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def check_frame(objects, label):
    """Label image format and ids consistent with the object array (masks decode to the image size)."""
    assert objects.header == label.header
    assert (label.encoding, label.height, label.width, label.step) == ('mono16', H, W, 2 * W)
    assert (objects.image_height, objects.image_width) == (H, W)
    labels = np.frombuffer(bytes(label.data), '<u2').reshape(H, W)
    shown = {o.id: o for o in objects.objects if o.state != o.LOST}
    assert set(np.unique(labels)) - {0} <= set(shown)
    for o in shown.values():
        mask = CompactMask(o.mask_x_offset, o.mask_y_offset, o.mask_width, o.mask_height,
                           np.asarray(o.mask_rle)).to_mask(H, W)
        assert not (labels == o.id)[~mask].any()


@pytest.fixture(scope='module')
def replayed(bags, checkpoint, tmp_path_factory):
    """storage -> (exit code, output dir, stdout, stderr) of a full replay with video and PNGs."""
    root = tmp_path_factory.mktemp('replayed')
    runs = {}
    for storage, bag in bags.items():
        out = root / storage
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = replay(bag, out / 'bag', checkpoint, '--video', out / 'overlay.mp4', '--png-dir', out / 'png',
                          '--pngs', 3, '--overlay', '--progress')
        runs[storage] = (code, out, stdout.getvalue(), stderr.getvalue())
    return runs


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_one_output_per_frame_with_the_input_stamps(bags, replayed, storage):
    code, out, _, err = replayed[storage]
    assert code == 0, err
    with BagReader(out / 'bag') as reader:
        assert reader.storage == storage
        assert {t.name: t.count for t in reader.topics.values()} == {
            '/seem/objects': N, '/seem/label_image': N, '/seem/overlay': N}
    frames = outputs(out / 'bag')
    assert [(t, stamp(o.header)) for t, o, _ in frames] == input_frames(bags[storage])
    for _, objects, label in frames:
        check_frame(objects, label)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_prompts_become_objects(replayed, storage):
    frames = outputs(replayed[storage][1] / 'bag')
    last = frames[-1][1]
    assert {o.label for o in last.objects} == BAG_PROMPTS
    assert len({o.id for o in last.objects}) == 4
    ids = {o.label: o.id for o in last.objects}
    for _, objects, _ in frames:   # ids never change
        assert all(ids[o.label] == o.id for o in objects.objects)


def test_video_pngs_summary_and_progress(replayed):
    _, out, stdout, stderr = replayed['mcap']
    video = cv2.VideoCapture(str(out / 'overlay.mp4'))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == N
    ok, image = video.read()
    assert ok and image.shape == (H, W, 3)
    pngs = sorted((out / 'png').glob('overlay_*.png'))
    assert len(pngs) == 3 and cv2.imread(str(pngs[0])).shape == (H, W, 3)
    assert f'frames       {N} in, {N} out' in stdout
    assert 'prompts      4 applied (4 from /seem/prompt), 0 rejected' in stdout
    assert '4 ids seen' in stdout
    for stage in ('encoder', 'decoder', 'postprocess', 'total'):
        assert re.search(rf'^\s+{stage}\s+[\d.]+\s+[\d.]+$', stdout, re.M), stdout
    assert re.search(rf'replay: 100%\|.*\| {N}/{N} ', stderr)   # --progress forces the bar off a terminal


INFINITE = {'sec': 9223372036, 'nsec': 854775807}
NODE_QOS = [{'history': 'keep_last', 'depth': 1, 'reliability': 'reliable', 'durability': 'volatile',
             'deadline': INFINITE, 'lifespan': INFINITE, 'liveliness': 'automatic',
             'liveliness_lease_duration': INFINITE, 'avoid_ros_namespace_conventions': False}]


def output_topics(bag):
    """topic name -> topic_metadata of the bag's metadata.yaml."""
    info = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    return {t['topic_metadata']['name']: t['topic_metadata'] for t in info['topics_with_message_count']}


def offered_qos(path):
    """topic -> offered QoS profiles, as rosbags reads them from ``path`` (a bag directory: its
    metadata.yaml; a storage file: MCAP channel metadata or the sqlite topics table)."""
    with Reader(path) as reader:
        return {c.topic: c.ext.offered_qos_profiles for c in reader.connections}


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_output_bag_offers_the_node_qos(replayed, storage):
    """Each output topic offers the QoS of the node's publisher (qos.depth 1) as rosbag2 records it,
    in metadata.yaml and in the storage file."""
    _, out, _, _ = replayed[storage]
    topics = output_topics(out / 'bag')
    assert {'/seem/objects', '/seem/label_image', '/seem/overlay'} <= set(topics)
    assert all(t['offered_qos_profiles'] == NODE_QOS for t in topics.values())
    storage_file = next((out / 'bag').glob('*.mcap' if storage == 'mcap' else '*.db3'))
    assert offered_qos(storage_file) == offered_qos(out / 'bag')


def mcap_channel_metadata(path):
    """topic -> the metadata map of its channel in the MCAP file ``path``."""
    reader = McapReader(path)
    reader.open()
    try:
        out = {}
        for channel in reader.channels.values():
            raw, entries = io.BytesIO(channel.metadata), {}
            while raw.tell() < len(channel.metadata):
                key = read_string(raw)
                entries[key] = read_string(raw)
            out[channel.topic] = entries
        return out
    finally:
        reader.close()


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_output_bag_names_jazzy_and_type_hashes(replayed, storage):
    """``ros_distro: jazzy`` where rosbag2 on Jazzy writes it (metadata.yaml, the storage's copy of it,
    the sqlite3 schema table) and each topic's RIHS01 type hash (metadata.yaml, MCAP channel metadata)."""
    _, out, _, _ = replayed[storage]
    bag = out / 'bag'
    assert yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']['ros_distro'] == 'jazzy'
    topics, ts = output_topics(bag), typestore()
    assert all(t['type_description_hash'] == ts.hash_rihs01(t['type']) for t in topics.values())
    storage_file = next(bag.glob('*.mcap' if storage == 'mcap' else '*.db3'))
    if storage == 'mcap':
        channels = mcap_channel_metadata(storage_file)
        assert {name: c['topic_type_hash'] for name, c in channels.items()} == {
            name: t['type_description_hash'] for name, t in topics.items()}
        assert all(set(c) == {'offered_qos_profiles', 'topic_type_hash'} for c in channels.values())
        data = storage_file.read_bytes()
        at = data.index(b'serialized_metadata') + len(b'serialized_metadata')
        embedded = data[at + 4:at + 4 + int.from_bytes(data[at:at + 4], 'little')].decode()
    else:
        db = sqlite3.connect(f'file:{storage_file}?mode=ro', uri=True)
        try:
            assert db.execute('SELECT ros_distro FROM schema').fetchall() == [('jazzy',)]
            (embedded,), = db.execute('SELECT metadata FROM metadata').fetchall()
        finally:
            db.close()
    assert yaml.safe_load(embedded)['ros_distro'] == 'jazzy'


def test_existing_output(bags, checkpoint, tmp_path, capsys):
    (tmp_path / 'out').mkdir()
    assert replay(bags['mcap'], tmp_path / 'out', checkpoint) == 1
    assert 'out exists (pass --overwrite to replace it)' in capsys.readouterr().err
    assert replay(bags['mcap'], tmp_path / 'out', checkpoint, '--overwrite') == 1
    assert 'exists and is not a rosbag2 directory; not replacing it' in capsys.readouterr().err


def test_yaml_prompts(bags, checkpoint, tmp_path):
    """Every prompt kind of the YAML format, by frame or time, applied on its frame; bag prompts ignored."""
    mask = np.zeros((H, W), np.uint8)
    mask[40:70, 60:100] = 255
    cv2.imwrite(str(tmp_path / 'mask.png'), mask)
    ref = np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'ref.png'), ref)
    cv2.imwrite(str(tmp_path / 'ref_mask.png'), np.pad(np.full((10, 20), 255, np.uint8), ((10, 10), (10, 10))))
    (tmp_path / 'prompts.yaml').write_text('''
prompts:
  - {frame: 0, text: the red rectangle}
  - {frame: 2, click: [80.5, 60.5], negative_click: [[5, 5]], name: clicked}
  - {time: 0.2, box: [20, 20, 60, 50], name: boxed}
  - {frame: 4, scribble: [[10, 100], [40, 105], [70, 110]], name: scribbled}
  - {frame: 5, polygon: [[100, 10], [150, 10], [125, 40]], name: polygon}
  - {frame: 6, mask: mask.png, name: masked}
  - {frame: 7, reference: {image: ref.png, mask: ref_mask.png}, name: referred}
''')
    out = tmp_path / 'out'
    assert replay(bags['sqlite3'], out, checkpoint, '--prompts', tmp_path / 'prompts.yaml', '--ignore-bag-prompts',
                  '--storage', 'mcap') == 0
    with BagReader(out) as reader:
        assert reader.storage == 'mcap'
    first = {}
    for k, (_, objects, label) in enumerate(outputs(out)):
        check_frame(objects, label)
        for o in objects.objects:
            first.setdefault(o.label, k)
    assert first == {'the red rectangle': 0, 'clicked': 2, 'boxed': 3, 'scribbled': 4, 'polygon': 5, 'masked': 6,
                     'referred': 7}


@pytest.mark.parametrize('text, error', [
    ('- {frame: 0}', 'prompt 0: has no input'),
    ('- {frame: 0, time: 1, text: a}', 'prompt 0: needs exactly one of frame or time'),
    ('- {text: a}', 'prompt 0: needs exactly one of frame or time'),
    ('- {frame: 0, text: a}\n- {frame: -1, text: b}', 'prompt 1: frame must be an integer >= 0'),
    ('- {frame: 0, colour: red}', 'prompt 0: unknown key(s) colour'),
    ('- {frame: 0, negative_click: [1, 2]}', 'prompt 0: has no positive input'),
    ('- {frame: 0, click: [1, 2, 3]}', 'prompt 0: click must be [x, y]'),
    ('- {frame: 0, box: [5, 5, 1, 1]}', 'prompt 0: box needs x1 > x0'),
    ('- {frame: 0, polygon: [[0, 0], [1, 1]]}', 'prompt 0: a polygon needs at least 3 points'),
    ('- {frame: 0, mask: missing.png}', 'prompt 0: mask: no such file'),
    ('- {frame: 0, reference: {mask: m.png}}', 'prompt 0: reference must be a mapping with image'),
    ('prompts: {frame: 0}', 'expected a non-empty list of prompts'),
    ('- [unclosed', 'not valid YAML'),
])
def test_bad_prompt_files(tmp_path, text, error):
    path = tmp_path / 'p.yaml'
    path.write_text(text)
    with pytest.raises(PromptFileError) as info:
        load_prompts(path)
    assert str(path) in str(info.value) and error in str(info.value)


def test_bad_prompt_file_is_a_usage_error(bags, tmp_path, capsys):
    (tmp_path / 'p.yaml').write_text('- {frame: 0}')
    with pytest.raises(SystemExit) as info:
        seem_ros(['replay', str(bags['mcap']), '--out', str(tmp_path / 'o'), '--prompts', str(tmp_path / 'p.yaml')])
    assert info.value.code == 2 and 'prompt 0: has no input' in capsys.readouterr().err


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_reader_matches_rosbags(bags, storage, monkeypatch):
    """Same messages, same order (log time, then recording order) as rosbags' reader on an intact bag,
    read through rosbags (the recovery reader is never opened)."""
    def no_recovery(path):
        raise AssertionError(f'the recovery reader opened the intact bag {path}')
    monkeypatch.setattr(bagio, '_Recovery', no_recovery)
    with Reader(bags[storage]) as ref:
        expected = [(c.topic, t, bytes(d)) for c, t, d in ref.messages()]
    with BagReader(bags[storage]) as reader:
        got = [(m.topic, m.log_time_ns, bytes(m.data)) for m in reader.messages(reader.topics)]
        assert {t.name: t.count for t in reader.topics.values()}['/camera/image_raw'] == N
    assert got == expected
    with BagReader(next(bags[storage].glob('*.mcap' if storage == 'mcap' else '*.db3'))) as single:
        assert [(m.topic, m.log_time_ns) for m in single.messages(single.topics)] == [g[:2] for g in got]


def damaged_copy(bag, dst):
    shutil.copytree(bag, dst)
    return next(p for p in dst.iterdir() if p.suffix in ('.mcap', '.db3'))


def image_header(data: bytes, frame: int) -> int:
    """Offset of the serialized header of image ``frame`` of the generated bag in a storage file
    (the image is written first of its frame's messages)."""
    ts = typestore()
    head = ts.serialize_cdr(ts.types['std_msgs/msg/Header'](
        stamp=ts.types['builtin_interfaces/msg/Time'](sec=1_700_000_000, nanosec=int(round(frame * 1e9 / 15))),
        frame_id='camera_color_optical_frame'), 'std_msgs/msg/Header')
    return data.index(bytes(head) + b'\x00')     # the header, then the padding before height


def count_images_until_damage(bag, error):
    """Images the reader delivers (reading what replay reads) before it raises :class:`BagDamaged`
    matching ``error``."""
    n = 0
    with pytest.raises(BagDamaged, match=error):
        with BagReader(bag) as reader:
            for m in reader.messages(['/camera/image_raw', '/seem/prompt']):
                n += m.topic == '/camera/image_raw'
    return n


def check_damaged(code, out, frames, first_missing, err):
    """Exit code 1, a clear error, the frames before the damage written with their stamps, a valid bag."""
    assert code == 1
    assert 'damaged' in err and 'frames before the damage were processed and written' in err, err
    got = outputs(out)
    assert 0 < len(got) == first_missing
    assert [(t, stamp(o.header)) for t, o, _ in got] == frames[:first_missing]
    for _, objects, label in got:
        check_frame(objects, label)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_truncated_bag(bags, checkpoint, tmp_path, capsys, storage):
    storage_file = damaged_copy(bags[storage], tmp_path / 'bag')
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[:int(len(data) * 0.6)])
    n = count_images_until_damage(tmp_path / 'bag', 'truncated')
    assert 0 < n < N
    code = replay(tmp_path / 'bag', tmp_path / 'out', checkpoint)
    err = capsys.readouterr().err
    assert 'truncated' in err
    check_damaged(code, tmp_path / 'out', input_frames(bags[storage]), n, err)


def test_corrupt_mcap_record(bags, checkpoint, tmp_path, capsys):
    """A message record with a garbage length in the middle of a chunk: the six images before it are used."""
    storage_file = damaged_copy(bags['mcap'], tmp_path / 'bag')
    data = bytearray(storage_file.read_bytes())
    at = image_header(bytes(data), 6) - 9 - 22    # the record's opcode, length and fixed fields come first
    assert data[at] == 0x05
    data[at + 1:at + 9] = b'\xff' * 8
    storage_file.write_bytes(bytes(data))
    code = replay(tmp_path / 'bag', tmp_path / 'out', checkpoint)
    err = capsys.readouterr().err
    assert 'corrupt chunk' in err
    check_damaged(code, tmp_path / 'out', input_frames(bags['mcap']), 6, err)


def test_corrupt_sqlite_page(bags, checkpoint, tmp_path, capsys):
    storage_file = damaged_copy(bags['sqlite3'], tmp_path / 'bag')
    data = bytearray(storage_file.read_bytes())
    page = image_header(bytes(data), 6) // 4096 * 4096     # the b-tree page holding image 6's row
    data[page:page + 4096] = b'\xa5' * 4096
    storage_file.write_bytes(bytes(data))
    n = count_images_until_damage(tmp_path / 'bag', 'is damaged: sqlite')
    code = replay(tmp_path / 'bag', tmp_path / 'out', checkpoint)
    check_damaged(code, tmp_path / 'out', input_frames(bags['sqlite3']), n, capsys.readouterr().err)


def test_not_a_bag_and_missing_storage_file(tmp_path, checkpoint, capsys):
    assert replay(tmp_path / 'nothing', tmp_path / 'o', checkpoint) == 1
    assert 'no such bag' in capsys.readouterr().err
    (tmp_path / 'empty').mkdir()
    assert replay(tmp_path / 'empty', tmp_path / 'o', checkpoint) == 1
    assert 'is not a rosbag2 bag' in capsys.readouterr().err
    (tmp_path / 'junk.mcap').write_bytes(b'garbage' * 10)
    with pytest.raises(BagError, match='not an MCAP file'):
        BagReader(tmp_path / 'junk.mcap')


def test_missing_topic(bags, checkpoint, tmp_path, capsys):
    assert replay(bags['mcap'], tmp_path / 'o', checkpoint, '--image-topic', '/camera/left/image_raw') == 1
    err = capsys.readouterr().err
    assert 'has no topic /camera/left/image_raw; its topics: /camera/camera_info (sensor_msgs/msg/CameraInfo)' in err
    assert not (tmp_path / 'o').exists()


def custom_bag(path, bag, image_type=None, prompt_definition=None, undefined=False):
    """A copy of ``bag``'s images (and prompts) plus topics of types this environment does not know."""
    ts = typestore()
    ts.register(get_types_from_msg('uint32 count\nstring note', 'acme_msgs/msg/Counter'))
    if prompt_definition:
        del ts.fielddefs['seem_ros/msg/Prompt']
        ts.register(get_types_from_msg(prompt_definition, 'seem_ros/msg/Prompt'))
    with BagReader(bag) as reader, Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        image = writer.add_connection('/camera/image_raw', image_type or 'sensor_msgs/msg/Image', typestore=ts)
        counter = writer.add_connection('/acme/counter', 'acme_msgs/msg/Counter', typestore=ts)
        blob = (writer.add_connection('/acme/blob', 'acme_msgs/msg/Blob', msgdef='', rihs01='RIHS01_' + '0' * 64)
                if undefined else None)
        prompt = (writer.add_connection('/seem/prompt', 'seem_ros/msg/Prompt', typestore=ts)
                  if prompt_definition else None)
        for k, m in enumerate(reader.messages(['/camera/image_raw'])):
            data = (ts.serialize_cdr(ts.types['acme_msgs/msg/Counter'](count=k, note='x'), 'acme_msgs/msg/Counter')
                    if image_type else m.data)
            writer.write(image, m.log_time_ns, data)
            writer.write(counter, m.log_time_ns, ts.serialize_cdr(ts.types['acme_msgs/msg/Counter'](
                count=k, note='frame'), 'acme_msgs/msg/Counter'))
            if blob is not None:
                writer.write(blob, m.log_time_ns, b'\x00\x01\x00\x00garbage')
            if prompt is not None and k == 0:
                writer.write(prompt, m.log_time_ns, ts.serialize_cdr(
                    ts.types['seem_ros/msg/Prompt'](text='a cup', object_id=0), 'seem_ros/msg/Prompt'))


def test_unknown_types(bags, checkpoint, tmp_path, capsys):
    """Types unknown here are registered from the bag (or ignored when it has no definition and
    replay does not need them); an image topic of another type is a clear error."""
    custom_bag(tmp_path / 'extra', bags['mcap'], undefined=True)
    with BagReader(tmp_path / 'extra') as reader:
        assert reader.topics['/acme/blob'].definition == ''
        assert reader.topics['/acme/counter'].definition == 'uint32 count\nstring note\n'
        m = next(reader.messages(['/acme/counter']))
        assert reader.typestore.deserialize_cdr(m.data, m.msgtype).note == 'frame'
    assert replay(tmp_path / 'extra', tmp_path / 'out', checkpoint) == 0
    assert len(outputs(tmp_path / 'out')) == N

    custom_bag(tmp_path / 'wrong_type', bags['mcap'], image_type='acme_msgs/msg/Counter')
    assert replay(tmp_path / 'wrong_type', tmp_path / 'out2', checkpoint) == 1
    assert ('topic /camera/image_raw has type acme_msgs/msg/Counter; expected sensor_msgs/msg/Image or '
            'sensor_msgs/msg/CompressedImage') in capsys.readouterr().err


def test_prompt_definition_from_another_version(bags, checkpoint, tmp_path, capsys):
    custom_bag(tmp_path / 'old', bags['mcap'], prompt_definition='string text\nint32 object_id')
    assert replay(tmp_path / 'old', tmp_path / 'out', checkpoint) == 1
    err = capsys.readouterr().err
    assert "topic /seem/prompt: the bag's definition of seem_ros/msg/Prompt differs from the one installed here" in err
    # without the bag's prompts the images are usable
    assert replay(tmp_path / 'old', tmp_path / 'out', checkpoint, '--ignore-bag-prompts') == 0


@pytest.mark.parametrize('args, error', [
    (['--live', '--video', 'v.mp4', '--short-side', '64'], 'offline options used with --live: --short-side, --video'),
    (['--rate', '2'], 'live options used without --live: --rate'),
])
def test_options_of_the_other_mode_are_usage_errors(bags, tmp_path, capsys, args, error):
    with pytest.raises(SystemExit) as info:
        seem_ros(['replay', str(bags['mcap']), '--out', str(tmp_path / 'o'), *args])
    assert info.value.code == 2 and error in capsys.readouterr().err


@pytest.mark.skipif(not (ROOT / 'models' / 'seem_tiny.pt').is_file(), reason='the shipped model is missing')
def test_depth_topic_places_every_shown_object_in_3d(bags, tmp_path, capsys):
    """With --depth-topic (the bag's aligned 16UC1 depth and its CameraInfo) every shown object
    gets its 3D fields, near the ground truth with the shipped model (the replay's default)."""
    out = tmp_path / 'bag'
    assert seem_ros(['replay', str(bags['mcap']), '--out', str(out), '--depth-topic', TOPICS['depth']]) == 0
    frames = read_ground_truth(bags['mcap']).meta['frames']
    errors = []
    for k, (_, objects, _) in enumerate(outputs(out)):
        truth = {o['id']: o['centroid_m'] for o in frames[k]['objects']}
        for o in objects.objects:
            assert o.has_position == (o.state != o.LOST), (k, o.label)
            if o.position_valid:      # bag prompts are named <kind>_<ground-truth id>
                errors.append(math.dist((o.centroid.x, o.centroid.y, o.centroid.z), truth[int(o.label[-1])]))
    assert len(errors) >= 2 * N and np.median(errors) < 0.02, errors
    capsys.readouterr()
    assert seem_ros(['replay', str(bags['mcap']), '--out', str(tmp_path / 'b'), '--depth-topic', '/nope']) == 1
    assert 'has no topic /nope' in capsys.readouterr().err


def test_demo_without_the_model(tmp_path, capsys):
    assert seem_ros(['demo', '--out', str(tmp_path / 'd'), '--checkpoint', str(tmp_path / 'none.pt')]) == 1
    assert 'the demo model' in capsys.readouterr().err and not (tmp_path / 'd').exists()

"""``seem-ros segment`` end to end: a real process, a synthetic official-format checkpoint, files out."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

import reference

IMAGE = reference.FIXTURES / 'image_a.png'
H, W = 250, 310


def segment(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'seem_ros.cli.main', 'segment', *map(str, args)],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def write_mask(path, x0, y0, x1, y1):
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 255
    cv2.imwrite(str(path), mask)
    return path


@pytest.fixture(scope='module')
def ckpt(synthetic_checkpoint):
    return synthetic_checkpoint('focalt')


def test_help_documents_every_option():
    out = segment('--help')
    assert out.returncode == 0
    for flag in ('--text', '--click', '--box', '--scribble', '--mask-prompt', '--negative-mask', '--referring-image',
                 '--referring-mask', '--prev-mask', '--vocabulary', '--task', '--deterministic', '--variant',
                 '--version', '--out'):
        assert flag in out.stdout


def test_clicks_box_scribble_then_second_round(ckpt, tmp_path):
    first = tmp_path / 'r1'
    out = segment('--image', IMAGE, '--checkpoint', ckpt, '--click', '100,120', '--click', '30,40,neg',
                  '--box', '80,100,140,170', '--scribble', '90,110;120,150', '--deterministic', '--out', first)
    assert out.returncode == 0, out.stderr
    result = np.load(first / 'result.npz')
    assert result['final_masks'].shape == (1, H, W) and result['final_masks'].dtype == bool
    assert result['prev_mask'].shape == (1, 1, 128, 160)    # 250x310 -> 512x634 (default short side 512)
    assert (first / 'overlay.png').exists() and (first / 'mask_00.png').exists()
    second = tmp_path / 'r2'
    out = segment('--image', IMAGE, '--checkpoint', ckpt, '--click', '100,120', '--click', '30,40,neg',
                  '--box', '80,100,140,170', '--scribble', '90,110;120,150', '--click', '150,60,neg',
                  '--prev-mask', first / 'result.npz', '--deterministic', '--out', second)
    assert out.returncode == 0, out.stderr
    assert np.load(second / 'result.npz')['final_masks'].shape == (1, H, W)


def test_mask_prompts_referring_and_text_in_one_run(ckpt, tmp_path):
    pos_a = write_mask(tmp_path / 'a.png', 60, 100, 120, 180)
    neg_a = write_mask(tmp_path / 'na.png', 0, 0, 30, 30)
    pos_b = write_mask(tmp_path / 'b.png', 200, 40, 260, 90)
    out = segment('--image', IMAGE, '--checkpoint', ckpt, '--mask-prompt', pos_a, '--negative-mask', neg_a,
                  '--mask-prompt', pos_b, '--referring-image', IMAGE, '--referring-mask', pos_b,
                  '--text', 'the person on the left', '--deterministic', '--short-side', '0', '--out', tmp_path / 'out')
    assert out.returncode == 0, out.stderr
    result = np.load(tmp_path / 'out' / 'result.npz')
    assert result['final_masks'].shape == (4, H, W)
    assert result['selected_index'][:3].tolist() == [q + 3 * p for p, q in enumerate(result['selected_index'][:3] % 3)]
    assert result['selected_index'][3] == reference.load('c0.matched_id')[0]


def test_semantic_task_matches_official(ckpt, tmp_path):
    out = segment('--image', IMAGE, '--checkpoint', ckpt, '--vocabulary', 'person,dog,cup,sky', '--task', 'semantic',
                  '--short-side', '0', '--out', tmp_path)
    assert out.returncode == 0, out.stderr
    reference.assert_close('a.post.sem_seg', np.load(tmp_path / 'result.npz')['sem_seg'])


@pytest.mark.parametrize('args, names', [
    (['--click', '400,10'], '--click'),
    (['--click', '1,x'], '--click'),
    (['--box', '50,50,10,10'], '--box'),
    (['--mask-prompt', 'missing.png'], '--mask-prompt'),
    (['--text', '  '], '--text'),
    (['--negative-mask', 'n.png'], '--negative-mask'),
    (['--referring-image', 'r.png'], '--referring'),
    (['--task', 'semantic'], '--task'),
    (['--click', '5,5', '--short-side', '-1'], '--short-side'),
])
def test_bad_arguments_exit_2_naming_the_argument(ckpt, tmp_path, args, names):
    out = segment('--image', IMAGE, '--checkpoint', ckpt, *args, '--out', tmp_path)
    assert out.returncode == 2
    assert names in out.stderr and out.stderr.count('\n') == 1


def test_empty_mask_and_missing_checkpoint_exit_2(tmp_path):
    empty = tmp_path / 'empty.png'
    cv2.imwrite(str(empty), np.zeros((H, W), np.uint8))
    out = segment('--image', IMAGE, '--checkpoint', tmp_path / 'none.pt', '--mask-prompt', empty, '--out', tmp_path)
    assert out.returncode == 2 and 'empty' in out.stderr
    out = segment('--image', IMAGE, '--checkpoint', tmp_path / 'none.pt', '--click', '5,5', '--out', tmp_path)
    assert out.returncode == 2 and '--checkpoint' in out.stderr


def test_a_checkpoint_that_says_its_variant_and_size_runs_as_it_says(tmp_path):
    """The shipped model says tiny, v1, short side 120: a 640x480 image becomes 160x120 (padded
    160x128), with no --variant or --short-side."""
    image = tmp_path / 'frame.png'
    cv2.imwrite(str(image), np.full((480, 640, 3), 90, np.uint8))
    shipped = reference.FIXTURES.parents[1] / 'models' / 'seem_tiny.pt'
    out = segment('--image', image, '--checkpoint', shipped, '--click', '320,240', '--out', tmp_path / 'out')
    assert out.returncode == 0, out.stderr
    result = np.load(tmp_path / 'out' / 'result.npz')
    assert result['prev_mask'].shape == (1, 1, 32, 40) and result['final_masks'].shape == (1, 480, 640)

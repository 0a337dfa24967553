"""Camera frames through the official demo's path: Pillow resize, prompts in camera pixels, outputs
at camera resolution.

The official demo resizes the PIL image to short side 512 with Pillow's BICUBIC, draws the user's
prompt on the original image, resizes that drawing bilinearly (``> 0``) and returns every mask at
the original size. These tests state that path independently of ``seem_ros.rasterize`` and check
the predictor, the CLI and the onnxruntime backend against it at 640x480, 1280x720 and an odd
size, on the Focal-T model (synthetic weights in the official format) and the shipped tiny model.
"""
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from std_msgs.msg import Header

from seem_ros.model.postprocess import semantic_inference
from seem_ros.model.preprocess import resize_short_side, resized_size
from seem_ros.predictor import SeemPredictor
from seem_ros.prompts import ObjectPrompt, PromptError
from seem_ros.rasterize import rasterize
from seem_ros.ros.conversions import COLOR_ENCODINGS, image_to_rgb, numpy_to_image
from seem_ros.runtime import create_backend
from seem_ros.runtime.export_cache import cached_export
from seem_ros.scenes.render import build_scene, render_frame

CAMERA_SIZES = [(480, 640), (720, 1280), (301, 457)]
TINY = 'models/seem_tiny.pt'


def pillow_resize(rgb, short_side):
    """The official demo's ``transforms.Resize(short_side, BICUBIC)`` on a PIL image."""
    h, w = rgb.shape[:2]
    short, long = min(h, w), max(h, w)
    new_long = int(short_side * long / short)
    size = (new_long, short_side) if w >= h else (short_side, new_long)      # PIL order: (w, h)
    return np.array(Image.fromarray(rgb).resize(size, Image.BICUBIC))


def camera_frame(height=480, width=640, seed=3):
    """A camera-sized picture: textured background, shapes, blur and noise."""
    return render_frame(build_scene('demo', seed, width=width, height=height), 5).rgb


# ------------------------------------------------------------------------------------------ resize
@pytest.mark.parametrize('shape, short_side', [((480, 640), 512), ((720, 1280), 512), ((301, 457), 512),
                                               ((457, 301), 512), ((1, 9), 4), ((9, 1), 4), ((37, 2), 5),
                                               ((513, 700), 512), ((600, 511), 512), ((64, 64), 17)])
def test_resize_is_pillow_bicubic(shape, short_side):
    rgb = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    want = pillow_resize(rgb, short_side)
    got = resize_short_side(rgb, short_side)
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    assert resized_size(*shape, short_side) == want.shape[:2]
    tensor = resize_short_side(torch.from_numpy(rgb), short_side)
    assert isinstance(tensor, torch.Tensor) and np.array_equal(tensor.numpy(), want)
    assert resize_short_side(rgb, 0) is rgb and resize_short_side(want, short_side) is want


def test_resize_sizes_of_camera_frames():
    assert resized_size(480, 640, 512) == (512, 682)
    assert resized_size(720, 1280, 512) == (512, 910)
    assert resized_size(1080, 1920, 512) == (512, 910)
    assert resized_size(640, 480, 512) == (682, 512)


@pytest.mark.parametrize('encoding', COLOR_ENCODINGS)
def test_every_encoding_reaches_the_model_as_the_pillow_resize_of_its_picture(encoding):
    rgb = camera_frame()
    pixels = {'rgb8': rgb, 'bgr8': rgb[:, :, ::-1], 'mono8': rgb[:, :, 1],
              'rgba8': np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]),
              'bgra8': np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 200, np.uint8)])}[encoding]
    picture = np.repeat(rgb[:, :, 1:2], 3, axis=2) if encoding == 'mono8' else rgb
    decoded = image_to_rgb(numpy_to_image(np.ascontiguousarray(pixels), encoding, Header()))
    assert np.array_equal(resize_short_side(decoded, 512), pillow_resize(picture, 512))


# ------------------------------------------------------------------------------------------ prompts
def drawn_then_resized(drawn, input_size):
    """The demo's mapping of a drawing (0/255 uint8 at the image size) to the model input."""
    tensor = torch.from_numpy(np.ascontiguousarray(drawn))[None, None]
    return (F.interpolate(tensor, size=input_size, mode='bilinear', align_corners=False)[0, 0] > 0).numpy()


def official_drawing(kind, size):
    """(prompt, drawn positive, drawn negative) of one prompt kind, drawn by hand at ``size``."""
    h, w = size
    pos, neg = np.zeros(size, np.uint8), np.zeros(size, np.uint8)
    rows, cols = np.mgrid[:h, :w]
    if kind == 'clicks':
        (x, y), (nx, ny) = (w * 0.41 + 0.7, h * 0.37 + 0.2), (w * 0.8, h * 0.9)
        pos[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = 255
        neg[int(ny) - 1:int(ny) + 2, int(nx) - 1:int(nx) + 2] = 255
        prompt = ObjectPrompt(points=np.array([[x, y], [nx, ny]], np.float32), point_labels=np.array([True, False]))
    elif kind == 'box':
        x0, y0, x1, y1 = w * 0.2 + 0.3, h * 0.3 + 0.6, w * 0.55 + 0.1, h * 0.71
        pos[(cols + 0.5 >= x0) & (cols + 0.5 <= x1) & (rows + 0.5 >= y0) & (rows + 0.5 <= y1)] = 255
        prompt = ObjectPrompt(boxes=np.array([[x0, y0, x1, y1]], np.float32))
    elif kind == 'scribble':
        y, x0, x1 = h // 2, w // 5, w // 2
        pos[y - 1:y + 2, x0 - 1:x1 + 2] = 255
        prompt = ObjectPrompt(scribbles=[np.array([[x0, y], [x1, y]], np.float32)])
    elif kind == 'polygon':
        r0, r1, c0, c1 = h // 3, h // 2, w // 4, w // 3
        pos[r0:r1 + 1, c0:c1 + 1] = 255
        corners = np.array([[c0, r0], [c1, r0], [c1, r1], [c0, r1]], np.float32) + 0.5
        prompt = ObjectPrompt(polygons=[corners])
    else:
        mask = (cols - w * 0.6) ** 2 + (rows - h * 0.4) ** 2 <= (h * 0.1) ** 2
        negative = (cols < w // 10) & (rows < h // 10)
        pos[mask], neg[negative] = 255, 255
        prompt = ObjectPrompt(mask=mask, negative_mask=negative)
    return prompt, pos, neg


KINDS = ['clicks', 'box', 'scribble', 'polygon', 'mask']


@pytest.mark.parametrize('size', CAMERA_SIZES)
@pytest.mark.parametrize('kind', KINDS)
def test_prompts_are_drawn_at_the_image_size_then_resized(size, kind):
    input_size = resized_size(*size, 512)
    prompt, pos, neg = official_drawing(kind, size)
    got_pos, got_neg = rasterize(prompt, size, input_size)
    assert got_pos.shape == input_size and got_pos.any()
    assert np.array_equal(got_pos, drawn_then_resized(pos, input_size))
    assert np.array_equal(got_neg, drawn_then_resized(neg, input_size))
    same_pos, _ = rasterize(prompt, size, size)
    assert np.array_equal(same_pos, pos > 0)


def test_a_prompt_the_resize_erases_is_rejected_with_the_reason():
    click = ObjectPrompt(points=np.array([[1500.2, 1200.7]], np.float32), point_labels=np.array([True]))
    with pytest.raises(PromptError, match='vanishes .* 4000x3000 image is resized to the model input 42x32'):
        rasterize(click, (3000, 4000), resized_size(3000, 4000, 32))
    with pytest.raises(PromptError, match='outside the 640x480 image'):
        rasterize(ObjectPrompt(points=np.array([[640.0, 10.0]], np.float32), point_labels=np.array([True])),
                  (480, 640), (512, 682))
    with pytest.raises(PromptError, match='mask prompt is .*its image is 640x480'):
        rasterize(ObjectPrompt(mask=np.ones((512, 682), bool)), (480, 640), (512, 682))


# ------------------------------------------------------------------------------------------ model
def camera_prompts(size):
    """Three visual objects (clicks, box + scribble, mask) in camera pixels and their drawings."""
    clicks, box, scribble, mask = (official_drawing(k, size) for k in ('clicks', 'box', 'scribble', 'mask'))
    combined = ObjectPrompt(boxes=box[0].boxes, scribbles=scribble[0].scribbles)
    return [(clicks[0], clicks[1], clicks[2]), (combined, np.maximum(box[1], scribble[1]), box[2]),
            (mask[0], mask[1], mask[2])]


def official_final_masks(low, padded_size, input_size, out_size, text=False):
    """Official post-processing of (N, Hp/4, Wp/4) logits: bilinear to the padded input, crop, then
    bicubic antialias (text, ``> 0``) or bilinear (interactive, ``sigmoid > 0.5``) to ``out_size``."""
    x = F.interpolate(torch.as_tensor(low)[None], size=padded_size, mode='bilinear', align_corners=False)
    x = x[..., :input_size[0], :input_size[1]]
    mode = 'bicubic' if text else 'bilinear'
    x = F.interpolate(x, size=out_size, mode=mode, align_corners=False, antialias=text)[0]
    return (x > 0 if text else x.sigmoid() > 0.5).numpy()


@pytest.fixture(scope='module', params=['v1', 'v0'])
def focalt(request, synthetic_checkpoint):
    """(camera predictor at short side 512, model-input predictor without resize), one version."""
    checkpoint = synthetic_checkpoint('focalt')
    make = lambda short: SeemPredictor.from_checkpoint(checkpoint, variant='focalt', version=request.param,  # noqa
                                                       short_side=short)
    return make(512), make(0)


def test_camera_frame_equals_the_resized_frame_with_resized_prompt_masks(focalt):
    camera, model_input = focalt
    frame = camera_frame()
    size, input_size = frame.shape[:2], resized_size(*frame.shape[:2], 512)
    objects = camera_prompts(size)
    camera.set_image(frame)
    model_input.set_image(pillow_resize(frame, 512))
    torch.testing.assert_close(camera._image.features.mask_features, model_input._image.features.mask_features,
                               rtol=0, atol=0)
    got = camera.predict([p for p, _, _ in objects])
    resized = [ObjectPrompt(mask=drawn_then_resized(pos, input_size), negative_mask=drawn_then_resized(neg, input_size))
               for _, pos, neg in objects]
    want = model_input.predict(resized)
    assert got.masks.shape == (3, *size)
    assert np.array_equal(got.selected_index, want.selected_index)
    np.testing.assert_array_equal(got.prev_mask, want.prev_mask)
    np.testing.assert_array_equal(got.scores, want.scores)
    padded = camera._image.features.padded_size
    assert np.array_equal(got.masks, official_final_masks(want.prev_mask, padded, input_size, size))
    assert all(m.any() for m in got.masks)


@pytest.mark.parametrize('focalt', ['v1'], indirect=True)   # the path is the same in v0
def test_text_grounding_comes_back_at_camera_size(focalt):
    camera, _ = focalt
    frame = camera_frame(seed=4)
    camera.set_image(frame)
    result = camera.predict([ObjectPrompt(text='the red rectangle on the left')])
    input_size = resized_size(*frame.shape[:2], 512)
    assert result.masks.shape == (1, 480, 640)
    assert np.array_equal(result.masks, official_final_masks(result.prev_mask, camera._image.features.padded_size,
                                                             input_size, (480, 640), text=True))


@pytest.mark.parametrize('focalt', ['v1'], indirect=True)   # the path is the same in v0
def test_vocabulary_tasks_come_back_at_camera_size(focalt):
    camera, _ = focalt
    frame = camera_frame(720, 1280, seed=5)
    camera.set_image(frame)
    vocabulary = ['rectangle', 'ellipse', 'star']
    sem = camera.semantic(vocabulary)
    assert sem.shape == (3, 720, 1280) and np.isfinite(sem).all()
    features = camera._image.features
    with torch.inference_mode():
        out = camera.backend.decode(features, text_embeddings=camera.backend.vocabulary_embeddings(vocabulary))
    x = F.interpolate(out['pred_masks'].float(), size=features.padded_size, mode='bilinear', align_corners=False)
    x = F.interpolate(x[..., :512, :910], size=(720, 1280), mode='bicubic', align_corners=False, antialias=True)[0]
    np.testing.assert_allclose(sem, semantic_inference(out['pred_logits'][0].float(), x).numpy(), rtol=0, atol=1e-6)
    assert camera.segment_everything(vocabulary, object_mask_threshold=0.0).id_map.shape == (720, 1280)
    instances = camera.instances(vocabulary, top_k=5)
    assert instances['masks'].shape == (5, 720, 1280)


@pytest.mark.parametrize('focalt', ['v1'], indirect=True)   # the path is the same in v0
def test_segment_command_takes_camera_frames_and_camera_pixels(focalt, synthetic_checkpoint, tmp_path):
    camera, _ = focalt
    frame = camera_frame()
    image = tmp_path / 'frame.png'
    cv2.imwrite(str(image), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    prompt, _, _ = official_drawing('box', frame.shape[:2])
    x0, y0, x1, y1 = prompt.boxes[0].tolist()
    out = subprocess.run([sys.executable, '-m', 'seem_ros.cli.main', 'segment', '--image', str(image),
                          '--checkpoint', str(synthetic_checkpoint('focalt')), '--version', camera.version,
                          '--box', f'{x0!r},{y0!r},{x1!r},{y1!r}', '--click', '300.5,200.25',
                          '--deterministic', '--out', str(tmp_path / 'out')],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = np.load(tmp_path / 'out' / 'result.npz')
    camera.set_image(frame)
    want = camera.predict([ObjectPrompt(points=np.array([[300.5, 200.25]], np.float32),
                                        point_labels=np.array([True]), boxes=prompt.boxes)])
    assert result['final_masks'].shape == (1, 480, 640)
    assert np.array_equal(result['final_masks'], want.masks)
    # logits of another process: equal up to float32 summation order (its kernels may differ in threads)
    np.testing.assert_allclose(result['prev_mask'][0], want.prev_mask, rtol=0,
                               atol=1e-5 * np.abs(want.prev_mask).max())


# ------------------------------------------------------------------------------------------ graphs
@pytest.fixture(scope='module')
def tiny_backends():
    """The shipped tiny model on torch and on its graphs exported for 640x480 at short side 120
    (the export cache that the backend-parity, node and TensorRT-readiness tests share)."""
    torch_backend = create_backend('torch-cpu', checkpoint=TINY, variant='tiny')
    graphs = cached_export(TINY, variant='tiny', version='v1', height=480, width=640, short_side=120)
    return torch_backend, create_backend('onnxruntime-cpu', onnx_dir=graphs)


def test_onnxruntime_graphs_take_camera_frames_and_camera_pixels_as_torch(tiny_backends):
    frame = camera_frame()
    prompts = [p for p, _, _ in camera_prompts(frame.shape[:2])] + [ObjectPrompt(text='the yellow star')]
    results = []
    for backend in tiny_backends:
        predictor = SeemPredictor(backend, short_side=120)
        predictor.set_image(frame)
        results.append(predictor.predict(prompts))
    want, got = results
    assert got.masks.shape == (4, 480, 640)
    assert np.array_equal(got.selected_index, want.selected_index)
    for a, b in zip(got.masks, want.masks):
        assert (a & b).sum() / max((a | b).sum(), 1) >= 0.99
    np.testing.assert_allclose(got.prev_mask, want.prev_mask, rtol=0, atol=1e-3 * np.abs(want.prev_mask).max())


def test_pipeline_of_node_and_replay_gives_the_predictor_masks_on_camera_frames(tiny_backends):
    """The node and bag replay run :class:`Pipeline`: an object prompted in camera pixels on a
    640x480 frame comes out with the predictor's camera-resolution mask."""
    from seem_ros.pipeline import Frame, Pipeline, PipelineConfig
    frame = camera_frame()
    prompt = ObjectPrompt(points=np.array([[321.5, 240.25]], np.float32), point_labels=np.array([True]))
    predictor = SeemPredictor(tiny_backends[0], short_side=120)
    pipeline = Pipeline(predictor, PipelineConfig())
    object_id, _ = pipeline.add_object(prompt)
    result = pipeline.process(Frame(frame, 1, 'camera'))
    (obj,) = result.objects
    predictor.set_image(frame)
    want = predictor.predict([prompt]).masks[0]
    assert obj.id == object_id and obj.mask.shape == (480, 640)
    assert np.array_equal(obj.mask, want) and want.any()

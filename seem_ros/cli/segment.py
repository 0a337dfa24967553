"""``seem-ros segment``: run SEEM on one image with any composition of prompts, without ROS.

Objects (one output mask each, in this order):

1. all ``--click``/``--box``/``--scribble`` flags together designate ONE object (negative clicks
   refine it);
2. each ``--mask-prompt`` is one object; a ``--negative-mask`` belongs to the ``--mask-prompt``
   before it;
3. ``--referring-image`` + ``--referring-mask`` is one object (the object marked in another image);
4. each ``--text`` is one object (text grounding).

Coordinates and sizes: clicks, boxes, scribbles and mask files are in pixels of ``--image`` (x to the
right, y down, origin at the top-left corner; a referring mask in pixels of ``--referring-image``).
The image is resized to ``--short-side`` with Pillow's bicubic resize (the official demo's), each
prompt is drawn at the image's own size and resized bilinearly to the model input (``> 0``), and
every output comes back at the size of ``--image``.

Writes to ``--out``: ``mask_XX.png`` per object, ``overlay.png`` and ``result.npz`` with
``final_masks`` (P, H, W) bool, ``scores`` (P,), ``selected_index`` (P,) (v1: index into the
3·P spatial queries; v0: into the 101 queries; text: the matched grounding query), ``prev_mask``
(1, P, h/4, w/4) low-resolution logits to pass back with ``--prev-mask`` in the next round, and
``labels``. ``--task`` adds ``sem_seg`` (K, H, W), ``panoptic_seg`` (H, W) + ``segments_*``,
or ``instance_*`` arrays for the ``--vocabulary``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

EXIT_BAD_ARGUMENT = 2


class ArgumentProblem(Exception):
    """A command-line value that cannot be used; the message names the argument."""


def _floats(text, count, flag):
    try:
        values = [float(v) for v in text.split(',')]
    except ValueError:
        raise ArgumentProblem(f'{flag} {text!r}: expected {count} comma-separated numbers') from None
    if len(values) != count:
        raise ArgumentProblem(f'{flag} {text!r}: expected {count} comma-separated numbers')
    return values


def _click(text):
    parts = text.split(',')
    negative = len(parts) == 3 and parts[2].strip().lower() in ('neg', 'negative', '0', '-')
    if len(parts) == 3 and not negative and parts[2].strip().lower() not in ('pos', 'positive', '1', '+'):
        raise ArgumentProblem(f'--click {text!r}: the third field must be "neg" or "pos"')
    x, y = _floats(','.join(parts[:2]), 2, '--click')
    return (x, y), not negative


def _polyline(text, flag):
    points = [_floats(p, 2, flag) for p in text.split(';') if p.strip()]
    if len(points) < 1:
        raise ArgumentProblem(f'{flag} {text!r}: expected "x,y;x,y;..."')
    return np.array(points, np.float32)


def _read_image(path, flag, grayscale=False):
    import cv2
    if not Path(path).is_file():
        raise ArgumentProblem(f'{flag} {path}: file not found')
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ArgumentProblem(f'{flag} {path}: cannot read the image file')
    return img if grayscale else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_mask(path, flag, shape):
    mask = _read_image(path, flag, grayscale=True) > 0
    if mask.shape != tuple(shape):
        raise ArgumentProblem(f'{flag} {path}: mask is {mask.shape[1]}x{mask.shape[0]}, '
                              f'the image is {shape[1]}x{shape[0]}')
    if not mask.any():
        raise ArgumentProblem(f'{flag} {path}: the mask is empty')
    return mask


def build_parser(parser=None):
    """Add the ``segment`` arguments to ``parser`` (a new parser when None)."""
    p = parser or argparse.ArgumentParser(prog='seem-ros segment')
    p.description = __doc__.split('\n\n')[0]
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = __doc__.split('\n\n', 1)[1]
    p.add_argument('--image', required=True, help='input RGB image (PNG/JPEG)')
    p.add_argument('--checkpoint', required=True, help='SEEM checkpoint (.pt, official format)')
    p.add_argument('--variant', help='model variant: focalt | focall | tiny (default: what the checkpoint says, '
                                     'else focalt)')
    p.add_argument('--version', choices=('v1', 'v0'), help='decoder version (default: what the checkpoint says, '
                                                         'else v1)')
    p.add_argument('--text', action='append', default=[], help='referring text; one object per flag')
    p.add_argument('--click', action='append', default=[], metavar='X,Y[,neg]',
                   help='click in pixels (x right, y down); ",neg" makes it negative')
    p.add_argument('--box', action='append', default=[], metavar='X0,Y0,X1,Y1', help='box in pixels (XYXY)')
    p.add_argument('--scribble', action='append', default=[], metavar='"X,Y;X,Y;..."', help='stroke through pixels')
    p.add_argument('--mask-prompt', action='append', default=[], metavar='POS.png',
                   help='object mask (nonzero = object), one object per flag')
    p.add_argument('--negative-mask', action='append', default=[], metavar='NEG.png',
                   help='negative mask for the preceding --mask-prompt')
    p.add_argument('--referring-image', help='reference image in which the object is marked')
    p.add_argument('--referring-mask', help='mask of the object in --referring-image')
    p.add_argument('--prev-mask', help='result.npz (or .npz with "prev_mask") of the previous round')
    p.add_argument('--vocabulary', help='comma-separated class names for --task')
    p.add_argument('--task', choices=('semantic', 'panoptic', 'instance'), help='vocabulary task to run')
    p.add_argument('--deterministic', action='store_true',
                   help='deterministic prompt sampling and query choice (reproducible runs)')
    p.add_argument('--short-side', type=int,
                   help='model input short side: the image (and the referring image) is resized so its short '
                        'side has this length (default: what the checkpoint says, else 512 as the official demo; '
                        '0 = no resize)')
    p.add_argument('--device', default='cpu', help='torch device (cpu, cuda, cuda:1, ...)')
    p.add_argument('--out', required=True, help='output directory')
    return p


def _negative_mask_owners(argv):
    """Index of the --mask-prompt each --negative-mask follows (argparse loses the order)."""
    owners, seen = [], -1
    for tok in argv:
        flag = tok.split('=', 1)[0]
        if flag == '--mask-prompt':
            seen += 1
        elif flag == '--negative-mask':
            if seen < 0:
                raise ArgumentProblem('--negative-mask must follow a --mask-prompt')
            owners.append(seen)
    return owners


def collect_prompts(args, argv, image_shape):
    """Build the list of ObjectPrompt from the parsed arguments (order documented above)."""
    from ..prompts import ObjectPrompt, ReferencePatch
    prompts = []
    clicks = [_click(c) for c in args.click]
    boxes = [_floats(b, 4, '--box') for b in args.box]
    scribbles = [_polyline(s, '--scribble') for s in args.scribble]
    h, w = image_shape
    for (x, y), _ in clicks:
        if not (0 <= x < w and 0 <= y < h):
            raise ArgumentProblem(f'--click {x:g},{y:g}: outside the {w}x{h} image')
    for x0, y0, x1, y1 in boxes:
        if not (x1 > x0 and y1 > y0):
            raise ArgumentProblem(f'--box {x0:g},{y0:g},{x1:g},{y1:g}: needs x1 > x0 and y1 > y0')
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise ArgumentProblem(f'--box {x0:g},{y0:g},{x1:g},{y1:g}: outside the {w}x{h} image')
    for line in scribbles:
        if ((line[:, 0] < 0) | (line[:, 0] >= w) | (line[:, 1] < 0) | (line[:, 1] >= h)).any():
            raise ArgumentProblem(f'--scribble: a point lies outside the {w}x{h} image')
    if clicks or boxes or scribbles:
        if not any(positive for _, positive in clicks) and not boxes and not scribbles:
            raise ArgumentProblem('--click: only negative clicks given; add a positive click, box or scribble')
        prompts.append(ObjectPrompt(
            points=np.array([xy for xy, _ in clicks], np.float32).reshape(-1, 2),
            point_labels=np.array([pos for _, pos in clicks], bool),
            boxes=np.array(boxes, np.float32).reshape(-1, 4), scribbles=tuple(scribbles), name='interactive'))
    owners = _negative_mask_owners(argv)
    negatives = {}
    for owner, path in zip(owners, args.negative_mask):
        negatives[owner] = _read_image(path, '--negative-mask', grayscale=True) > 0
    for i, path in enumerate(args.mask_prompt):
        neg = negatives.get(i)
        if neg is not None and neg.shape != (h, w):
            raise ArgumentProblem(f'--negative-mask: size {neg.shape[1]}x{neg.shape[0]} differs from the image')
        prompts.append(ObjectPrompt(mask=_read_mask(path, '--mask-prompt', (h, w)), negative_mask=neg,
                                    name=f'mask{i}'))
    if bool(args.referring_image) != bool(args.referring_mask):
        raise ArgumentProblem('--referring-image and --referring-mask must be given together')
    if args.referring_image:
        ref = _read_image(args.referring_image, '--referring-image')
        prompts.append(ObjectPrompt(reference=ReferencePatch(
            ref, _read_mask(args.referring_mask, '--referring-mask', ref.shape[:2])), name='referring'))
    for text in args.text:
        if not text.strip():
            raise ArgumentProblem('--text: empty text')
        prompts.append(ObjectPrompt(text=text, name=text))
    return prompts


def _load_prev_mask(path, num_prompts):
    try:
        with np.load(path) as data:
            prev = data['prev_mask']
    except (OSError, KeyError, ValueError) as exc:
        raise ArgumentProblem(f'--prev-mask {path}: cannot read "prev_mask" ({exc})') from None
    if prev.ndim == 4:
        prev = prev[0]
    if prev.ndim != 3 or prev.shape[0] != num_prompts:
        raise ArgumentProblem(f'--prev-mask {path}: expected {num_prompts} prompt masks, got shape {prev.shape}')
    return prev


def run(args, argv):
    """Execute ``seem-ros segment``; returns the process exit code."""
    import cv2

    from ..overlay import draw_overlay
    from ..predictor import SeemPredictor
    if args.short_side is not None and args.short_side < 0:
        raise ArgumentProblem(f'--short-side {args.short_side}: expected 0 (no resize) or a positive size')
    image = _read_image(args.image, '--image')
    prompts = collect_prompts(args, argv, image.shape[:2])
    vocabulary = [v.strip() for v in (args.vocabulary or '').split(',') if v.strip()]
    if args.task and not vocabulary:
        raise ArgumentProblem('--task needs --vocabulary')
    if not prompts and not args.task:
        raise ArgumentProblem('no prompt given: use --click/--box/--scribble/--mask-prompt/--referring-image/--text '
                              'or --task with --vocabulary')
    if not Path(args.checkpoint).is_file():
        raise ArgumentProblem(f'--checkpoint {args.checkpoint}: file not found')
    visual = [p for p in prompts if not p.text]
    prev = _load_prev_mask(args.prev_mask, len(visual)) if args.prev_mask else None
    predictor = SeemPredictor.from_checkpoint(args.checkpoint, variant=args.variant, version=args.version,
                                              device=args.device, short_side=args.short_side,
                                              deterministic=args.deterministic)
    predictor.set_image(image)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {}
    if prompts:
        result = predictor.predict(prompts, prev_mask=prev)
        arrays.update(final_masks=result.masks, scores=result.scores, selected_index=result.selected_index,
                      prev_mask=result.prev_mask[None].cpu().numpy(), labels=np.array(result.labels))
        for i, mask in enumerate(result.masks):
            cv2.imwrite(str(out / f'mask_{i:02d}.png'), mask.astype(np.uint8) * 255)
        overlay = draw_overlay(image, result.masks, ids=list(range(1, len(prompts) + 1)), labels=result.labels)
        cv2.imwrite(str(out / 'overlay.png'), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        for i, (label, score) in enumerate(zip(result.labels, result.scores)):
            print(f'object {i}: {label!r} score {score:.3f} area {int(result.masks[i].sum())} px')
    if args.task == 'semantic':
        arrays['sem_seg'] = predictor.semantic(vocabulary)
    elif args.task == 'panoptic':
        pan = predictor.segment_everything(vocabulary)
        arrays['panoptic_seg'] = pan.id_map
        arrays['segments_label'] = np.array([s.label for s in pan.segments])
        arrays['segments_score'] = np.array([s.score for s in pan.segments], np.float32)
    elif args.task == 'instance':
        inst = predictor.instances(vocabulary)
        arrays.update({f'instance_{k}': v for k, v in inst.items()})
    np.savez_compressed(out / 'result.npz', **arrays)
    print(f'wrote {out}/result.npz')
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        return run(args, argv)
    except ArgumentProblem as exc:
        print(f'seem-ros segment: error: {exc}', file=sys.stderr)
        return EXIT_BAD_ARGUMENT

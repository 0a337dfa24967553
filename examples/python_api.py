"""The seem_ros Python API in one runnable script (no ROS needed).

    python examples/python_api.py --checkpoint seem_focalt_v1.pt --image photo.jpg

Builds a variant and loads an official-format checkpoint, encodes the image once, then reuses
the features for: a click, a box plus a negative click, two sentences grounded together, a
referring patch, a second (corrective) round, and semantic / panoptic segmentation with a
vocabulary.
"""
import argparse

import cv2
import numpy as np

from seem_ros.predictor import SeemPredictor
from seem_ros.prompts import ObjectPrompt, ReferencePatch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--variant', default='focalt')
    parser.add_argument('--image', required=True)
    parser.add_argument('--short-side', type=int, default=512)
    args = parser.parse_args(argv)

    # 1. Build + strict checkpoint load; 2. encode the image once.
    predictor = SeemPredictor.from_checkpoint(args.checkpoint, variant=args.variant, version='v1',
                                              short_side=args.short_side)
    image = cv2.cvtColor(cv2.imread(args.image), cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    predictor.set_image(image)
    print(f'encoded {w}x{h} in {predictor.timings["encoder"]:.0f} ms')

    # 3. Visual prompts: every object in one decoder pass. Coordinates are (x, y) pixels.
    click = ObjectPrompt(points=np.array([[w / 2, h / 2]]), point_labels=np.array([True]), name='clicked')
    boxed = ObjectPrompt(boxes=np.array([[0, 0, w / 3, h / 3]]), points=np.array([[5, 5]]),
                         point_labels=np.array([False]), name='boxed')
    result = predictor.predict([click, boxed])
    for label, mask, score in zip(result.labels, result.masks, result.scores):
        print(f'{label}: {mask.sum()} px, score {score:.2f}')

    # 4. Corrective round: add a negative click and pass the previous low-resolution masks back.
    refined = ObjectPrompt(points=np.array([[w / 2, h / 2], [w / 4, h / 2]]), point_labels=np.array([True, False]))
    second = predictor.predict([refined, boxed], prev_mask=result.prev_mask)
    print(f'round 2: {second.masks[0].sum()} px')

    # 5. Text grounding: several sentences in one pass, one mask each.
    grounded = predictor.predict([ObjectPrompt(text='the red mug'), ObjectPrompt(text='the person on the left')])
    print('grounded queries:', grounded.selected_index.tolist())

    # 6. Referring patch: the object marked in another image (here: a crop of this one).
    patch = ReferencePatch(image[: h // 2, : w // 2].copy(),
                           result.masks[0][: h // 2, : w // 2] | (np.arange(w // 2) < 4))
    print('referred:', predictor.predict([ObjectPrompt(reference=patch)]).masks[0].sum(), 'px')

    # 7. Open vocabulary: semantic score maps and panoptic segments.
    vocabulary = ['person', 'cup', 'table']
    print('semantic maps:', predictor.semantic(vocabulary).shape)
    panoptic = predictor.segment_everything(vocabulary)
    print('panoptic segments:', [(s.label, round(s.score, 2)) for s in panoptic.segments])


if __name__ == '__main__':
    main()

"""Training of the small SEEM: losses on hand-made cases, data sampling, the train command
(determinism, resuming) and the shipped model (strict loading, conservative quality floors)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from seem_ros.model.build import build_seem
from seem_ros.model.checkpoint import read_metadata, read_state_dict
from seem_ros.predictor import SeemPredictor
from seem_ros.cli import train as train_cli
from seem_ros.training import data, losses, train

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / 'models' / 'seem_tiny.pt'
W = losses.LossWeights()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def square(size, y0, y1, x0, x1):
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def logits_of(mask, scale=10.0):
    return torch.where(torch.as_tensor(mask, dtype=torch.bool), scale, -scale)


# ---------------------------------------------------------------- losses

def test_downsample_masks_gives_cell_coverage():
    mask = square(8, 0, 4, 0, 2)           # one 4x4 cell half covered
    cover = losses.downsample_masks(mask[None], (8, 12))
    assert cover.shape == (1, 2, 3)
    assert cover[0, 0, 0] == 0.5 and cover[0].sum() == 0.5


def test_pairwise_costs_are_low_for_the_right_pair():
    a, b = square(8, 0, 4, 0, 4).float(), square(8, 4, 8, 4, 8).float()
    pred = torch.stack([logits_of(b), logits_of(a)])
    targets = torch.stack([a, b])
    bce, dice = losses.bce_per_pair(pred, targets), losses.dice_per_pair(pred, targets)
    for cost in (bce, dice):
        assert cost[0, 1] < cost[0, 0] and cost[1, 0] < cost[1, 1]
    assert dice[0, 1] < 0.01 and dice[0, 0] > 0.95
    paired = losses.mask_loss(pred, targets[[1, 0]], W)
    assert torch.allclose(paired, W.bce * bce[[0, 1], [1, 0]] + W.dice * dice[[0, 1], [1, 0]], atol=1e-6)


def test_object_loss_matches_queries_to_objects_and_trains_background():
    a, b = square(8, 0, 4, 0, 4).float(), square(8, 4, 8, 4, 8).float()
    masks = torch.stack([logits_of(b), logits_of(torch.zeros(8, 8)), logits_of(a)])
    labels = torch.tensor([0, 1])                          # a is class 0, b is class 1; 2 classes + background
    good = torch.tensor([[-9.0, 9.0, -9.0], [-9.0, -9.0, 9.0], [9.0, -9.0, -9.0]])
    wrong_class = good[[2, 1, 0]]                          # query 0 says class 0, query 2 class 1
    gt = torch.stack([a, b])
    assert losses.object_loss(good, masks, labels, gt, W) < 0.01
    assert losses.object_loss(wrong_class, masks, labels, gt, W) > 10 * losses.object_loss(good, masks, labels, gt, W)
    all_background = torch.tensor([[-9.0, -9.0, 9.0]] * 3)
    assert losses.object_loss(all_background, masks, labels, gt, W) > 1.0


def test_grounding_loss_rewards_the_referred_mask_and_its_score():
    a, b = square(8, 0, 4, 0, 4).float(), square(8, 4, 8, 4, 8).float()
    masks = torch.stack([logits_of(a), logits_of(b), logits_of(torch.zeros(8, 8))])
    gt = torch.stack([b, a])                               # sentence 0 -> b (query 1), sentence 1 -> a (query 0)
    right = torch.tensor([[-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])
    assert losses.grounding_loss(right, masks, gt, W) < 0.05
    assert losses.grounding_loss(right[:, [1, 0]], masks, gt, W) > 1.0


def test_spatial_loss_trains_the_best_candidate_and_its_selection():
    a = square(8, 0, 4, 0, 4).float()
    candidates = torch.stack([logits_of(torch.zeros(8, 8)), logits_of(a), logits_of(torch.ones(8, 8))])[None]
    best = losses.mask_loss(candidates[0, 1:2], a[None], W)[0]
    picks_best = torch.tensor([[-5.0, 5.0, -5.0]])
    loss = losses.spatial_loss(candidates, picks_best, a[None], W)
    assert torch.isclose(loss, best + W.select * torch.nn.functional.cross_entropy(picks_best, torch.tensor([1])))
    assert losses.spatial_loss(candidates, torch.tensor([[5.0, -5.0, -5.0]]), a[None], W) > loss + 10


def test_select_logits_are_each_prompts_own_candidates():
    embeds = torch.arange(12.0).view(6, 2)                 # 2 prompts x 3 candidates
    means = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert losses.select_logits(embeds, means).tolist() == [[0.0, 2.0, 4.0], [7.0, 9.0, 11.0]]


def test_text_contrastive_loss_separates_names():
    names = torch.nn.functional.normalize(torch.eye(4) + 0.1, dim=-1)
    aligned = losses.text_contrastive_loss(names, names, torch.tensor(20.0), W)
    assert aligned < 0.01
    assert losses.text_contrastive_loss(names, names[[1, 0, 3, 2]], torch.tensor(20.0), W) > 10
    collapsed = torch.nn.functional.normalize(torch.ones(4, 4), dim=-1)
    assert torch.isclose(losses.text_contrastive_loss(collapsed, collapsed, torch.tensor(20.0), W),
                         torch.log(torch.tensor(4.0)))


# ---------------------------------------------------------------- data

def test_corrective_click_targets_the_larger_error():
    gt = square(20, 2, 12, 2, 12).numpy()
    missed = square(20, 2, 12, 2, 5).numpy() ^ gt          # prediction covers only the left part
    (x, y), positive = data.corrective_click(missed, gt)
    assert positive and gt[int(y), int(x)] and not missed[int(y), int(x)]
    spurious = gt | square(20, 2, 12, 12, 19).numpy()
    (x, y), positive = data.corrective_click(spurious, gt)
    assert not positive and spurious[int(y), int(x)] and not gt[int(y), int(x)]


@pytest.mark.parametrize('kind', list(data.VISUAL_PROMPT_KINDS))
def test_sampled_prompts_lie_on_their_object(kind):
    mask = square(40, 10, 30, 5, 25).numpy()
    rng = np.random.default_rng(0)
    for _ in range(5):
        prompt = data.sample_prompt(kind, mask, rng)
        for x, y in np.concatenate([prompt.points.reshape(-1, 2)] + list(prompt.scribbles)):
            assert mask[int(y), int(x)]
        for x0, y0, x1, y1 in prompt.boxes:
            assert x0 < 9 and y0 < 14 and x1 > 21 and y1 > 26


def test_examples_are_reproducible_and_use_training_seeds_only(monkeypatch):
    seeds = []
    original = data.build_scene

    def recording(scenario, seed, **kwargs):
        seeds.append(seed)
        return original(scenario, seed, **kwargs)

    monkeypatch.setattr(data, 'build_scene', recording)
    first = train.step_examples(3, 5, 2, 60)
    second = train.step_examples(3, 5, 2, 60)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, second))
    assert first[0].image.shape == (60, 80, 3) and all(o.mask.sum() >= data.MIN_PIXELS for o in first[0].objects)
    assert min(seeds) >= data.TRAIN_SEED_BASE


# ---------------------------------------------------------------- training

def test_training_steps_reduce_the_loss_on_a_fixed_batch():
    model = train.init_model('tiny', 0)
    optimizer = train.make_optimizer(model, 1e-3)
    trainer = train.Trainer(model, short_side=60)
    examples = train.step_examples(0, 0, 2, 60)
    history = []
    for _ in range(8):
        loss = sum(trainer.loss(examples, *train.step_random(0, 0)).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.8 * history[0]


def test_train_command_is_deterministic_and_resumes(tmp_path, monkeypatch, capsys):
    args = ['--steps', '2', '--batch', '1', '--short-side', '48', '--save-every', '1']
    assert train_cli.main(['--out', str(tmp_path / 'a.pt')] + args) == 0

    class Clock:                                            # the time limit hits after the first step
        calls = 0

        @classmethod
        def monotonic(cls):
            cls.calls += 1
            return 0.0 if cls.calls <= 2 else 1e6

    monkeypatch.setattr(train, 'time', Clock)
    assert train_cli.main(['--out', str(tmp_path / 'b.pt'), '--minutes', '1'] + args) == 0
    assert 'time limit reached at step 1' in capsys.readouterr().out
    monkeypatch.undo()
    assert train_cli.main(['--out', str(tmp_path / 'b.pt')] + args) == 0
    assert 'resuming at step 1' in capsys.readouterr().out
    a, b = read_state_dict(tmp_path / 'a.pt'), read_state_dict(tmp_path / 'b.pt')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_metadata(tmp_path / 'b.pt') == {'variant': 'tiny', 'version': 'v1', 'short_side': 48}
    assert train_cli.main(['--out', str(tmp_path / 'b.pt'), '--steps', '3'] + args[2:]) == 2   # other settings


# ---------------------------------------------------------------- the shipped model

def test_shipped_model_is_small_loads_strictly_and_says_how_it_runs():
    assert SHIPPED.stat().st_size < 25 * 2 ** 20
    data = torch.load(SHIPPED, map_location='cpu', weights_only=True)
    assert set(data) == {'model', 'seem_ros'} and read_metadata(SHIPPED) == {
        'variant': 'tiny', 'version': 'v1', 'short_side': 120}
    state = data['model']                      # the official flat state dict
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert not any(k.startswith(('module.', 'model.')) for k in state)
    model = build_seem('tiny', checkpoint=SHIPPED)
    assert all(torch.equal(p, state[k].float()) for k, p in model.state_dict().items())
    predictor = SeemPredictor.from_checkpoint(SHIPPED)
    assert (predictor.variant, predictor.version, predictor.short_side) == ('tiny', 'v1', 120)


def _quality_bench():
    spec = importlib.util.spec_from_file_location('quality_bench', ROOT / 'bench' / 'quality.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_model_meets_quality_floors_on_held_out_frames():
    """Conservative floors on 4 held-out frames (14 objects), well below the model card's numbers
    (measured here: clicks and box about 0.61, referring patch 0.51, text 0.64). Everything mode
    has no floor: the model card reports it as not working yet."""
    predictor = SeemPredictor.from_checkpoint(SHIPPED, variant='tiny', short_side=120)
    metrics = _quality_bench().evaluate(predictor, [0, 1, 2, 3])['metrics']
    values = {name: m['value'] for name, m in metrics.items()}
    assert metrics['click@1']['n'] >= 10
    assert values['click@1'] > 0.45
    assert values['click@3'] > 0.45
    assert values['box'] > 0.45
    assert values['referring patch'] > 0.3
    assert values['text accuracy'] >= 0.4

"""Losses, schedules, EMA and augmentation of the training loop, against hand computations."""

import math
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT
from vispipe.classify.augment import BatchAugment, random_crop, random_erasing, random_hflip, train_batches
from vispipe.classify.train import (
    ModelEma,
    ema_decay,
    kd_loss,
    param_groups,
    soft_cross_entropy,
    topk_accuracy,
    training_phase,
    warmup_cosine,
)
from vispipe.classify.vit import DistilledViT


def test_kd_loss_against_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    T = 2.0
    total = 0.0
    for si, ti in zip(s.tolist(), t.tolist()):
        ps = np.exp(np.array(si) / T) / np.exp(np.array(si) / T).sum()
        pt = np.exp(np.array(ti) / T) / np.exp(np.array(ti) / T).sum()
        total += float((pt * (np.log(pt) - np.log(ps))).sum())
    want = total / 2 * T * T
    assert math.isclose(kd_loss(s, t, T).item(), want, rel_tol=1e-5)
    assert kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_cross_entropy_with_smoothing_against_hand_computation():
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    mixed = 0.7 * F.one_hot(labels, 4).float() + 0.3 * F.one_hot(labels.roll(1), 4).float()  # a Mixup target
    for eps in (0.0, 0.1):
        want = -((mixed * (1 - eps) + eps / 4) * F.log_softmax(logits, -1)).sum(-1).mean()
        assert soft_cross_entropy(logits, mixed, eps).item() == pytest.approx(want.item(), rel=1e-6)


def test_warmup_cosine_schedule():
    total, warm = 100, 5
    values = [warmup_cosine(s, total, warm) for s in range(total)]
    assert values[0] == pytest.approx(1 / 5) and values[4] == pytest.approx(1.0)
    assert values[5] == pytest.approx(1.0)
    assert warmup_cosine(5 + 95 // 2, total, warm) == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 95)))
    assert warmup_cosine(total, total, warm) == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(values[5:], values[6:]))  # monotone after warmup


def test_ema_decay_ramps_linearly():
    assert ema_decay(0, 101, 0.995, 0.9995) == pytest.approx(0.995)
    assert ema_decay(50, 101, 0.995, 0.9995) == pytest.approx((0.995 + 0.9995) / 2)
    assert ema_decay(100, 101, 0.995, 0.9995) == pytest.approx(0.9995)


def test_model_ema_update_formula():
    model = torch.nn.Linear(3, 2)
    ema = ModelEma(model)
    before = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, decay=0.9)
    torch.testing.assert_close(ema.module.weight, 0.9 * before + 0.1 * model.weight)
    assert not ema.module.weight.requires_grad


def test_clean_phase_turns_off_mixing_and_smoothing():
    cfg = {"epochs": 10, "clean_last_epochs": 3, "label_smoothing": 0.05}
    phases = [training_phase(e, cfg) for e in range(10)]
    assert [p["clean"] for p in phases] == [False] * 7 + [True] * 3
    assert [p["smoothing"] for p in phases] == [0.05] * 7 + [0.0] * 3
    assert not training_phase(9, {**cfg, "clean_last_epochs": 0})["clean"]


def augment_cfg(**aug):
    base = {"trivial_augment": False, "crop_padding": 0, "hflip": False, "erasing_p": 0.0}
    return {"augment": {**base, **aug}, "mixup_alpha": 0.4, "cutmix_alpha": 1.0}


def test_mixup_cutmix_on_then_off_when_clean():
    torch.manual_seed(0)
    aug = BatchAugment(augment_cfg(), 10, torch.zeros(3), torch.ones(3))
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(16) % 10
    _, mixed = aug(images, labels, clean=False)
    assert mixed.shape == (16, 10) and torch.allclose(mixed.sum(1), torch.ones(16))
    assert (mixed.max(1).values < 1).any()  # some targets are mixtures
    x, clean = aug(images, labels, clean=True)
    torch.testing.assert_close(clean, F.one_hot(labels, 10).float())
    torch.testing.assert_close(x, images.float() / 255)  # nothing else is on here


def test_random_crop_takes_a_window_of_the_padded_image():
    torch.manual_seed(0)
    x = torch.randint(1, 255, (6, 3, 8, 8), dtype=torch.uint8)
    y = random_crop(x, padding=2)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        windows = [
            (dy, dx) for dy in range(5) for dx in range(5) if torch.equal(padded[i, :, dy : dy + 8, dx : dx + 8], y[i])
        ]
        assert windows, f"image {i} is not a crop of its padded version"
    assert random_crop(x, 0) is x


def test_hflip_flips_some_images_whole():
    torch.manual_seed(1)
    x = torch.randn(32, 3, 4, 5)
    y = random_hflip(x)
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(32)]
    kept = [torch.equal(y[i], x[i]) for i in range(32)]
    assert all(f or k for f, k in zip(flipped, kept)) and 5 < sum(flipped) < 27


def test_random_erasing_zeroes_one_box_per_image():
    torch.manual_seed(0)
    x = torch.ones(20, 3, 16, 16)
    y = random_erasing(x, p=1.0)
    for img in y:
        zero = (img == 0).all(0)
        assert zero.any()
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        box = zero[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all()  # one solid rectangle
        assert 0.02 * 256 * 0.5 <= zero.sum() <= 0.33 * 256 * 1.5
    assert torch.equal(random_erasing(x, p=0.0), x)


def test_train_batches_drop_last_and_seeded():
    images = torch.arange(10 * 3 * 2 * 2, dtype=torch.uint8).view(10, 3, 2, 2)
    labels = torch.arange(10)
    a = [lb.tolist() for _, lb in train_batches(images, labels, 4, False, 0, seed=3)]
    b = [lb.tolist() for _, lb in train_batches(images, labels, 4, False, 0, seed=3)]
    assert a == b and len(a) == 2 and all(len(x) == 4 for x in a)
    ta = list(train_batches(images.expand(10, 3, 2, 2).contiguous(), labels, 5, True, 0, seed=3))
    assert len(ta) == 2 and ta[0][0].dtype == torch.uint8


def test_no_weight_decay_on_biases_norms_tokens_and_bias_tables():
    model = DistilledViT(10, dim=16, depth=2, heads=2, class_attn_blocks=1)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "patch_embed.weight" in decayed and "blocks.0.attn.q.weight" in decayed
    assert not any(k in n for n in decayed for k in ("token", "norm", ".bias.", "bias"))
    assert no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_topk_accuracy_matches_sklearn():
    from sklearn.metrics import top_k_accuracy_score

    torch.manual_seed(0)
    logits, labels = torch.randn(50, 10), torch.randint(0, 10, (50,))
    for k in (1, 5):
        want = top_k_accuracy_score(labels.numpy(), logits.numpy(), k=k, labels=list(range(10)))
        assert topk_accuracy(logits, labels, k) == pytest.approx(want)


class _RunsCode:
    """Unpickling this touches a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _tiny_fit(tmp_path, epochs=2, teacher=None):
    from vispipe.classify.data import Split
    from vispipe.classify.train import fit
    from vispipe.config import load

    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 64), list("0123456789"))
    cfg = load([ROOT / "config/config.yaml"])["classify"]["student"]["train"]
    cfg.update(epochs=epochs, batch_size=32, eval_batch_size=64, clean_last_epochs=1)
    model = DistilledViT(10, dim=16, depth=2, heads=2, class_attn_blocks=1)
    return fit(model, split, split, cfg, arch={"arch": "vit"}, seed=0, device=torch.device("cpu"),
               state_dir=tmp_path / "resume", history_path=tmp_path / "history.csv", run_id="r",
               teacher=teacher)  # fmt: skip


@pytest.mark.parametrize("content", ["truncated", "garbage", "code"])
def test_a_damaged_or_untrusted_resume_state_is_set_aside_and_training_restarts(tmp_path, caplog, content):
    state = tmp_path / "resume" / "state.pt"
    state.parent.mkdir()
    marker = tmp_path / "code-ran"
    if content == "truncated":
        torch.save({"run_id": "r", "epoch": 1, "model": torch.zeros(1000)}, state)
        state.write_bytes(state.read_bytes()[:300])
    elif content == "garbage":
        state.write_bytes(b"\x00not a state" * 10)
    else:
        torch.save({"run_id": "r", "epoch": 1, "model": _RunsCode(marker)}, state)
    result = _tiny_fit(tmp_path)
    assert not marker.exists(), "unpickling the resume state ran code"
    assert len(result.history) == 2 and result.history[0]["epoch"] == 1  # from scratch
    assert "cannot read the resume state" in caplog.text and (tmp_path / "resume" / "state.pt.damaged").exists()


def test_a_run_resumed_from_its_last_epoch_writes_its_history_again(tmp_path):
    """Killed after the last epoch's state but before the outputs (or those deleted as incomplete by
    the rerun): the resumed run trains no epoch, and still writes history.csv (found by the
    recovery test once the demo's teacher got fast enough for the kill to land there)."""
    first = _tiny_fit(tmp_path)
    (tmp_path / "history.csv").unlink()
    again = _tiny_fit(tmp_path)  # the state of epoch 2 of 2 is still there: nothing left to train
    assert [r["epoch"] for r in again.history] == [1, 2] and again.history == first.history
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch")


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    from vispipe.classify.models import load_checkpoint
    from vispipe.errors import UserError

    marker = tmp_path / "code-ran"
    torch.save({"model": _RunsCode(marker), "arch": {"arch": "vit"}, "classes": ["a"]}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_kd_alpha_changes_the_student_and_a_rerun_does_not(tmp_path):
    from vispipe.classify.resnet import ResNet
    from vispipe.classify.train import Teacher

    torch.manual_seed(0)
    teacher = ResNet(10, layers=(1, 1, 1, 1), width=8).eval()
    weights = {}
    for name, alpha in (("a0", 0.0), ("a5", 0.5), ("a5-again", 0.5)):
        result = _tiny_fit(tmp_path / name, epochs=1, teacher=Teacher(teacher, 2.0, alpha))
        weights[name] = result.last["model"]
    assert all(torch.equal(weights["a5"][k], weights["a5-again"][k]) for k in weights["a5"])  # repeatable
    assert not all(torch.equal(weights["a0"][k], weights["a5"][k]) for k in weights["a0"])  # alpha matters

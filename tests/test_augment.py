"""Data augmentation: what each one does to a batch, that it is seeded, applied to training batches
only, recorded, and continued exactly by a resumed run."""

from __future__ import annotations

import csv
import itertools

import pytest
import torch

import dlrun.training.augment as augment_module
from dlrun.checks import validate
from dlrun.errors import ConfigError
from dlrun.training.augment import build_augment, crop_and_flip, small_affine
from tests.helpers import QUICK, read_summary


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def shifted(image: torch.Tensor, dy: int, dx: int, fill: torch.Tensor) -> torch.Tensor:
    """`image` (C, H, W) moved down by dy and right by dx, with `fill` (C, 1, 1) shifted in."""
    C, H, W = image.shape
    out = fill.expand(C, H + 2 * abs(dy), W + 2 * abs(dx)).clone()
    out[:, abs(dy) + dy : abs(dy) + dy + H, abs(dx) + dx : abs(dx) + dx + W] = image
    return out[:, abs(dy) : abs(dy) + H, abs(dx) : abs(dx) + W]


def test_crop_and_flip_gives_each_image_a_shifted_maybe_mirrored_copy_of_itself():
    x = torch.rand(32, 3, 5, 6) + 0.5  # every pixel brighter than the fill
    x[0, 1] = 0.25  # the batch's darkest value in channel 1
    out = crop_and_flip(x, seeded(), padding=1, flip=True)
    assert out.shape == x.shape and out.is_contiguous()
    fill = x.amin(dim=(0, 2, 3)).view(3, 1, 1)
    seen = set()
    for image, result in zip(x, out, strict=True):
        matches = [
            (dy, dx, mirror)
            for dy, dx, mirror in itertools.product((-1, 0, 1), (-1, 0, 1), (False, True))
            if torch.equal(result, shifted(image.flip(2) if mirror else image, dy, dx, fill))
        ]
        assert matches, "an output that is no shift of its input"
        seen.update(matches)
    assert len(seen) > 6  # offsets and mirroring vary across the batch


def test_augmentation_is_seeded_and_draws_nothing_for_none():
    x = torch.rand(16, 1, 8, 8)
    for name, kwargs in (("standard", {"padding": 2, "flip": True}), ("digits", {"degrees": 10.0, "translate": 0.1, "scale": 0.1})):
        fn = build_augment(name, **kwargs)
        assert torch.equal(fn(x, seeded(1)), fn(x, seeded(1)))
        assert not torch.equal(fn(x, seeded(1)), fn(x, seeded(2)))
    assert build_augment("none") is None


def test_small_affine_with_no_range_is_the_identity_and_keeps_the_background():
    x = torch.zeros(8, 1, 12, 12)
    x[:, :, 4:8, 5:7] = 1.0
    same = small_affine(x, seeded(), degrees=0.0, translate=0.0, scale=0.0)
    assert torch.allclose(same, x, atol=1e-6)
    moved = small_affine(x, seeded(), degrees=15.0, translate=0.1, scale=0.1)
    assert not torch.allclose(moved, x)
    assert moved.min() >= -1e-6 and moved.max() <= 1 + 1e-6
    assert torch.allclose(moved[:, :, 0, :], torch.zeros(8, 12), atol=1e-6)  # the border stays background
    assert torch.allclose(moved.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.35)  # the stroke moved, not vanished


def test_augmentation_sees_every_training_batch_and_no_evaluation_batch(run_dlrun, monkeypatch):
    sizes = []

    def spy(x, generator, **kwargs):
        sizes.append(len(x))
        return x

    monkeypatch.setitem(augment_module.AUGMENTS, "standard", spy)
    run = run_dlrun(*QUICK, "trainer.epochs=1", "augment=standard", "trainer.limit_train_batches=3")
    assert sizes == [64, 64, 64]
    summary = read_summary(run)
    assert summary["experiment"] == "mlp + adam (lr 0.001) on digits, augment standard"
    assert summary["config"]["augment"] == {"name": "standard", "padding": 4, "flip": True}


def test_an_augmented_run_resumed_after_an_interrupt_equals_an_uninterrupted_one(run_dlrun, interrupt_at_epoch, tmp_path):
    base = (*QUICK, "trainer.epochs=3", "model=cnn", "trainer.limit_train_batches=5")
    overrides = (*base, "augment=digits")
    whole = run_dlrun(*overrides)
    part = tmp_path / "part"
    interrupt_at_epoch(2)
    with pytest.raises(SystemExit):
        run_dlrun(*overrides, run_dir=part)
    interrupt_at_epoch(None)
    run_dlrun(f"resume={part}", run_dir=part)

    def metrics(folder):
        with open(folder / "metrics.csv", newline="") as f:
            return [{k: v for k, v in row.items() if k != "epoch_s"} for row in csv.DictReader(f)]

    assert metrics(part) == metrics(whole)
    assert metrics(run_dlrun(*base)) != metrics(whole)  # the augmentation did change the training batches


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("augment.padding=-1", "augment.padding=-1 must be >= 0"),
        ("augment.translate=1.0", "augment.translate=1.0 must be in [0, 1)"),
        ("augment.degrees=200", "augment.degrees=200.0 must be in [0, 180]"),
    ],
)
def test_augment_values_are_checked(compose_cfg, override, message):
    group = "augment=standard" if "padding" in override else "augment=digits"
    with pytest.raises(ConfigError) as info:
        validate(compose_cfg(group, override))
    assert str(info.value) == message

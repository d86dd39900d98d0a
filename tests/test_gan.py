"""task=gan, the second recipe: its config and refusals, the networks' shapes, a run's folder,
resuming it, and `dlrun compare` on it."""

from __future__ import annotations

import csv
import signal

import pytest
import torch

import dlrun.training.gan as gan
from dlrun.analysis import compare
from dlrun.checks import validate
from dlrun.cli import main
from dlrun.errors import ConfigError
from dlrun.training.gan_models import build_gan, upsamplings
from dlrun.training.signals import Interrupted
from tests.helpers import read_summary

# Small and quick: digits (8x8), narrow networks, no live bar.
GAN = ("task=gan", "task.width=8", "task.latent_dim=16", "task.samples=16", "trainer.progress=off")


def metrics(folder) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "epoch_s"} for row in csv.DictReader(f)]


def test_task_gan_chooses_adam_with_dcgans_settings(compose_cfg):
    cfg = compose_cfg("task=gan")
    validate(cfg)
    assert (cfg.task.name, cfg.task.latent_dim, cfg.task.width) == ("gan", 100, 64)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.beta1) == ("adam", 0.0002, 0.5)
    assert compose_cfg("task=gan", "optimizer.lr=0.001").optimizer.lr == 0.001  # the command line still wins
    assert compose_cfg().task.name == "classify"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("trainer.loss=mse",), "trainer.loss=mse does not apply to task=gan (its loss is the GAN's non-saturating one); drop it"),
        (("regularization=dropout",), "regularization.dropout=0.2 does not apply to task=gan (DCGAN's networks have no dropout); drop it"),
        (("augment=digits",), "augment=digits does not apply to task=gan (the generator would learn the augmented images); drop it"),
        (("scheduler=plateau",), "scheduler=plateau does not apply to task=gan (it watches val/loss, which a GAN has not); drop it"),
        (("model=cnn",), "model=cnn does not apply to task=gan: it trains DCGAN's own generator and discriminator"),
        (("model.hidden_sizes=[64]",), "model.hidden_sizes=[64] does not apply to task=gan"),
        (("trainer.shuffle=false",), "trainer.shuffle=false does not apply to task=gan (it draws a new seeded order every epoch); drop it"),
    ],
)
def test_classification_only_keys_are_refused_with_task_gan(compose_cfg, overrides, message):
    with pytest.raises(ConfigError) as info:
        validate(compose_cfg("task=gan", *overrides))
    assert str(info.value).startswith(message)


def test_an_optimizer_without_betas_is_one_line(tmp_path, capsys):
    assert main(["task=gan", "optimizer=sgd", f"hydra.run.dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    expected = "task=gan sets optimizer.beta1, which optimizer=sgd lacks; with task=gan choose optimizer=adam or optimizer=adamw"
    assert err == f"dlrun: error: {expected}"


@pytest.mark.parametrize(("shape", "k"), [((1, 8, 8), 1), ((1, 12, 12), 2), ((1, 28, 28), 2), ((3, 32, 32), 3), ((1, 16, 12), 2)])
def test_the_networks_fit_each_dataset_shape(shape, k):
    assert upsamplings(*shape[1:]) == k
    G, D = build_gan(shape, latent_dim=10, width=8)
    images = G(torch.randn(5, 10))
    assert images.shape == (5, *shape) and images.min() >= -1 and images.max() <= 1
    assert D(images).shape == (5,)


def test_sizes_that_do_not_halve_are_refused():
    with pytest.raises(ValueError, match="task=gan needs images whose sides halve to at least 3 pixels"):
        upsamplings(7, 7)


def test_a_gan_run_writes_its_folder(run_dlrun):
    run = run_dlrun(*GAN, "trainer.epochs=2")
    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert summary["experiment"] == "dcgan + adam (lr 0.0002) on digits"
    assert summary["params"] == sum(summary["gan"]["params"].values()) and "test" not in summary
    rows = metrics(run)
    assert list(rows[0]) == ["epoch", "gen/loss", "disc/loss", "disc/real", "disc/fake", "lr"]
    assert all(0 < float(row["disc/real"]) < 1 and 0 < float(row["disc/fake"]) < 1 for row in rows)
    plots = sorted(p.name for p in (run / "plots").iterdir())
    assert plots == ["curves.png", "progress.gif", "progress.png", "samples.png", "samples_epoch_001.png", "samples_epoch_002.png"]
    checkpoint = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["task"] == "gan" and set(checkpoint["optimizers"]) == {"generator", "discriminator"}
    assert checkpoint["fixed_noise"].shape == (16, 16)


def test_a_gan_run_resumed_after_an_interrupt_equals_an_uninterrupted_one(run_dlrun, tmp_path, monkeypatch):
    overrides = (*GAN, "trainer.epochs=3", "trainer.plots=false", "scheduler=cosine")
    whole = run_dlrun(*overrides)
    original = gan.train_epoch

    def interrupted_in_epoch_2(*args, **kwargs):
        if kwargs["epoch"] == 2:
            raise Interrupted(signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(gan, "train_epoch", interrupted_in_epoch_2)
    part = tmp_path / "part"
    with pytest.raises(SystemExit) as stopped:
        run_dlrun(*overrides, run_dir=part)
    assert stopped.value.code == 130 and read_summary(part)["status"] == "interrupted" and len(metrics(part)) == 1
    monkeypatch.setattr(gan, "train_epoch", original)
    run_dlrun(f"resume={part}", run_dir=part)
    assert metrics(part) == metrics(whole)
    assert read_summary(part)["status"] == "completed" and read_summary(part)["resumed_from_epoch"] == 1


def test_compare_shows_gan_runs_with_their_own_metrics(run_dlrun, tmp_path, capsys):
    run = run_dlrun(*GAN, "trainer.epochs=1", "trainer.plots=false", "trainer.checkpoints=false")
    capsys.readouterr()
    code = compare.main([str(run), "--format", "csv"])
    out = capsys.readouterr().out
    assert code == 0
    row = next(csv.DictReader(out.splitlines()))
    assert float(row["gen/loss"]) == pytest.approx(float(metrics(run)[-1]["gen/loss"]))
    assert float(row["disc/loss"]) == pytest.approx(float(metrics(run)[-1]["disc/loss"]))
    assert compare.main([str(run)]) == 0
    table = capsys.readouterr().out
    assert "gen/loss" in table and "disc/loss" in table and "test/acc" not in table

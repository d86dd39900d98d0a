"""task=gan, dlrun's second recipe: a DCGAN trained on the dataset's training images.

Read top to bottom like recipe.py: `execute_gan` sets the run up from the config (data, the two
networks sized to the images, one optimizer each from the optimizer group, a schedule each), runs
`train_epoch` per epoch, and writes the run folder with the same contract as a classifier's:
metrics.csv (gen/loss, disc/loss, disc/real, disc/fake, lr, epoch_s), summary.json, checkpoints/last.pt
(both networks, both optimizers, the RNG states: `dlrun resume=FOLDER` continues it), and plots:
a grid of samples from the same fixed noise after every epoch (plots/samples_epoch_NNN.png), the
final grid (samples.png), the grids' progression (progress.png) and the two losses (curves.png).

The losses are the non-saturating ones of Goodfellow et al.: the discriminator minimizes
BCE(D(x), 1) + BCE(D(G(z)), 0), the generator BCE(D(G(z)), 1). There is no test split: a GAN is
judged by its samples.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dlrun.analysis.runfolder import RUN_FOLDER_FORMAT
from dlrun.checks import validate
from dlrun.errors import ConfigError, Diverged, ResumeError
from dlrun.training.checkpoint import check_same_model, load_checkpoint
from dlrun.training.console import Reporter
from dlrun.training.data import Split, load_dataset
from dlrun.training.device import describe, flush_denormals_everywhere, keep_freed_memory, resolve_device, seed_everything, set_threads
from dlrun.training.engine import rng_state
from dlrun.training.gan_models import build_gan
from dlrun.training.hooks import build_schedule
from dlrun.training.optim import build_optimizer
from dlrun.training.plots import plot_gan_losses, save_image_grid, save_progression
from dlrun.training.recipe import SECOND_SIGNAL, describe_data, how_it_ended, now
from dlrun.training.recorder import RunRecorder, command_line, git_commit, versions
from dlrun.training.resume import restore_metrics
from dlrun.training.settings import dataset_kwargs, optimizer_kwargs, schedule_kwargs
from dlrun.training.signals import StopRequest, hold
from dlrun.training.steps import flush_denormals, num_batches

NETS = ("generator", "discriminator")


def train_epoch(nets: dict, optimizers: dict, schedules: dict, images: torch.Tensor, *, batch_size: int, limit: int, latent_dim: int,
                generator: torch.Generator, reporter: Reporter, epoch: int, epochs: int, stop: StopRequest | None,
                refresh_every: int = 20) -> dict[str, float]:  # fmt: skip
    """One pass over `images` (N, C, H, W) in [-1, 1]: per batch a discriminator step, then a generator step."""
    G, D = nets["generator"], nets["discriminator"]
    G.train(), D.train()
    n, device = len(images), images.device
    order = torch.randperm(n, generator=generator).to(device)
    steps = num_batches(n, batch_size, limit)
    sums = torch.zeros(4, device=device)  # batch-weighted sums of gen/loss, disc/loss, disc/real, disc/fake
    seen = 0
    start = time.perf_counter()
    with reporter.epoch_progress(epoch, epochs, steps) as progress, flush_denormals():
        for step in range(steps):
            real = images.index_select(0, order[step * batch_size : (step + 1) * batch_size])  # (batch, C, H, W)
            b = len(real)
            fake = G(torch.randn(b, latent_dim, device=device))  # (batch, C, H, W) in [-1, 1]
            real_logits, fake_logits = D(real), D(fake.detach())  # (batch,) each
            d_loss = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + F.binary_cross_entropy_with_logits(
                fake_logits, torch.zeros_like(fake_logits)
            )
            optimizers["discriminator"].zero_grad(set_to_none=True)
            d_loss.backward()
            optimizers["discriminator"].step()
            D.requires_grad_(False)  # the generator's step needs gradients through D, not for D's weights
            g_logits = D(fake)
            g_loss = F.binary_cross_entropy_with_logits(g_logits, torch.ones_like(g_logits))  # non-saturating: -log D(G(z))
            optimizers["generator"].zero_grad(set_to_none=True)
            g_loss.backward()
            optimizers["generator"].step()
            D.requires_grad_(True)
            for schedule in schedules.values():
                schedule.on_step_end(None)
            with torch.no_grad():
                sums += b * torch.stack([g_loss, d_loss, real_logits.sigmoid().mean(), fake_logits.sigmoid().mean()]).float()
            seen += b
            if (step + 1) % refresh_every == 0 or step + 1 == steps:  # one host sync per `refresh_every` steps
                means = (sums / seen).tolist()
                if not all(map(math.isfinite, means)):
                    raise Diverged(
                        f"epoch {epoch}: the losses became {means[0]} (generator) and {means[1]} (discriminator) by step {step + 1}"
                    )
                if stop is not None:
                    stop.check()
                if progress is not None:
                    progress(step + 1, means[0])
    means = dict(zip(("gen/loss", "disc/loss", "disc/real", "disc/fake"), (sums / seen).tolist(), strict=True))
    return {**means, "examples": seen, "seconds": time.perf_counter() - start}


@torch.no_grad()
def draw(G: torch.nn.Module, noise: torch.Tensor) -> torch.Tensor:
    """The generator's images for `noise`, in eval mode, as (N, C, H, W) in [0, 1] on the CPU."""
    G.eval()
    return (G(noise).float().cpu() + 1) / 2


def train_images(data) -> torch.Tensor:
    """Every training image (the validation split too: a GAN has no use for it), scaled to [-1, 1]."""
    splits: list[Split] = [data.train] + ([data.val] if data.val is not None else [])
    return torch.cat([s.x for s in splits]) * 2 - 1


def restore_gan(run_dir: Path, nets: dict, optimizers: dict, schedules: dict, generator: torch.Generator) -> tuple[int, list, torch.Tensor]:
    """Load last.pt into the networks, optimizers, schedules and RNGs; the epoch, metrics rows and fixed noise."""
    path = run_dir / "checkpoints" / "last.pt"
    checkpoint = load_checkpoint(path)
    epoch = checkpoint.get("epoch")
    if type(epoch) is not int or epoch < 1 or checkpoint.get("task") != "gan":
        raise ResumeError(f"{path} is not a task=gan checkpoint written after an epoch; it cannot continue this run")
    for name in NETS:
        check_same_model(nets[name].state_dict(), checkpoint.get(name), path)
    try:
        for name in NETS:
            nets[name].load_state_dict(checkpoint[name])
            optimizers[name].load_state_dict(checkpoint["optimizers"][name])
        for name, schedule in schedules.items():
            schedule.load_state_dict(checkpoint["hooks"][name])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        generator.set_state(checkpoint["rng"]["data"])
        if "cuda" in checkpoint["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
        noise = checkpoint["fixed_noise"]
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        raise ResumeError(f"{path} cannot be loaded into this run ({type(err).__name__}: {str(err).strip()[:160]})") from err
    return epoch, restore_metrics(run_dir, epoch), noise


def execute_gan(cfg: DictConfig, run_dir: Path, *, console: Console | None = None, overrides: list[str] | None = None,
                resume: bool = False, stop: StopRequest | None = None) -> dict[str, Any]:  # fmt: skip
    """Train the DCGAN `cfg` describes into `run_dir` (continuing its last.pt when `resume`); return
    the summary also written to summary.json. Statuses as recipe.execute's."""
    validate(cfg)
    run_dir = Path(run_dir)
    recorder = RunRecorder(run_dir)
    reporter = Reporter(run_dir / "dlrun.log", cfg.trainer.progress, console)
    started = time.perf_counter()
    trainer, task = cfg.trainer, cfg.task
    title = f"dcgan + {cfg.optimizer.name} (lr {cfg.optimizer.lr:g}) on {cfg.dataset.name}"
    summary: dict[str, Any] = {"format": RUN_FOLDER_FORMAT, "status": "running", "experiment": title, "command": command_line(),
                               "started_at": now(), "epochs": trainer.epochs, "epochs_completed": 0, "seed": cfg.seed,
                               "overrides": list(overrides or []), "config": OmegaConf.to_container(cfg, resolve=True)}  # fmt: skip
    touched = not resume
    if touched:
        recorder.metrics_path.unlink(missing_ok=True)
        recorder.write_summary(summary)
    history: list[dict] = []
    done, train_s, examples, training = 0, 0.0, 0, False  # done: epochs finished before this command
    flush_denormals_everywhere()
    keep_freed_memory()
    threads_before = set_threads(cfg.device.threads)
    try:
        device = resolve_device(cfg.device.name)
        data = load_dataset(cfg.dataset.name, device=device, **dataset_kwargs(cfg))
        images = train_images(data)
        generator = seed_everything(cfg.seed)
        try:
            G, D = build_gan(data.input_shape, latent_dim=task.latent_dim, width=task.width)
        except ValueError as err:
            raise ConfigError(str(err)) from err
        nets = {"generator": G.to(device), "discriminator": D.to(device)}
        optimizers = {name: build_optimizer(cfg.optimizer.name, net, **optimizer_kwargs(cfg)) for name, net in nets.items()}
        batch = min(trainer.batch_size, len(images))
        steps = num_batches(len(images), batch, trainer.limit_train_batches)
        schedules = {}
        for name, optimizer in optimizers.items():
            schedule = build_schedule(cfg.scheduler.name, optimizer, epochs=trainer.epochs, steps_per_epoch=steps, **schedule_kwargs(cfg))
            if schedule is not None:
                schedules[f"{name}_scheduler"] = schedule
        fixed_noise = torch.randn(task.samples, task.latent_dim, generator=torch.Generator().manual_seed(cfg.seed))
        if resume:
            done, history, fixed_noise = restore_gan(run_dir, nets, optimizers, schedules, generator)
            summary["resumed_from_epoch"] = done
            touched = True
        fixed_noise = fixed_noise.to(device)
        params = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
        summary |= {"device": describe(device), "params": sum(params.values()), "gan": {"params": params},
                    "step": "gan: discriminator then generator step, autograd + optimizer.step()", "versions": versions(),
                    "git_commit": git_commit(), "data": describe_data(data)}  # fmt: skip
        recorder.write_summary(summary)
        reporter.print(
            f"[bold]{title}[/]  generator {params['generator']:,} and discriminator {params['discriminator']:,} parameters, "
            f"{len(images)} training images, device {summary['device']}" + (f"; resuming after epoch {done}" if resume else ""),
            soft_wrap=True,
        )
        training = True
        if trainer.plots:
            recorder.plot_dir.mkdir(exist_ok=True)
        for epoch in range(done + 1, trainer.epochs + 1):
            begun = time.perf_counter()
            lr = optimizers["generator"].param_groups[0]["lr"]
            result = train_epoch(nets, optimizers, schedules, images, batch_size=batch, limit=trainer.limit_train_batches,
                                 latent_dim=task.latent_dim, generator=generator, reporter=reporter, epoch=epoch,
                                 epochs=trainer.epochs, stop=stop)  # fmt: skip
            if trainer.plots:
                save_image_grid(draw(G, fixed_noise), recorder.plot_dir / f"samples_epoch_{epoch:03d}.png")
            row = {"epoch": epoch, **{k: result[k] for k in ("gen/loss", "disc/loss", "disc/real", "disc/fake")}, "lr": lr,
                   "epoch_s": time.perf_counter() - begun}  # fmt: skip
            for schedule in schedules.values():
                schedule.on_epoch_end(None, row)
            recorder.append_metrics(row)
            history.append(row)
            train_s, examples = train_s + result["seconds"], examples + result["examples"]
            if trainer.checkpoints:
                state = {name: net.state_dict() for name, net in nets.items()}
                recorder.save_checkpoint("last.pt", {"task": "gan", "epoch": epoch, **state, "rng": rng_state(generator),
                    "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()}, "fixed_noise": fixed_noise.cpu(),
                    "hooks": {name: s.state_dict() for name, s in schedules.items()}, "config": summary["config"]})  # fmt: skip
            reporter.print(
                f"epoch {epoch:>{len(str(trainer.epochs))}}/{trainer.epochs}  generator loss {row['gen/loss']:.4f}  "
                f"discriminator loss {row['disc/loss']:.4f}  D(real) {row['disc/real']:.3f}  D(fake) {row['disc/fake']:.3f}  "
                f"{row['epoch_s']:.2f} s",
                soft_wrap=True,
            )
        if trainer.plots:
            save_image_grid(draw(G, fixed_noise), recorder.plot_dir / "samples.png")
            grids = sorted(recorder.plot_dir.glob("samples_epoch_*.png"))
            save_progression(grids, recorder.plot_dir / "progress.png", image_height=data.input_shape[1])
            plot_gan_losses(history, recorder.plot_dir / "curves.png", title=title)
        summary |= {"status": "completed", "final": history[-1], "best": {"epoch": history[-1]["epoch"]}}
    except BaseException as err:
        hold(stop)  # what follows records how the run ended: a second signal must not cut it short
        summary |= how_it_ended(err, training)
        raise
    finally:
        hold(stop)
        if summary["status"] == "running":  # a second signal landed before the lines above could say so
            summary |= SECOND_SIGNAL
        set_threads(threads_before)
        torch.set_flush_denormal(False)
        summary["timing"] = {"wall_s": time.perf_counter() - started}
        if history:
            summary["timing"]["epoch_s_median"] = statistics.median(row["epoch_s"] for row in history)
        if train_s > 0:
            summary["timing"] |= {"train_s": train_s, "samples_per_s": examples / train_s}
        summary["epochs_completed"] = len(history)
        summary["ended_at"] = now()
        if touched:
            recorder.write_final_summary(summary)
        if summary["status"] == "completed":
            reporter.final_panel(summary, run_dir)
        reporter.close()
        recorder.close()
    return summary

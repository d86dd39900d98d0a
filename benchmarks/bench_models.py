"""Per-model training step: dlrun against a plain PyTorch loop and the tutorial's DataLoader loop, fp32 and bf16.

    .venv/bin/python benchmarks/bench_models.py --root ../shared/data [--steps 30] [--reps 3] [--models "cnn simple,rnn gru"]
    .venv/bin/python benchmarks/bench_models.py --root ../shared/data --accuracy 1    # test accuracy after 1 epoch instead

For each model (MODELS) and precision, in one process, the arms alternate A B C ... C B A ... for
`--reps` rounds of `--steps` timed steps, after a short warm-up; every arm trains its own copy of
the model that `dlrun model=...` builds (same seed, batch 64, the config's Adam and lr) on MNIST:
- dlrun: recipe.build_loop's step for `trainer.precision=P` (memory format auto, the fused optimizer
  kernel, subnormals flushed), stepped by steps.train_one_epoch with trainer.limit_train_batches.
- dlrun contiguous (conv nets only): the same with trainer.memory_format=contiguous.
- plain: ordinary PyTorch on the same in-memory tensors: x[idx], optimizer.zero_grad(), autocast
  for bf16, loss.backward(), torch.optim.Adam's own step (its default, foreach).
- plain channels_last (conv nets only): the same, model and batches in channels_last.
- plain textbook (the CNNs whose pools dlrun moved): plain and contiguous with each max-pool after
  its activation, as the textbook (and dlrun before) writes a conv block: the issue's reference.
- tutorial: torchvision's MNIST with ToTensor and a shuffled DataLoader of 64, otherwise plain.
A step's training FLOPs (matmuls and convolutions, forward and backward) are counted once with
torch.utils.flop_counter; GFLOP/s is that over dlrun's median step time, and "of matmul" divides
it by the same precision's 2048x2048 matmul throughput measured in the same run. Results go to
results/models-<host>.json and a markdown table to stdout.

On a shared machine the speed of a whole round drifts by more than the arms differ (+-30% between
rounds of ResNet-20 on a 2-vCPU VM, every kernel alike), so the medians of each arm's rounds can
favour either arm by chance. Each row also gives dlrun's time over the fastest plain arm's within
each round, where that drift cancels: its median, and in how many rounds dlrun was faster.

All arms share one process, left as it starts: dlrun's process-wide set-up (recipe.execute's
keep_freed_memory and flush_denormals_everywhere) is not made here, or it would reach the plain
arms too. bench_processes.py times dlrun's step in a process set up as dlrun sets it up, against
the plain loops in an untouched one.

With --accuracy N, each model instead runs `dlrun ... trainer.epochs=N` (seed 0) in fp32 and in
bf16, and for conv nets fp32 contiguous too, and the test accuracy and loss are recorded
(results/models-accuracy-<host>.json): bf16's accuracy cost and channels_last's fp32 drift.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path

from machine import cpu_flags, cpu_name, matmul_gflops  # benchmarks/machine.py: this folder is on a script's path

MODELS = [
    ("mlp (seed recipe)", ["experiment=seed_mnist"]),
    ("mlp bn + dropout", ["model=mlp", "regularization=[batchnorm,dropout]"]),
    ("cnn simple", ["model=cnn"]),
    ("cnn lenet5", ["model=cnn", "model.variant=lenet5"]),
    ("rnn lstm", ["model=rnn", "model.cell=lstm"]),
    ("rnn gru", ["model=rnn", "model.cell=gru"]),
    ("cnn vgg", ["model=cnn", "model.variant=vgg"]),
    ("cnn alexnet", ["model=cnn", "model.variant=alexnet"]),
    ("resnet 20", ["model=resnet"]),
    ("transformer patches", ["model=transformer"]),
]
BATCH = 64


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from dlrun.config import config_dir, register_configs

    register_configs()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def dlrun_arm(cfg, data, tmp: Path):
    """A callable timing dlrun's own epoch loop; returns seconds per step. It trains the
    trainer.limit_train_batches steps `cfg` sets (--steps) whatever `steps` it is given, so its
    warm-up is a whole round; like the other arms it is then timed over --steps steps."""
    import torch
    from rich.console import Console

    from dlrun.training.console import Reporter
    from dlrun.training.recipe import build_loop
    from dlrun.training.recorder import NullRecorder
    from dlrun.training.steps import train_one_epoch

    reporter = Reporter(tmp / "dlrun.log", "off", Console(quiet=True))
    loop, _ = build_loop(cfg, data, torch.device("cpu"), NullRecorder(tmp), reporter, None)

    def run(_steps: int) -> float:
        result = train_one_epoch(loop.step, loop.model, data.train, loop.train_settings, loop.generator)
        return result["seconds"] / (result["examples"] // BATCH)

    return run, loop.model


def plain_arm(model, lr: float, batches, bf16: bool, channels_last: bool):
    """The loop as one writes it by hand; `batches()` yields (x, y)."""
    import torch
    import torch.nn.functional as F

    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def run(steps: int) -> float:
        model.train()
        start = time.perf_counter()
        for _, (x, y) in zip(range(steps), batches(), strict=False):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - start) / steps

    return run


def in_memory(x, y, seed: int):
    import torch

    generator = torch.Generator().manual_seed(seed)

    def batches():
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x) - BATCH + 1, BATCH):
            idx = order[i : i + BATCH]
            yield x[idx], y[idx]

    return batches


def tutorial_batches(root: str):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from dlrun.training.torchvision_data import torchvision_idx_root

    found = torchvision_idx_root("MNIST", Path(root))
    loader = DataLoader(
        datasets.MNIST(str(found), train=True, download=False, transform=transforms.ToTensor()), batch_size=BATCH, shuffle=True
    )
    return lambda: iter(loader)


def training_flops(model, x, y) -> int:
    """FLOPs of one fp32 forward and backward pass (matmuls and convolutions), counted by torch."""
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def textbook_order(model):
    """The model with each max-pool moved back after the activation before it (conv -> act -> pool, as
    dlrun built CNNs before models._conv_block pooled first), or None where no pool moved."""
    from torch import nn

    if not isinstance(model, nn.Sequential):
        return None
    layers, moved = list(model), False
    for i in range(len(layers) - 1):
        if isinstance(layers[i], nn.MaxPool2d) and not isinstance(layers[i + 1], (nn.Conv2d, nn.Sequential)):
            layers[i], layers[i + 1], moved = layers[i + 1], layers[i], True
    return nn.Sequential(*layers) if moved else None


def has_conv(model) -> bool:
    import torch

    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def speed(args, machine: dict) -> dict:
    import torch

    from dlrun.training.data import load_dataset
    from dlrun.training.recipe import make_model
    from dlrun.training.settings import dataset_kwargs

    peaks = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    results = {**machine, "steps": args.steps, "reps": args.reps, "threads": torch.get_num_threads(), "torch": torch.__version__,
               "matmul_gflops_before": peaks, "models": []}  # fmt: skip
    tutorial = tutorial_batches(args.root)
    base = [
        "dataset=mnist",
        f"dataset.root={args.root}",
        "device=cpu",
        "seed=0",
        "trainer.progress=off",
        f"trainer.limit_train_batches={args.steps}",
    ]
    data = None
    arms_shown = ("dlrun", "dlrun contiguous", "plain", "plain channels_last", "plain textbook", "tutorial")
    print(f"| model | precision | {' | '.join(a + ' ms' for a in arms_shown)} | best plain / dlrun | per round: dlrun / best plain"
          " (dlrun faster in) | GFLOP/s (of matmul) |")  # fmt: skip
    print("|---|---|" + "---:|" * (len(arms_shown) + 3))
    for name, overrides in MODELS:
        if args.models and name not in args.models:
            continue
        for precision in ("fp32", "bf16"):
            cfg = compose([*overrides, *base, f"trainer.precision={precision}"])
            if data is None:
                data = load_dataset("mnist", device=torch.device("cpu"), **dataset_kwargs(cfg))
            torch.manual_seed(0)
            probe = make_model(cfg, data.input_shape, data.num_classes, torch.device("cpu"))
            flops = training_flops(probe, data.train.x[:BATCH], data.train.y[:BATCH])
            conv, lr, bf16 = has_conv(probe), cfg.optimizer.lr, precision == "bf16"
            arms = {}
            with tempfile.TemporaryDirectory() as tmp:
                arms["dlrun"], _ = dlrun_arm(cfg, data, Path(tmp))
                if conv:
                    arms["dlrun contiguous"], _ = dlrun_arm(compose([*overrides, *base, f"trainer.precision={precision}",
                                                                     "trainer.memory_format=contiguous"]), data, Path(tmp))  # fmt: skip
                for arm, cl in (("plain", False), ("plain channels_last", True)) if conv else (("plain", False),):
                    torch.manual_seed(0)
                    model = make_model(cfg, data.input_shape, data.num_classes, torch.device("cpu"))
                    arms[arm] = plain_arm(model, lr, in_memory(data.train.x, data.train.y, 0), bf16, cl)
                torch.manual_seed(0)
                textbook = textbook_order(make_model(cfg, data.input_shape, data.num_classes, torch.device("cpu")))
                if textbook is not None:
                    arms["plain textbook"] = plain_arm(textbook, lr, in_memory(data.train.x, data.train.y, 0), bf16, False)
                torch.manual_seed(0)
                model = make_model(cfg, data.input_shape, data.num_classes, torch.device("cpu"))
                arms["tutorial"] = plain_arm(model, lr, tutorial, bf16, False)
                times: dict[str, list[float]] = {arm: [] for arm in arms}
                for run in arms.values():  # warm-up: oneDNN's kernels, the allocator, the DataLoader
                    run(3)
                for rep in range(args.reps):  # every other round in reverse, so that no arm always follows the same one
                    for arm, run in list(arms.items())[:: -1 if rep % 2 else 1]:
                        times[arm].append(run(args.steps))
            ms = {arm: statistics.median(t) * 1e3 for arm, t in times.items()}
            best_arm = min((k for k in ms if k.startswith("plain")), key=ms.get)  # textbook counts: the same layers
            best_plain = ms[best_arm]
            # dlrun's time over the best plain arm's in the same round: the round's drift cancels
            per_round = [d / p for d, p in zip(times["dlrun"], times[best_arm], strict=True)]
            gflops = flops / (ms["dlrun"] / 1e3) / 1e9
            row = {"model": name, "overrides": overrides, "precision": precision, "ms": ms,
                   "all_ms": {k: [t * 1e3 for t in v] for k, v in times.items()}, "flops_per_step": flops, "gflops": gflops,
                   "of_matmul": gflops / peaks[precision], "best_plain_over_dlrun": best_plain / ms["dlrun"],
                   "best_plain_arm": best_arm, "dlrun_over_best_plain_per_round": per_round,
                   "dlrun_faster_rounds": sum(r < 1 for r in per_round)}  # fmt: skip
            results["models"].append(row)
            cells = [f"{ms[arm]:.1f}" if arm in ms else "-" for arm in arms_shown]
            # torch's counter sees no matmul inside the CPU's fused LSTM kernel: no rate rather than a wrong one
            rate = f"{gflops:.1f} ({row['of_matmul']:.1%})" if gflops >= 1 else "not counted"
            rounds = f"{statistics.median(per_round):.2f} ({row['dlrun_faster_rounds']} of {len(per_round)})"
            print(f"| {name} | {precision} | " + " | ".join(cells)
                  + f" | {row['best_plain_over_dlrun']:.2f}x | {rounds} | {rate} |", flush=True)  # fmt: skip
    results["matmul_gflops_after"] = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    return results


def accuracy(args, machine: dict) -> dict:
    from dlrun.cli import main as dlrun

    results = {**machine, "epochs": args.accuracy, "models": []}
    print("| model | arm | test acc | test loss | train s |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, overrides) in enumerate(MODELS):
            if args.models and name not in args.models:
                continue
            arms = {"fp32": ["trainer.precision=fp32"], "bf16": ["trainer.precision=bf16"]}
            if any(part in name for part in ("cnn", "resnet", "transformer")):
                arms["fp32 contiguous"] = ["trainer.precision=fp32", "trainer.memory_format=contiguous"]
            for arm, extra in arms.items():
                run_dir = Path(tmp) / f"{i}-{arm}"
                with contextlib.redirect_stdout(io.StringIO()):
                    code = dlrun([*overrides, "dataset=mnist", f"dataset.root={args.root}", "device=cpu", "seed=0",
                                  f"trainer.epochs={args.accuracy}", "trainer.progress=off", "trainer.plots=false",
                                  "trainer.checkpoints=false", *extra, f"hydra.run.dir={run_dir}"])  # fmt: skip
                if code:
                    raise SystemExit(f"{name} {arm}: dlrun exited with {code}")
                summary = json.loads((run_dir / "summary.json").read_text())
                row = {"model": name, "arm": arm, "test": summary["test"], "memory_format": summary["memory_format"],
                       "train_s": summary["timing"]["train_s"]}  # fmt: skip
                results["models"].append(row)
                print(f"| {name} | {arm} | {row['test']['acc']:.2%} | {row['test']['loss']:.4f} | {row['train_s']:.1f} |", flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data", help="folder holding MNIST/raw")
    p.add_argument("--steps", type=int, default=30, help="timed training steps of 64 per arm and round")
    p.add_argument("--reps", type=int, default=3, help="rounds of alternating arms")
    p.add_argument("--models", type=lambda s: [m.strip() for m in s.split(",")], help="a comma-separated subset of MODELS' names")
    p.add_argument("--accuracy", type=int, default=0, help="instead of timing: test accuracy after this many epochs, fp32 against bf16")
    p.add_argument("--out", help="JSON file (default: benchmarks/results/models[-accuracy]-<host>.json)")
    args = p.parse_args()
    machine = {"host": socket.gethostname(), "python": platform.python_version(), "cpu": cpu_name(), "flags": cpu_flags(),
               "cores": os.cpu_count(), "load_before": os.getloadavg()[0]}  # fmt: skip
    results = accuracy(args, machine) if args.accuracy else speed(args, machine)
    results["load_after"] = os.getloadavg()[0]
    print(f"\n{results['cpu']} ({', '.join(results['flags'])}), {results['cores']} cores; load average "
          f"{results['load_before']:.1f} before, {results['load_after']:.1f} after")  # fmt: skip
    if not args.accuracy:
        print(f"matmul GFLOP/s before {results['matmul_gflops_before']}, after {results['matmul_gflops_after']}; "
              f"{args.reps} rounds x {args.steps} steps per arm, medians")  # fmt: skip
    kind = "models-accuracy" if args.accuracy else "models"
    out = Path(args.out or Path(__file__).parent / "results" / f"{kind}-{results['host']}.json")
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

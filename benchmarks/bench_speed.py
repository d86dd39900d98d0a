"""dlrun against the tutorial it grew from: the same MNIST MLP, the same files, the same CPU.

    .venv/bin/python benchmarks/bench_speed.py                      # 3 reps x 2 epochs, ~3 minutes on 2 cores
    .venv/bin/python benchmarks/bench_speed.py --reps 5 --epochs 3 --threads 1 --root /path/with/MNIST
    .venv/bin/python benchmarks/bench_speed.py --profile            # where dlrun's training step spends its time
    .venv/bin/python benchmarks/bench_speed.py speedrun             # GPU: experiment=mnist_speedrun, time to 99%

Arm A is the tutorial's loop, written here from its description: torchvision's MNIST with
ToTensor, a DataLoader (batch 64, shuffled) for training and one (batch 64) for testing, the
784-128-256-10 ReLU MLP, Adam(lr=0.01) with torch's defaults, cross-entropy, and every epoch a pass
over the 60000 training images then the 10000 test images. Arm B is `dlrun experiment=seed_mnist`
(the same model, optimizer, batch, data and per-epoch test pass; val_fraction 0), run in-process
through Hydra's compose API and `dlrun.training.recipe.execute`, timed by dlrun's own summary.json. Each arm
runs in a fresh process with the same torch thread count, in the order A B A B ..., one
repetition per seed; a repetition's epoch time is the median of its epochs. The parent process
measures the fp32 matmul throughput (2048x2048, median of 5) before and after, so the training
speed can be stated as a fraction of what this CPU does at best:
6 FLOPs per weight per example (2 forward, 4 backward) x 135,680 weights x 60,000 images per
epoch = 48.8 GFLOP, over the measured training seconds, over the matmul GFLOP/s. (The first
layer's input gradient is never computed, so the real work is ~75% of that count.)
The result goes to benchmarks/results/speed-<host>.json (or --out).

What made the difference (torch.profiler and py-spy on this 2-vCPU Xeon at 2.5 GHz; every
change A/B-tested in one process, alternating chunks of steps, and checked to leave the metrics
unchanged):

* The tutorial spends ~90% of its time outside the model: every image goes through PIL and
  ToTensor and the DataLoader collates 64 of them, ~11 s of its ~13-17 s epoch. dlrun holds MNIST
  as one float tensor (209 MB, loaded once through torchvision's MNIST class) and evaluates in
  batches of 1024, so its test pass takes ~0.06 s instead of ~1.5 s.
* The loop, for every model: a batch is gathered with `index_select` (~13 us; `x[idx]` goes
  through advanced indexing, ~180 us); subnormal floats are flushed (Adam's moment estimates for
  weights fed by MNIST's always-black border decay into subnormals, which x86 handles in
  microcode: unflushed, later epochs ran ~1.5x slower than the first); no autocast context in
  fp32; two tensor ops per step for loss and accuracy instead of six.
* The optimizer (`dlrun.training.optim.lean_step`, every model): torch.optim's Adam.step() wraps its
  ~0.2 ms fused kernel in ~0.3 ms of Python (a profiler range, hook checks, per-parameter state
  checks, grouping tensors by device, and a `_foreach_add_` of the step counts that alone takes
  ~0.1 ms on a CPU). dlrun calls the same kernel on the optimizer's own state, bit-identical, and
  counts steps with one add_ on a shared tensor.
* The ReLU MLP's step written out (`dlrun.training.mlp_step`): autograd's graph, nn.Module dispatch and
  fresh gradient tensors cost ~0.5 ms of a batch-64 step. The hand-written step calls autograd's
  own kernels into buffers made once per epoch; losses and gradients are bit-identical.
* The first layer's weight lies input-major (`dlrun.training.models.input_major`): MKL multiplies the
  (64, 784) batch by a row-major (784, 128) matrix ~1.9x faster than by the transposed view of a
  (128, 784) weight, with identical results. torch.optim's fused Adam would copy such a weight in
  and out every step (~0.4 ms); lean_step hands it contiguous transposed views. Per step, in one
  A/B: 1.72 -> 1.42 ms median.
* Subnormals on the worker threads (`dlrun.training.device.flush_denormals_everywhere`): the flush flag is
  per thread, and a new thread copies it from its creator. Set only around the training loop,
  it missed torch's OpenMP workers (started at the first parallel operation, while loading
  data), so with two threads the Adam kernel's second half still met subnormals and epochs after
  the first ran at 2.5-3.2 s instead of 1.5-1.8 s. A run now sets it before touching any data.
* Together: ~3.0 ms per step before, ~1.3-2.2 ms now (the range is the host's drift).
* Threads: with less Python per step and the workers flushing subnormals, two threads beat one
  on this machine: 4 alternating pairs of 3-epoch `dlrun experiment=seed_mnist` runs gave epoch
  medians of 1.09-1.36 s with two threads against 1.49-1.82 s with one. One thread had been
  faster while the Python between kernels left the second core idle and each OpenMP region
  still paid its wake-up. The tutorial is slower with two threads.
* Where a step goes now (profile, 1 thread): the 8 matrix products ~0.75 ms, the fused Adam
  kernel ~0.25 ms (memory-bound: it reads and writes 3.8 MB of parameters, gradients and moments
  per step), the batch gather ~0.1-0.17 ms (64 random rows of a 188 MB tensor), ~20 small
  kernels and the Python between them ~0.4 ms. torch.compile does not help on this CPU (2.5 ms a
  step after a 9 s compile).
* Why 60% of the matmul throughput is not reached: that count credits every step with
  6 x 135,680 x 64 = 52 MFLOP, a quarter of which (the first layer's input gradient) is never
  computed, and the batch-64 products run below the 2048x2048 rate. The products, the Adam
  kernel and the gather alone take ~1.1 ms a step, i.e. ~58% of an 80 GFLOP/s core by that
  count, even if the ~20 small kernels and the Python between them cost nothing. More would need
  the whole step fused into one compiled kernel.
* On the 2-core Xeon with AVX-512, avx512_bf16, avx512_vnni and AMX (issue 16; README's second CPU
  table), what was tried against the per-step overhead, each arm alternating 100-step chunks with
  the current step in one process, and what it gave (none is kept):
  - The whole step (forward, backward, Adam written out) under Inductor with cpp_wrapper: 1.14x
    slower in the default mode after an 18 s first compile, 1.10x slower with
    max-autotune-no-cudagraphs (5 s with the compile cache warm). The products stay MKL calls, so
    fusing the elementwise work does not pay for the generated loops, and Adam written out is not
    bit-identical to the fused kernel.
  - The same step under TorchScript (the same ATen calls, bit-identical, 14 ms to script):
    0.95x of the time, within this shared host's noise, through an API torch has deprecated.
  - Bias and ReLU in one call (torch._addmm_activation, bit-identical): 1.00x. Reverted.
  - The dataset permuted once per epoch so that batches are contiguous slices: the permutation
    costs ~75 ms per epoch (2 threads), more than the 64-row gathers it replaces (~28 us a step).
  - One thread instead of two: 1.23x slower per step on a quiet host. The catch: with another
    process busy on either core, a two-thread OpenMP region can take milliseconds instead of
    microseconds (a 64x784x128 addmm measured 3-7 ms), so timings on a shared 2-core machine
    swing widely; one thread degrades gracefully.
  - MKL_DYNAMIC=FALSE: no change in any of the step's products.
  Why the products do not speed up: at batch 64, MKL runs each of them at about one core's
  rate whatever the thread count (the 64x784x128 forward product ~149 GFLOP/s with one thread
  and with two, where a 2048x2048 product reaches 200-230 GFLOP/s on both cores). Splitting a
  product by rows, or running a layer's weight gradient beside its input gradient, gives
  bit-identical results (checked), so two one-thread halves could use both cores. Done with
  TorchScript forks (every hidden product split by rows, each layer's weight gradient beside its
  input gradient, the Adam kernel on half of the first weight beside the rest; one intra-op
  thread, bit-identical after 100 steps) the step was 1.54x slower: waking torch's inter-op
  thread ~10 times a step costs more than the halves save. It would need a handoff between two
  spinning threads, i.e. the step in C++.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

from machine import matmul_gflops  # benchmarks/machine.py: this folder is on a script's path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_ROOT = REPO.parent / "shared" / "data"
HIDDEN = (784, 128, 256, 10)  # the tutorial's MLP, input to output
TRAIN_IMAGES = 60_000
FLOPS_PER_EPOCH = 6 * sum(a * b for a, b in pairwise(HIDDEN)) * TRAIN_IMAGES  # 2 forward + 4 backward per weight


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def set_threads(threads: int) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# Arm A: the tutorial's loop.


def tutorial_arm(root: Path, epochs: int, seed: int) -> dict:
    import torch
    from torch import nn, optim
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from dlrun.training.torchvision_data import torchvision_idx_root

    torch.manual_seed(seed)
    found = torchvision_idx_root("MNIST", root)  # the same files dlrun reads (extracted once if .gz)
    if found is None:
        raise SystemExit(f"no MNIST files under {root}; pass --root")
    transform = transforms.ToTensor()
    train_data = datasets.MNIST(str(found), train=True, download=False, transform=transform)
    test_data = datasets.MNIST(str(found), train=False, download=False, transform=transform)
    train_loader = DataLoader(train_data, batch_size=64, shuffle=True)
    test_loader = DataLoader(test_data, batch_size=64, shuffle=False)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 128)
            self.fc2 = nn.Linear(128, 256)
            self.fc3 = nn.Linear(256, 10)

        def forward(self, x):
            x = x.view(-1, 784)
            x = torch.relu(self.fc1(x))
            x = torch.relu(self.fc2(x))
            return self.fc3(x)

    model = MLP()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    rows = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        running_loss = 0.0
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
        trained = time.perf_counter()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in test_loader:
                _, predicted = torch.max(model(images), 1)
                total += labels.size(0)
                correct += (predicted == labels).sum().item()
        rows.append(
            {
                "train_s": trained - start,
                "test_s": time.perf_counter() - trained,
                "train_loss": running_loss / len(train_loader),
                "test_acc": correct / total,
            }
        )
    return {
        "epochs": rows,
        "epoch_s_median": statistics.median(r["train_s"] + r["test_s"] for r in rows),
        "train_s_per_epoch": sum(r["train_s"] for r in rows) / epochs,
        "test_s_per_epoch": sum(r["test_s"] for r in rows) / epochs,
        "test_acc": rows[-1]["test_acc"],
    }


# ---------------------------------------------------------------------------------------------
# Arm B: dlrun, composed and run in-process as `dlrun experiment=seed_mnist ...` would be.


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from dlrun.config import config_dir, register_configs

    register_configs()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def dlrun_arm(root: Path, epochs: int, seed: int) -> dict:
    import torch  # noqa: F401  (imported before the RSS baseline, as the tutorial arm's imports are)
    from rich.console import Console

    from dlrun.training.recipe import execute

    overrides = [
        "experiment=seed_mnist",
        f"dataset.root={root}",
        f"trainer.epochs={epochs}",
        f"seed={seed}",
        "device=cpu",
        "trainer.progress=off",
        "trainer.plots=false",
    ]
    cfg = compose(overrides)
    baseline = rss_mb()
    with tempfile.TemporaryDirectory(prefix="dlrun-bench-") as run_dir:
        summary = execute(cfg, Path(run_dir), console=Console(quiet=True), overrides=overrides)
    timing = summary["timing"]
    return {
        "epoch_s_median": timing["epoch_s_median"],
        "train_s_per_epoch": timing["train_s"] / epochs,
        "test_s_per_epoch": timing["eval_s"] / epochs,
        "test_acc": summary["test"]["acc"],
        "rss_before_run_mb": baseline,
        "device": summary["device"],
    }


# ---------------------------------------------------------------------------------------------
# Where the time goes: torch.profiler over 300 of dlrun's training steps.


def profile_dlrun(root: Path, steps: int = 300) -> None:
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from dlrun.training.data import load_dataset
    from dlrun.training.models import build_model
    from dlrun.training.optim import build_optimizer
    from dlrun.training.steps import StepSettings, choose_step, train_one_epoch

    data = load_dataset("mnist", root=root, device=torch.device("cpu"), val_fraction=0.0)
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, data.num_classes)
    optimizer = build_optimizer("adam", model, lr=0.01)
    settings = StepSettings(64, F.cross_entropy, limit_batches=steps)
    generator = torch.Generator().manual_seed(0)
    step, _ = choose_step(model, model, optimizer, settings, "auto", print)
    warm = train_one_epoch(step, model, data.train, settings, generator)
    print(f"{1e3 * warm['seconds'] / steps:.3f} ms per step without the profiler ({steps} steps, {torch.get_num_threads()} threads)")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_one_epoch(step, model, data.train, settings, generator)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


# ---------------------------------------------------------------------------------------------
# GPU: experiment=mnist_speedrun, time to 99% test accuracy and epoch throughput.


def speedrun(root: Path, reps: int, overrides: list[str], target: float = 0.99) -> dict:
    """Train the preset `reps` times (seeds 0..reps-1), each after a warm-up (compilation, cuDNN
    autotuning) of the same model; time each epoch's training with the device synchronized,
    evaluate on the test set after each epoch (not timed), and note when `target` is first reached."""
    import torch

    from dlrun.training.data import load_dataset
    from dlrun.training.device import resolve_device
    from dlrun.training.models import build_model
    from dlrun.training.optim import build_optimizer
    from dlrun.training.settings import dataset_kwargs, model_kwargs, optimizer_kwargs
    from dlrun.training.steps import StepSettings, choose_step, evaluate, make_loss, train_one_epoch

    cfg = compose(["experiment=mnist_speedrun", f"dataset.root={root}", *overrides])
    trainer = cfg.trainer
    device = resolve_device(cfg.device.name)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    data = load_dataset(cfg.dataset.name, device=device, **dataset_kwargs(cfg))
    loss_fn = make_loss(trainer.loss, data.num_classes)
    train_settings = StepSettings(trainer.batch_size, loss_fn, cfg.regularization.l1, 0, trainer.shuffle, trainer.precision)
    eval_settings = StepSettings(trainer.eval_batch_size, loss_fn, 0.0, 0, False, trainer.precision)
    runs = []
    for seed in range(reps):
        torch.manual_seed(seed)
        model = build_model(cfg.model.name, data.input_shape, data.num_classes, **model_kwargs(cfg)).to(device)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        forward = torch.compile(model) if trainer.compile else model
        warm_start = time.perf_counter()
        warm_optimizer = build_optimizer(cfg.optimizer.name, model, **optimizer_kwargs(cfg))
        warm = StepSettings(trainer.batch_size, loss_fn, cfg.regularization.l1, 20, True, trainer.precision)
        warm_step, _ = choose_step(model, forward, warm_optimizer, warm, trainer.fast_path, print)
        train_one_epoch(warm_step, forward, data.train, warm, torch.Generator().manual_seed(seed))
        evaluate(forward, data.test, eval_settings)
        sync()
        warmup_s = time.perf_counter() - warm_start
        model.load_state_dict(initial)  # the same weights, in place: compiled code stays valid
        optimizer = build_optimizer(cfg.optimizer.name, model, **optimizer_kwargs(cfg))
        generator = torch.Generator().manual_seed(seed)
        step, _ = choose_step(model, forward, optimizer, train_settings, trainer.fast_path, print)
        elapsed, epochs, reached = 0.0, [], None
        for epoch in range(1, trainer.epochs + 1):
            sync()
            start = time.perf_counter()
            train = train_one_epoch(step, forward, data.train, train_settings, generator)
            sync()
            seconds = time.perf_counter() - start
            elapsed += seconds
            acc = evaluate(forward, data.test, eval_settings)["acc"]
            epochs.append({"epoch": epoch, "train_s": seconds, "images_per_s": train["examples"] / seconds, "test_acc": acc})
            if reached is None and acc >= target:
                reached = {"epoch": epoch, "train_s": elapsed}
        runs.append({"seed": seed, "warmup_s": warmup_s, "epochs": epochs, "reached": reached, "final_acc": epochs[-1]["test_acc"]})
        hit = (
            f"{target:.0%} after {reached['epoch']} epochs, {reached['train_s']:.3f} s of training"
            if reached
            else f"never reached {target:.0%}"
        )
        print(
            f"seed {seed}: {hit}; final test acc {epochs[-1]['test_acc']:.2%}; "
            f"{statistics.median(e['images_per_s'] for e in epochs):,.0f} training images/s; warm-up {warmup_s:.1f} s",
            flush=True,
        )
    times = [r["reached"]["train_s"] for r in runs if r["reached"]]
    result = {
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "overrides": list(overrides),
        "precision": trainer.precision,
        "compile": trainer.compile,
        "runs": runs,
        "reached": f"{len(times)}/{reps}",
        "time_to_target_s_median": statistics.median(times) if times else None,
        "images_per_s_median": statistics.median(e["images_per_s"] for r in runs for e in r["epochs"]),
    }
    median = f"{result['time_to_target_s_median']:.3f} s" if times else "-"
    print(
        f"time to {target:.0%} test accuracy: median {median} ({result['reached']} runs reached it) on {result['device']}, "
        f"precision {trainer.precision}, compile {trainer.compile}; {result['images_per_s_median']:,.0f} training images/s"
    )
    return result


# ---------------------------------------------------------------------------------------------
# The parent: A B A B in fresh processes, then the table and the JSON.


def run_arm(arm: str, root: Path, epochs: int, seed: int, threads: int) -> dict:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--arm",
            arm,
            "--root",
            str(root),
            "--epochs",
            str(epochs),
            "--seed",
            str(seed),
            "--threads",
            str(threads),
            "--result",
            out.name,
        ]
        subprocess.run(cmd, check=True, env=env, cwd=REPO)
        return json.loads(Path(out.name).read_text())


def child(args: argparse.Namespace) -> None:
    import torch

    set_threads(args.threads)
    arm = tutorial_arm if args.arm == "tutorial" else dlrun_arm
    result = arm(args.root, args.epochs, args.seed)
    result |= {"peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads()}
    Path(args.result).write_text(json.dumps(result))


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def machine() -> dict:
    import torch

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def compare(args: argparse.Namespace) -> dict:
    import torch

    set_threads(args.threads)
    threads = torch.get_num_threads()
    load_before = os.getloadavg()
    gflops = [matmul_gflops()]
    reps: dict[str, list[dict]] = {"tutorial": [], "dlrun": []}
    for rep in range(args.reps):
        for arm in ("tutorial", "dlrun"):
            result = run_arm(arm, args.root, args.epochs, rep, args.threads)
            reps[arm].append(result)
            print(
                f"rep {rep + 1}/{args.reps} {arm:8s}: epoch {result['epoch_s_median']:.2f} s (train {result['train_s_per_epoch']:.2f}, "
                f"test {result['test_s_per_epoch']:.2f}), test acc {result['test_acc']:.2%}, peak RSS {result['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    gflops.append(matmul_gflops())
    matmul = statistics.median(gflops)
    summary = {}
    for arm, results in reps.items():
        summary[arm] = {
            key: spread([r[key] for r in results])
            for key in ("epoch_s_median", "train_s_per_epoch", "test_s_per_epoch", "test_acc", "peak_rss_mb")
        }
        train_s = summary[arm]["train_s_per_epoch"]["median"]
        summary[arm]["train_gflops"] = FLOPS_PER_EPOCH / train_s / 1e9
        summary[arm]["fraction_of_matmul"] = summary[arm]["train_gflops"] / matmul
    tut, dl = summary["tutorial"], summary["dlrun"]
    ratio = tut["epoch_s_median"]["median"] / dl["epoch_s_median"]["median"]
    acc_gap = 100 * (dl["test_acc"]["median"] - tut["test_acc"]["median"])
    dl_rss = reps["dlrun"]
    mnist_float_mb = 70_000 * 784 * 4 / 2**20
    result = {
        "date": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "threads": threads,
        "reps": args.reps,
        "epochs": args.epochs,
        "root": str(args.root),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "matmul_gflops": {"n": 2048, "runs": gflops, "median": matmul},
        "flops_per_epoch": FLOPS_PER_EPOCH,
        "summary": summary,
        "ratio_epoch": ratio,
        "test_acc_gap_points": acc_gap,
        "memory": {
            "dlrun_peak_rss_mb": dl["peak_rss_mb"]["median"],
            "dlrun_rss_before_run_mb": statistics.median(r["rss_before_run_mb"] for r in dl_rss),
            "mnist_one_float32_copy_mb": mnist_float_mb,
        },
        "targets": {
            "epoch_ratio_at_least_10x": ratio >= 10,
            "accuracy_within_half_point": abs(acc_gap) <= 0.5,
            "train_at_least_60pct_of_matmul": dl["fraction_of_matmul"] >= 0.6,
        },
        "runs": reps,
    }
    print_table(result)
    out = args.out or HERE / "results" / f"speed-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {out}")
    return result


def print_table(r: dict) -> None:
    s, m = r["summary"], r["machine"]
    fmt = lambda d, f="{:.2f}": f"{f.format(d['median'])} [{f.format(d['min'])}-{f.format(d['max'])}]"  # noqa: E731
    pct = lambda d: fmt({k: 100 * v for k, v in d.items() if k != "n"}, "{:.2f}")  # noqa: E731
    print()
    print(
        f"MNIST MLP 784-128-256-10, Adam lr 0.01, batch 64: {r['reps']} reps x {r['epochs']} epochs per arm, "
        f"alternating A B, {r['threads']} torch thread(s)"
    )
    print(
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; load average {r['load_avg_before'][0]:.2f} -> "
        f"{r['load_avg_after'][0]:.2f}"
    )
    print(
        f"fp32 matmul 2048x2048: {r['matmul_gflops']['median']:.0f} GFLOP/s (before/after: "
        f"{', '.join(f'{g:.0f}' for g in r['matmul_gflops']['runs'])})"
    )
    rows = [
        ("epoch, train + test (s)", fmt(s["tutorial"]["epoch_s_median"]), fmt(s["dlrun"]["epoch_s_median"]), f"{r['ratio_epoch']:.1f}x"),
        (
            "  train per epoch (s)",
            fmt(s["tutorial"]["train_s_per_epoch"]),
            fmt(s["dlrun"]["train_s_per_epoch"]),
            f"{s['tutorial']['train_s_per_epoch']['median'] / s['dlrun']['train_s_per_epoch']['median']:.1f}x",
        ),
        (
            "  test per epoch (s)",
            fmt(s["tutorial"]["test_s_per_epoch"], "{:.3f}"),
            fmt(s["dlrun"]["test_s_per_epoch"], "{:.3f}"),
            f"{s['tutorial']['test_s_per_epoch']['median'] / s['dlrun']['test_s_per_epoch']['median']:.1f}x",
        ),
        (
            f"test acc after {r['epochs']} epochs (%)",
            pct(s["tutorial"]["test_acc"]),
            pct(s["dlrun"]["test_acc"]),
            f"{r['test_acc_gap_points']:+.2f} pt",
        ),
        (
            "training GFLOP/s (of matmul)",
            f"{s['tutorial']['train_gflops']:.1f} ({s['tutorial']['fraction_of_matmul']:.1%})",
            f"{s['dlrun']['train_gflops']:.1f} ({s['dlrun']['fraction_of_matmul']:.1%})",
            "",
        ),
        ("peak RSS (MB)", fmt(s["tutorial"]["peak_rss_mb"], "{:.0f}"), fmt(s["dlrun"]["peak_rss_mb"], "{:.0f}"), ""),
    ]
    widths = [max(len(row[i]) for row in rows + [("", "tutorial (A)", "dlrun (B)", "A / B")]) for i in range(4)]
    for row in [("median [min-max]", "tutorial (A)", "dlrun (B)", "A / B"), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    mem = r["memory"]
    print(
        f"dlrun RSS: {mem['dlrun_rss_before_run_mb']:.0f} MB after imports, {mem['dlrun_peak_rss_mb']:.0f} MB peak; "
        f"MNIST as float32 is {mem['mnist_one_float32_copy_mb']:.0f} MB (one copy)"
    )
    t = r["targets"]
    print(
        f"targets: epoch >= 10x faster: {'met' if t['epoch_ratio_at_least_10x'] else 'NOT met'}; accuracy within 0.5 pt: "
        f"{'met' if t['accuracy_within_half_point'] else 'NOT met'}; training >= 60% of matmul: "
        f"{'met' if t['train_at_least_60pct_of_matmul'] else 'NOT met'}"
    )


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["speedrun"]:
        parser = argparse.ArgumentParser(prog="bench_speed.py speedrun", description=speedrun.__doc__)
        parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder holding MNIST/raw")
        parser.add_argument("--reps", type=int, default=3, help="timed trainings, seeds 0..reps-1")
        parser.add_argument("--out", type=Path, help="write the result as JSON here")
        parser.add_argument("overrides", nargs="*", help="dlrun overrides, e.g. trainer.precision=bf16 trainer.compile=true")
        args = parser.parse_args(argv[1:])
        result = speedrun(args.root.resolve(), args.reps, args.overrides)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1) + "\n")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder holding MNIST/raw (default: ../shared/data)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each arm, alternating (default 3)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per repetition (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both arms; 0 = torch's default (one per core)")
    parser.add_argument("--out", type=Path, help="JSON result (default benchmarks/results/speed-<host>.json)")
    parser.add_argument("--profile", action="store_true", help="profile 300 of dlrun's training steps instead")
    parser.add_argument("--arm", choices=("tutorial", "dlrun"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.root = args.root.resolve()
    if args.arm:
        child(args)
    elif args.profile:
        set_threads(args.threads)
        profile_dlrun(args.root)
    else:
        compare(args)


if __name__ == "__main__":
    main()

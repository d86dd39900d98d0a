"""dlrun's training step in a process set up as `dlrun` sets it up, against the plain loops in a
process left as Python starts it, the two taking turns.

    .venv/bin/python benchmarks/bench_processes.py --root ../shared/data [--models "cnn simple"] [--steps 30] [--reps 8]

bench_models.py runs every arm in one process, so what dlrun sets for its whole process reaches
the plain arms too: glibc's malloc keeping freed memory (device.keep_freed_memory) and subnormals
flushed on every thread (device.flush_denormals_everywhere). Here two worker processes take
turns, never running at once. One sets itself up as recipe.execute does, before loading any
data, and times dlrun's step (bench_models.dlrun_arm); the other is left as it starts and times
the plain loop as one writes it by hand (bench_models.plain_arm: contiguous, and channels_last
for conv nets). Each round every arm trains --steps steps, and the two processes swap order every
round; the ratio plain / dlrun within a round cancels the host's drift, and its median is the
result. A third worker times dlrun's step in a process left as it starts ("dlrun, bare"): what
the process set-up itself is worth. Each worker also counts its minor page faults per step.
Every model and precision gets fresh workers, as each run of `dlrun` or of a script is a process
of its own: glibc's malloc adapts its thresholds to what a process has freed before, so a plain
loop that follows other models in one process faults far less than the same loop started anew
(49 against ~4,100-4,600 page faults per step for the simple CNN, measured).
Writes results/processes-<host>.json.
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
from pathlib import Path

import bench_models  # beside this file: a script's own folder is on sys.path
from machine import cpu_flags, cpu_name, matmul_gflops

HERE = Path(__file__).resolve().parent
SIDES = ("dlrun", "dlrun-bare", "plain")  # the workers
TAG = "@@ "  # the lines of the protocol; anything else a worker prints is passed over


def combos(models: str) -> list[tuple[str, list[str], str]]:
    chosen = [(name, overrides) for name, overrides in bench_models.MODELS if not models or name in models.split(",")]
    return [(name, overrides, precision) for name, overrides in chosen for precision in ("fp32", "bf16")]


def serve(side: str, root: str, combo: str, steps: int) -> None:
    """A worker: build its arms for one combination ("model|precision"), then time one round per line read."""
    if side == "dlrun":  # what recipe.execute does first, before any data is loaded (not "dlrun-bare")
        from dlrun.training.device import flush_denormals_everywhere, keep_freed_memory

        flush_denormals_everywhere()
        keep_freed_memory()
    import torch

    from dlrun.training.data import load_dataset
    from dlrun.training.recipe import make_model
    from dlrun.training.settings import dataset_kwargs

    base = ["dataset=mnist", f"dataset.root={root}", "device=cpu", "seed=0", "trainer.progress=off", f"trainer.limit_train_batches={steps}"]
    arms: dict[str, dict[str, object]] = {}
    data = None
    tmp = Path(tempfile.mkdtemp(prefix="bench-processes-"))
    model, chosen = combo.split("|")
    for name, overrides, precision in combos(model):
        if precision != chosen:
            continue
        cfg = bench_models.compose([*overrides, *base, f"trainer.precision={precision}"])
        if data is None:
            data = load_dataset("mnist", device=torch.device("cpu"), **dataset_kwargs(cfg))
        key = f"{name}|{precision}"
        if side.startswith("dlrun"):
            arms[key] = {"dlrun" if side == "dlrun" else "dlrun, bare": bench_models.dlrun_arm(cfg, data, tmp)[0]}
            continue
        torch.manual_seed(0)
        conv = bench_models.has_conv(make_model(cfg, data.input_shape, data.num_classes, torch.device("cpu")))
        arms[key] = {}
        for arm, channels_last in (("plain", False), ("plain channels_last", True)) if conv else (("plain", False),):
            torch.manual_seed(0)
            model = make_model(cfg, data.input_shape, data.num_classes, torch.device("cpu"))
            batches = bench_models.in_memory(data.train.x, data.train.y, 0)
            arms[key][arm] = bench_models.plain_arm(model, cfg.optimizer.lr, batches, precision == "bf16", channels_last)
    print(TAG + "ready", flush=True)
    for line in sys.stdin:
        key = line.strip()
        out = {}
        for arm, run in arms[key].items():
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            seconds = run(steps)
            out[arm] = {"ms": seconds * 1e3, "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps}
        print(TAG + json.dumps(out), flush=True)


class Worker:
    def __init__(self, side: str, combo: str, args: argparse.Namespace):
        command = [sys.executable, str(Path(__file__).resolve()), "--serve", side, "--root", args.root, "--models", combo,
                   "--steps", str(args.steps)]  # fmt: skip
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
        self.reply()  # "ready"

    def reply(self) -> str:
        for line in self.proc.stdout:
            if line.startswith(TAG):
                return line[len(TAG) :].strip()
        raise RuntimeError(f"a worker ended early (exit code {self.proc.wait()})")

    def round(self, key: str) -> dict:
        self.proc.stdin.write(key + "\n")
        self.proc.stdin.flush()
        return json.loads(self.reply())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def timed_rounds(key: str, args: argparse.Namespace) -> list[dict]:
    """Each round's {arm: {"ms", "faults"}} for one "model|precision", from fresh workers."""
    workers = {side: Worker(side, key, args) for side in SIDES}
    try:
        for worker in workers.values():  # warm-up: oneDNN's kernels, the allocator
            worker.round(key)
        rounds = []
        for rep in range(args.reps):
            order = SIDES[rep % len(SIDES) :] + SIDES[: rep % len(SIDES)]  # each side first in turn
            rounds.append({arm: timing for side in order for arm, timing in workers[side].round(key).items()})
        return rounds
    finally:
        for worker in workers.values():
            worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(HERE.parent.parent / "shared" / "data"), help="folder holding MNIST/raw")
    parser.add_argument("--models", default="cnn simple", help="a comma-separated subset of bench_models.MODELS' names")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps of 64 per arm and round")
    parser.add_argument("--reps", type=int, default=8, help="rounds, the processes' order flipped every round")
    parser.add_argument("--out", type=Path, default=HERE / "results" / f"processes-{socket.gethostname()}.json")
    parser.add_argument("--serve", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.root, args.models, args.steps)
        return
    import torch

    results = {"host": socket.gethostname(), "cpu": cpu_name(), "flags": sorted(cpu_flags()), "cores": os.cpu_count(),
               "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "steps": args.steps, "reps": args.reps, "matmul_gflops_before": matmul_gflops(torch.float32), "rows": []}  # fmt: skip
    print("| model | precision | dlrun ms | dlrun, bare ms | plain ms | plain channels_last ms | plain contiguous / dlrun, per round: "
          "median [min-max] | best plain / dlrun, per round | dlrun, bare / dlrun, per round | "
          "page faults per step, dlrun / bare / plain |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---|---|---|---|")
    for name, _, precision in combos(args.models):
        key = f"{name}|{precision}"
        rounds = timed_rounds(key, args)
        ms = {arm: statistics.median(r[arm]["ms"] for r in rounds) for arm in rounds[0]}
        plain_over = [r["plain"]["ms"] / r["dlrun"]["ms"] for r in rounds]
        best_over = [min(t["ms"] for arm, t in r.items() if arm.startswith("plain")) / r["dlrun"]["ms"] for r in rounds]
        bare_over = [r["dlrun, bare"]["ms"] / r["dlrun"]["ms"] for r in rounds]
        faults = {arm: statistics.median(r[arm]["faults"] for r in rounds) for arm in rounds[0]}
        results["rows"].append({"model": name, "precision": precision, "ms": ms, "rounds": rounds,
                                "plain_over_dlrun": plain_over, "best_plain_over_dlrun": best_over, "bare_over_dlrun": bare_over,
                                "faults": faults})  # fmt: skip
        cl = f"{ms['plain channels_last']:.1f}" if "plain channels_last" in ms else "-"
        print(f"| {name} | {precision} | {ms['dlrun']:.1f} | {ms['dlrun, bare']:.1f} | {ms['plain']:.1f} | {cl} | "
              f"{statistics.median(plain_over):.2f}x [{min(plain_over):.2f}-{max(plain_over):.2f}] | "
              f"{statistics.median(best_over):.2f}x | {statistics.median(bare_over):.2f}x | "
              f"{faults['dlrun']:.0f} / {faults['dlrun, bare']:.0f} / {faults['plain']:.0f} |", flush=True)  # fmt: skip
    results["matmul_gflops_after"] = matmul_gflops(torch.float32)
    print(f"\n{results['cpu']} ({', '.join(f for f in results['flags'])}), {results['cores']} cores, torch {results['torch']}; "
          f"fp32 matmul {results['matmul_gflops_before']:.0f} / {results['matmul_gflops_after']:.0f} GFLOP/s before / after; "
          f"{args.reps} rounds x {args.steps} steps per arm, medians")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

"""One model's training step, dlrun's against the plain channels_last loop's, alternating step by step.

    .venv/bin/python benchmarks/bench_step_pairs.py --root ../shared/data [--model resnet] [--pairs 60]

bench_models.py alternates blocks of steps, seconds apart, and a shared machine's speed drifts
between blocks. Here the arms alternate every step (the order reversed every other pair), each
step timed alone, so the drift cancels in each pair's ratio. Every arm gathers a random batch of
64, runs forward, loss, backward and the update:
- dlrun: recipe.build_loop's step (index_select gather, argmax for the metrics), subnormals flushed
  as train_one_epoch flushes them, and again without flushing;
- plain: x[idx], channels_last input, zero_grad, autocast for bf16, backward, torch.optim.Adam's
  step (foreach), with and without flushing subnormals.
Prints each arm's median ms and its median ratio to plain's, pair by pair; writes
results/step-pairs-<host>.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path

import bench_models  # beside this file: a script's own folder is on sys.path

BATCH = bench_models.BATCH


def pair_up(root: str, model_name: str, precision: str, pairs: int, tmp: Path) -> dict:
    """Each arm's step times (ms) over `pairs` alternations, and its ratios to the plain step's
    (`tmp`: a scratch folder for the loop's log)."""
    import torch
    import torch.nn.functional as F
    from rich.console import Console

    from dlrun.training.console import Reporter
    from dlrun.training.data import load_dataset
    from dlrun.training.recipe import build_loop, make_model
    from dlrun.training.recorder import NullRecorder
    from dlrun.training.settings import dataset_kwargs

    cfg = bench_models.compose([f"model={model_name}", "dataset=mnist", f"dataset.root={root}", "device=cpu", "seed=0",
                                "trainer.progress=off", f"trainer.precision={precision}"])  # fmt: skip
    data = load_dataset("mnist", device=torch.device("cpu"), **dataset_kwargs(cfg))
    x_all, y_all = data.train.x, data.train.y
    reporter = Reporter(tmp / "dlrun.log", "off", Console(quiet=True))
    loop, _ = build_loop(cfg, data, torch.device("cpu"), NullRecorder(tmp), reporter, None)
    torch.manual_seed(0)
    model = make_model(cfg, data.input_shape, data.num_classes, torch.device("cpu")).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr)
    bf16 = precision == "bf16"
    generator = torch.Generator().manual_seed(0)

    def dlrun_step(flush: bool) -> float:
        idx = torch.randint(0, len(x_all), (BATCH,), generator=generator)
        torch.set_flush_denormal(flush)
        start = time.perf_counter()
        x, y = x_all.index_select(0, idx), y_all.index_select(0, idx)
        loss, logits, _ = loop.step(x, y)
        loss.detach(), logits.detach().argmax(dim=1)  # what train_one_epoch keeps of each step
        seconds = time.perf_counter() - start
        torch.set_flush_denormal(False)
        return seconds

    def plain_step(flush: bool) -> float:
        idx = torch.randint(0, len(x_all), (BATCH,), generator=generator)
        torch.set_flush_denormal(flush)
        start = time.perf_counter()
        x, y = x_all[idx].contiguous(memory_format=torch.channels_last), y_all[idx]
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        seconds = time.perf_counter() - start
        torch.set_flush_denormal(False)
        return seconds

    arms = {
        "dlrun": lambda: dlrun_step(True),
        "plain channels_last": lambda: plain_step(False),
        "dlrun, subnormals kept": lambda: dlrun_step(False),
        "plain channels_last, subnormals flushed": lambda: plain_step(True),
    }
    loop.model.train()
    model.train()
    for run in arms.values():  # warm-up: oneDNN's kernels, the allocator, the optimizer's state
        for _ in range(5):
            run()
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    for pair in range(pairs):
        for arm, run in list(arms.items())[:: -1 if pair % 2 else 1]:
            times[arm].append(run() * 1e3)
    plain = times["plain channels_last"]
    rows = {}
    for arm, t in times.items():
        ratios = [a / b for a, b in zip(t, plain, strict=True)]
        rows[arm] = {"median_ms": statistics.median(t), "ms": t, "median_ratio_to_plain": statistics.median(ratios),
                     "faster_than_plain": sum(r < 1 for r in ratios)}  # fmt: skip
        print(f"{model_name} {precision} | {arm}: {rows[arm]['median_ms']:.1f} ms, over plain {rows[arm]['median_ratio_to_plain']:.3f}"
              f" (faster in {rows[arm]['faster_than_plain']} of {pairs})", flush=True)  # fmt: skip
    reporter.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data", help="folder holding MNIST/raw")
    p.add_argument("--model", default="resnet", help="a model= name whose family dlrun trains channels_last (cnn, resnet)")
    p.add_argument("--pairs", type=int, default=60, help="alternations of every arm, per precision")
    p.add_argument("--out", help="JSON file (default: benchmarks/results/step-pairs-<host>.json)")
    args = p.parse_args()

    import torch

    results = {"host": socket.gethostname(), "model": args.model, "pairs": args.pairs, "threads": torch.get_num_threads(),
               "torch": torch.__version__, "precisions": {}}  # fmt: skip
    for precision in ("fp32", "bf16"):
        with tempfile.TemporaryDirectory() as tmp:
            results["precisions"][precision] = pair_up(args.root, args.model, precision, args.pairs, Path(tmp))
    out = Path(args.out or Path(__file__).parent / "results" / f"step-pairs-{results['host']}.json")
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

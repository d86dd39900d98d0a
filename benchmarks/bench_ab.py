"""Two versions of dlrun side by side: the same command, fresh processes, alternating A B A B.

    .venv/bin/python benchmarks/bench_ab.py --a /path/to/old/checkout --b . [--reps 4] [--epochs 2] [-- OVERRIDES...]

Each arm is a dlrun source tree (its src/ goes first on PYTHONPATH, so the installed dlrun is not
used). Every repetition runs `python -m dlrun experiment=seed_mnist dataset.root=ROOT
trainer.epochs=N trainer.plots=false` (plus any OVERRIDES) once per arm, in the order A B A B ...,
into a fresh folder, and reads the run's own summary.json: its median epoch time (train + test)
and test accuracy. What changed between two commits shows as the ratio of the medians; the test
accuracies must agree exactly (same seed, same CPU, same threads). The result is printed and
written as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu  # benchmarks/machine.py: this folder is on a script's path

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = HERE.parents[1] / "shared" / "data"


def run(tree: Path, root: Path, epochs: int, overrides: list[str], folder: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), NO_COLOR="1")
    command = [sys.executable, "-m", "dlrun", "experiment=seed_mnist", f"dataset.root={root}", f"trainer.epochs={epochs}",
               "trainer.plots=false", "trainer.progress=off", f"hydra.run.dir={folder}", *overrides]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder.parent, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: dlrun failed ({done.returncode}):\n{done.stderr[-2000:]}")
    summary = json.loads((folder / "summary.json").read_text())
    return {"epoch_s": summary["timing"]["epoch_s_median"], "test_acc": summary["test"]["acc"], "wall_s": summary["timing"]["wall_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="source tree of arm A (the baseline)")
    parser.add_argument("--b", type=Path, required=True, help="source tree of arm B (the change)")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder holding MNIST/raw")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*", help="more dlrun overrides for both arms")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as scratch:
        for rep in range(args.reps):
            for arm, tree in (("A", args.a), ("B", args.b)):
                result = run(tree.resolve(), args.root.resolve(), args.epochs, args.overrides, Path(scratch) / f"{arm}{rep}")
                results[arm].append(result)
                print(f"rep {rep} {arm}: epoch {result['epoch_s']:.3f} s, test acc {100 * result['test_acc']:.2f}%", flush=True)
    a, b = (statistics.median(r["epoch_s"] for r in results[arm]) for arm in "AB")
    report = {
        "machine": cpu(),
        "command": f"dlrun experiment=seed_mnist trainer.epochs={args.epochs} {' '.join(args.overrides)}".strip(),
        "reps": args.reps,
        "A": {"tree": str(args.a), "epoch_s_median": a, "epoch_s": [r["epoch_s"] for r in results["A"]]},
        "B": {"tree": str(args.b), "epoch_s_median": b, "epoch_s": [r["epoch_s"] for r in results["B"]]},
        "ratio_a_over_b": a / b,
        "same_test_acc": len({r["test_acc"] for r in results["A"] + results["B"]}) == 1,
    }
    print(f"{report['machine']}\n{report['command']}, {args.reps} reps alternating A B")
    print(f"epoch (median): A {a:.3f} s  B {b:.3f} s  A/B {a / b:.3f}; same test accuracy in every run: {report['same_test_acc']}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Start-up: the wall time of a default `dlrun`, from the command to its exit, and where it goes.

    .venv/bin/python benchmarks/bench_startup.py [--src DIR ...] [--reps 5] [--out FILE] [OVERRIDES...]

Each repetition runs `python -m dlrun hydra.run.dir=<a fresh temporary folder>` (the digits, the
MLP, 10 epochs, plots: every default) in a fresh process and times it with time.perf_counter()
around the whole process. With several --src (dlrun source trees' src/ folders, put first on
PYTHONPATH; the default is this checkout's), the arms alternate A B A B within each repetition.
OVERRIDES (e.g. `device.threads=1`, where other work keeps a core busy) go to every run. Each
arm's runs must end with the same test accuracy as each other and as the other arms': the
seeded run computes the same whatever its start-up costs.

One more run per arm under `python -X importtime` gives the import breakdown of the run's own
process: the largest imports of other packages (each with what it imported in turn, so torch
includes numpy), and the import time of dlrun's own modules. The plot helpers (separate
interpreters that import matplotlib and draw the pictures beside the run, started without
`-X importtime`) are not in it. The run's summary.json gives the time from the start of the run
to its test pass (`run_s`: data, optimizer, training with its checkpoints, test pass); the rest
of the wall time is the interpreter, the imports, Hydra's composition (it composes the config
twice, once to learn the mode), waiting for the pictures, and the exit.

The result is printed and written as JSON to benchmarks/results/startup-<host>.json (or --out).
Time it alone: `flock /tmp/dlrun-bench.lock .venv/bin/python benchmarks/bench_startup.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu  # benchmarks/machine.py: this folder is on a script's path

HERE = Path(__file__).resolve().parent
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")  # self us | cumulative us | indented name


def run(src: Path, folder: Path, overrides: list[str], importtime: bool = False) -> dict:
    """One default `dlrun` into `folder`: its wall time, its run's time to the test pass, its test accuracy
    (and its stderr, which holds the import times with `importtime`)."""
    env = dict(os.environ, PYTHONPATH=str(src), NO_COLOR="1")
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "dlrun", f"hydra.run.dir={folder}", *overrides]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder.parent, timeout=600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{src}: dlrun failed ({done.returncode}):\n{done.stderr[-2000:]}")
    summary = json.loads((folder / "summary.json").read_text())
    return {"wall_s": wall, "run_s": summary["timing"]["wall_s"], "test_acc": summary["test"]["acc"], "stderr": done.stderr}


def import_breakdown(stderr: str, top: int = 15) -> dict:
    """From `-X importtime` output: the `top` largest imports of packages other than dlrun, none
    inside another one listed (their cumulative times add up), and dlrun's own modules' time."""
    entries = []  # (name, level, self_s, cumulative_s) in the order Python prints them: children first
    for line in stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match:
            entries.append((match[4], (len(match[3]) - 1) // 2, int(match[1]) / 1e6, int(match[2]) / 1e6))
    parents: list[int | None] = [None] * len(entries)
    open_levels: dict[int, int] = {}  # level -> index of the entry at that level that later ones belong under
    for i in range(len(entries) - 1, -1, -1):  # a parent is printed after its children: walk back
        level = entries[i][1]
        parents[i] = open_levels.get(level - 1)
        open_levels[level] = i
        for deeper in [lv for lv in open_levels if lv > level]:
            del open_levels[deeper]
    ours = ("dlrun", "hydra_plugins")
    chosen: list[int] = []
    for i in sorted(range(len(entries)), key=lambda i: -entries[i][3]):
        if entries[i][0].split(".")[0] in ours:
            continue
        ancestors, j = set(), parents[i]
        while j is not None:
            ancestors.add(j)
            j = parents[j]
        if ancestors & set(chosen) or any(_inside(c, i, parents) for c in chosen):
            continue
        chosen.append(i)
        if len(chosen) == top:
            break
    return {
        "largest": [{"module": entries[i][0], "cumulative_s": round(entries[i][3], 3)} for i in chosen],
        "dlrun_self_s": round(sum(e[2] for e in entries if e[0].split(".")[0] in ours), 3),
        "all_s": round(sum(e[2] for e in entries), 3),
    }


def _inside(i: int, ancestor: int, parents: list[int | None]) -> bool:
    j = parents[i]
    while j is not None:
        if j == ancestor:
            return True
        j = parents[j]
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, action="append", help="a dlrun src/ folder (repeat for A B A B); default: this checkout's")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, help="JSON result (default benchmarks/results/startup-<host>.json)")
    parser.add_argument("overrides", nargs="*", help="dlrun overrides for every run (none: the default run)")
    args = parser.parse_args()
    arms = [src.resolve() for src in args.src or [HERE.parent / "src"]]
    results: dict[int, list[dict]] = {arm: [] for arm in range(len(arms))}
    imports = {}
    with tempfile.TemporaryDirectory() as scratch:
        for rep in range(args.reps):
            for arm, src in enumerate(arms):
                result = run(src, Path(scratch) / f"{arm}-{rep}", args.overrides)
                results[arm].append(result)
                shown = f"{result['wall_s']:.2f} s wall, {result['run_s']:.2f} s to the test pass"
                print(f"rep {rep} {'ABCDEFGH'[arm]} ({src}): {shown}", flush=True)
        for arm, src in enumerate(arms):
            imports[arm] = import_breakdown(run(src, Path(scratch) / f"{arm}-importtime", args.overrides, importtime=True)["stderr"])
    accuracies = {r["test_acc"] for arm in results.values() for r in arm}
    report = {
        "machine": cpu(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "command": " ".join(["python -m dlrun", *args.overrides, "hydra.run.dir=<temporary folder>"]),
        "reps": args.reps,
        "arms": [
            {
                "src": str(src),
                "wall_s_median": statistics.median(r["wall_s"] for r in results[arm]),
                "wall_s": [round(r["wall_s"], 3) for r in results[arm]],
                "run_s_median": statistics.median(r["run_s"] for r in results[arm]),
                "imports": imports[arm],
            }
            for arm, src in enumerate(arms)
        ],
        "same_test_acc": len(accuracies) == 1,
        "test_acc": sorted(accuracies),
    }
    print(f"\n{report['machine']}\n{report['command']}, {args.reps} reps" + (", arms alternating" if len(arms) > 1 else ""))
    for arm in report["arms"]:
        print(f"\n{arm['src']}: median {arm['wall_s_median']:.2f} s wall (runs: {', '.join(f'{t:.2f}' for t in arm['wall_s'])}), "
              f"{arm['run_s_median']:.2f} s of it from the run's start to its test pass")  # fmt: skip
        imports = arm["imports"]
        print(f"  imports (-X importtime, one run): {imports['all_s']:.2f} s in all, dlrun's own modules {imports['dlrun_self_s']:.2f} s")
        for item in imports["largest"]:
            print(f"  {item['cumulative_s']:7.3f} s  {item['module']}")
    print(f"\nsame test accuracy in every run: {report['same_test_acc']} ({', '.join(f'{a:.4f}' for a in report['test_acc'])})")
    out = args.out or HERE / "results" / f"startup-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()

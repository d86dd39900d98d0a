"""The `dlrun` command: subcommands first, everything else is Hydra's.

`dlrun compare ...` is an ordinary argparse CLI, dispatched before Hydra sees argv. Any other
command line is a Hydra app: overrides, -m sweeps, --cfg, --info, shell completion and launcher
plugins all work as Hydra documents them. Nothing heavy is imported here, so `dlrun --help` and
`dlrun --cfg job` stay fast; torch is imported when a run starts.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

# name -> "module:function" taking the remaining argv and returning an exit code
SUBCOMMANDS: dict[str, str] = {"compare": "dlrun.compare:main"}


def task(cfg) -> dict | None:
    """Hydra's task function: one run into the folder Hydra made for it."""
    from hydra.core.hydra_config import HydraConfig

    from dlrun.errors import DlrunError

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        from dlrun.config import validate

        validate(cfg)  # before importing torch: a bad value is reported in a fraction of a second
        from dlrun.run import execute
        from dlrun.train import Diverged

        try:
            return execute(cfg, run_dir, overrides=list(hydra_cfg.overrides.task))
        except Diverged as err:
            print(f"dlrun: diverged: {err}; try a lower optimizer.lr (run folder: {run_dir})", file=sys.stderr)
            sys.exit(1)
    except DlrunError as err:
        print(f"dlrun: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"dlrun: interrupted; the finished epochs are in {run_dir}", file=sys.stderr)
        sys.exit(130)


def run_hydra(argv: list[str]) -> None:
    import hydra

    from dlrun.config import config_dir, register_configs

    register_configs()
    saved = sys.argv
    sys.argv = ["dlrun", *argv]
    try:
        hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")(task)()
    finally:
        sys.argv = saved


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module, function = SUBCOMMANDS[argv[0]].split(":")
        return getattr(importlib.import_module(module), function)(argv[1:])
    run_hydra(argv)
    return 0

"""`dlrun eval RUN`: score a finished run's checkpoint on a split again, into RUN/eval/<time>/.

The run's own config says how to load its data and build its model; only the dataset may be
changed on the command line (`dataset=fashion_mnist`, `dataset.root=DIR`), to score the same
weights on other data of the same shape. The split is evaluated with the run's own settings
(trainer.eval_batch_size, limit_eval_batches, precision, loss, device threads), so the test split
with best.pt gives the test metrics in summary.json exactly. The only thing written is a new folder
RUN/eval/<time>/: metrics.json, predictions.csv and confusion_matrix.png. torch is imported only
once the command runs, never for --help.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  dlrun eval outputs/2026-11-26/14-03-11                       best.pt on the run's test split
  dlrun eval outputs/2026-11-26/14-03-11 --checkpoint last --split val
  dlrun eval outputs/2026-11-26/14-03-11 dataset=fashion_mnist dataset.root=DIR   other data of the same shape
  dlrun eval RUN dataset=blobs --config-dir my_project/conf    a dataset config of your own

It prints accuracy, loss and the confusion matrix, and writes RUN/eval/<time>/ (metrics.json,
predictions.csv, confusion_matrix.png); no file of the run itself changes.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dlrun eval",
        description="Evaluate a finished run's checkpoint on a split of its data (or of other data of the same shape).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="the run folder, e.g. outputs/2026-11-26/14-03-11")
    p.add_argument("overrides", nargs="*", metavar="dataset[.KEY]=VALUE", help="use other data: dataset=NAME, dataset.KEY=VALUE")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="best.pt (default: the tested weights) or last.pt")
    p.add_argument("--split", choices=("test", "val", "train"), default="test", help="the split to evaluate (default: test)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="where to evaluate (default: the run's device.name)")
    p.add_argument("--config-dir", action="append", default=[], metavar="DIR", help="a config dir of your own, for dataset=NAME")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_intermixed_args(argv)
    from dlrun.errors import DlrunError

    try:
        evaluate_run(args)
    except DlrunError as err:
        print(f"dlrun: error: {err}", file=sys.stderr)
        return 2
    return 0


def dataset_node(saved: dict[str, Any], overrides: list[str], config_dirs: list[str]) -> dict[str, Any]:
    """The run's dataset node, or the one `dataset=NAME` composes, with `dataset.KEY=VALUE` applied."""
    from omegaconf import OmegaConf

    from dlrun.errors import ConfigError

    keys = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+")
        if "=" not in override or not (key == "dataset" or key.startswith("dataset.")):
            raise ConfigError(f"{override}: eval takes dataset overrides only (dataset=NAME, dataset.KEY=VALUE); the model is the run's")
        keys.append(key)
    if "dataset" in keys:
        return compose_dataset(overrides, config_dirs)
    node = dict(saved)
    for override, key in zip(overrides, keys, strict=True):
        leaf = key.removeprefix("dataset.")
        if leaf not in node and not override.startswith("+"):
            raise ConfigError(f"{key} is not a key of the run's dataset ({node.get('name')}); its keys are: {', '.join(sorted(node))}")
        node[leaf] = OmegaConf.to_container(OmegaConf.from_dotlist([f"value={override.split('=', 1)[1]}"]))["value"]
    return node


def compose_dataset(overrides: list[str], config_dirs: list[str]) -> dict[str, Any]:
    """dataset=NAME (and its keys) composed by Hydra from dlrun's config tree and the user's own dirs."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from dlrun.cli import error_message
    from dlrun.config import config_dir, register_configs
    from dlrun.errors import ConfigError

    register_configs()
    search = [f"hydra.searchpath=[{','.join('file://' + str(Path(d).expanduser().resolve()) for d in config_dirs)}]"] if config_dirs else []
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose("config", overrides=[*overrides, *search])
    except Exception as err:  # noqa: BLE001  Hydra's composition errors, said as a run would say them
        raise ConfigError(error_message(err).removeprefix("dlrun: error: ").splitlines()[0]) from err
    finally:
        GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg.dataset, resolve=True)


def evaluate_run(args: argparse.Namespace) -> Path:
    """Evaluate, print the panel, write RUN/eval/<time>/; return that folder."""
    from omegaconf import OmegaConf

    from dlrun.checks import validate
    from dlrun.config import unique_dir
    from dlrun.errors import DataError, DlrunError
    from dlrun.training.data import load_dataset
    from dlrun.training.device import describe, flush_denormals_everywhere, resolve_device, set_threads
    from dlrun.training.eval_report import print_panel, write_eval_folder
    from dlrun.training.finished_run import load_model, open_run
    from dlrun.training.recipe import confusion_matrix, now
    from dlrun.training.settings import dataset_kwargs
    from dlrun.training.steps import StepSettings, evaluate, make_loss

    run = open_run(args.run)
    cfg = run.cfg.copy()
    cfg.dataset = dataset_node(OmegaConf.to_container(run.cfg.dataset), args.overrides, args.config_dir)
    validate(cfg)
    transform = run.transform or {}
    normalization = (transform["mean"], transform["std"]) if transform.get("mean") is not None else None
    flush_denormals_everywhere()
    threads_before = set_threads(cfg.device.threads)
    try:
        device = resolve_device(args.device or cfg.device.name)
        data = load_dataset(cfg.dataset.name, device=device, normalization=normalization, **dataset_kwargs(cfg))
        if tuple(data.input_shape) != run.input_shape or data.num_classes != len(run.class_names):
            shape = lambda s, n: f"{' x '.join(map(str, s))} images in {n} classes"  # noqa: E731
            raise DataError(f"dataset={cfg.dataset.name} holds {shape(data.input_shape, data.num_classes)}; "
                            f"the run's model takes {shape(run.input_shape, len(run.class_names))}")  # fmt: skip
        split = {"test": data.test, "val": data.val, "train": data.train}[args.split]
        if split is None:
            raise DlrunError(f"the data has no validation split (dataset.val_fraction={cfg.dataset.get('val_fraction')}); use --split test")
        model, epoch = load_model(run, args.checkpoint, device)
        trainer = cfg.trainer
        batch = min(trainer.eval_batch_size, max(len(data.test), len(data.val) if data.val else 0))  # as the run's own test pass
        settings = StepSettings(batch, make_loss(trainer.loss, data.num_classes), 0.0, trainer.limit_eval_batches, False, trainer.precision)
        result = evaluate(model, split, settings, keep_predictions=True)
        where = describe(device)
    finally:
        set_threads(threads_before)
    matrix = confusion_matrix(result["targets"], result["predictions"], data.num_classes)
    record = {"run": str(run.folder), "checkpoint": f"{args.checkpoint}.pt", "epoch": epoch, "split": args.split,
              "dataset": OmegaConf.to_container(cfg.dataset), "overrides": list(args.overrides), "loss": result["loss"],
              "acc": result["acc"], "examples": result["examples"], "classes": data.classes, "confusion_matrix": matrix,
              "device": where, "evaluated_at": now()}  # fmt: skip
    try:
        out = Path(unique_dir(str(run.folder / "eval" / now_stamp())))
    except OSError as err:
        print_panel(run, record, None, data.notes)
        raise DlrunError(f"cannot write {run.folder / 'eval'} ({err.strerror or err}); the results above are not saved") from err
    write_eval_folder(out, record, result, data.classes, run.summary.get("experiment", ""))
    print_panel(run, record, out, data.notes)
    return out


def now_stamp() -> str:
    from datetime import datetime

    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S")

"""Your own model and data, without editing dlrun; and `dlrun eval` / `dlrun predict` on a finished run."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dlrun.cli import main
from tests.helpers import QUICK, make_image_folder, read_summary, subprocess_env

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_model"
IMAGES = ("dataset=image_folder", "dataset.image_size=12", "dataset.channels=1", "model=cnn", "model.channels=[8]")


def hashes(folder: Path) -> dict[str, str]:
    """Every file of a run folder but what eval adds, by content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "eval" not in p.relative_to(folder).parts}  # fmt: skip


def refused(run_dlrun, capsys, *overrides: str) -> str:
    """The one line a run refused before training prints (exit code 2, no folder left)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_dlrun(*QUICK, *overrides)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("dlrun: error: ") and "\n" not in err, err
    return err.removeprefix("dlrun: error: ")


# ---------------------------------------------------------------------------------------------
# Own models.


def test_the_example_project_trains_through_its_config_dir_and_predicts_its_samples(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(EXAMPLE)  # as its README says: run dlrun from the project's folder
    run = tmp_path / "run"
    small = ("dataset.n=90", "model.width=4", "model.blocks=1")
    assert main(["--config-dir", "conf", "model=tiny_resnet", "dataset=shapes", *small, *QUICK, f"hydra.run.dir={run}"]) == 0
    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["experiment"].startswith("TinyResNet + adam")
    assert summary["config"]["model"] == {"_target_": "my_project.nets.TinyResNet", "width": 4, "blocks": 1}
    assert summary["data"]["class_names"] == ["circle", "square", "cross"] and summary["data"]["input_shape"] == [1, 16, 16]
    capsys.readouterr()
    assert main(["predict", str(run), "samples", "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [Path(r["file"]).name for r in rows] == sorted(p.name for p in (EXAMPLE / "samples").glob("*.png"))
    assert {r["class"] for r in rows} <= {"circle", "square", "cross"}


def test_model_custom_from_the_command_line_trains_resumes_and_records_its_target(run_dlrun, interrupt_at_epoch, tmp_path):
    own = ("model=custom", "model._target_=tests.own_models.Small", "+model.width=8", "regularization=dropout")
    interrupt_at_epoch(2)
    with pytest.raises(SystemExit):
        run_dlrun(*own, *QUICK, run_dir=tmp_path / "run")
    interrupt_at_epoch(None)
    run = run_dlrun(f"resume={tmp_path / 'run'}", run_dir=tmp_path / "run")
    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["resumed_from_epoch"] == 1
    assert summary["config"]["model"] == {"name": "custom", "_target_": "tests.own_models.Small", "width": 8}
    assert summary["params"] == 64 * 8 + 8 + 8 * 10 + 10
    from dlrun.analysis.runfolder import load_run

    assert load_run(run).config["model.width"] == 8  # compare sees the user's keys as config keys


def test_a_factory_without_input_shape_gets_only_what_it_names(run_dlrun):
    run = run_dlrun("model=custom", "model._target_=tests.own_models.small_factory", *QUICK)
    assert read_summary(run)["params"] == 64 * 8 + 8 + 8 * 10 + 10  # the lazy layer found its 64 inputs before training


def test_an_own_models_title_is_its_class_name_whatever_its_keys(compose_cfg):
    from omegaconf import open_dict

    from dlrun.training.settings import describe_experiment

    cfg = compose_cfg("model=custom", "model._target_=my_project.nets.TinyResNet", "+model.variant=wide")
    with open_dict(cfg.model):
        del cfg.model["name"]  # as in a model file of the user's own config dir
    assert describe_experiment(cfg) == "TinyResNet + adam (lr 0.001) on digits"


@pytest.mark.parametrize(
    ("target", "extra", "expected"),
    [
        ("no_such_package.nets.Net", (), "model._target_=no_such_package.nets.Net: there is no module no_such_package (not installed"),
        ("tests.own_models.Smal", (), "tests.own_models has no Smal; did you mean tests.own_models.Small?"),
        ("tests.own_models.NotAModule", (), "tests.own_models.NotAModule is a class but not a torch.nn.Module"),
        ("tests.own_models.blobs", (), "tests.own_models.blobs returned a dict, not a torch.nn.Module"),
        ("tests.own_models.Small", ("+model.depth=3",), "tests.own_models.Small takes no depth (model.depth); its parameters are: "),
        ("tests.own_models.WrongOutput", (), "forward returned (2, 11) for a batch of shape (2, 1, 8, 8); dlrun needs float logits"),
        ("tests.own_models.BrokenForward", (), "BrokenForward: forward failed on a batch of shape (2, 1, 8, 8): RuntimeError: "),
        ("tests.own_models.small_factory", ("regularization=batchnorm",), "regularization.batchnorm=true would do nothing: "),
        ("tests.own_models.Small", ("+model.num_classes=3",), "model.num_classes is dlrun's to pass"),
    ],
)
def test_a_bad_model_target_is_one_line_before_training(run_dlrun, capsys, tmp_path, target, extra, expected):
    message = refused(run_dlrun, capsys, "model=custom", f"model._target_={target}", *extra)
    assert expected in message and (target in message or "model." in message)
    assert not (tmp_path / "run0").exists()  # refused before the first step: no folder left


def test_model_custom_without_a_target_and_a_key_without_plus_say_what_to_type(run_dlrun, capsys):
    assert "model._target_ has no value; this choice needs one, e.g. model._target_=" in refused(run_dlrun, capsys, "model=custom")
    with pytest.raises(SystemExit):
        run_dlrun("model=custom", "model._target_=tests.own_models.Small", "model.width=8")
    assert "+model.width=8" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Own data.


def test_an_image_folder_trains_skips_the_corrupt_file_and_the_second_load_decodes_nothing(run_dlrun, tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "images")
    run = run_dlrun(*IMAGES, f"dataset.root={root}", *QUICK)
    log = (run / "dlrun.log").read_text()
    assert "decoded 37 images" in log and "skipped 1 corrupt image of 37" in log and "dark/broken.png" in log
    data = read_summary(run)["data"]
    assert data["class_names"] == ["dark", "grey", "light"] and data["train"] + data["val"] + data["test"] == 36
    assert data["transform"] == {"size": [12, 12], "channels": 1, "resize": "bilinear", "dtype": "uint8", "divide": 255.0,
                                 "mean": None, "std": None}  # fmt: skip
    from dlrun.training import images
    from dlrun.training.data import load_dataset

    monkeypatch.setattr(images, "decode", lambda *a, **k: pytest.fail("decoded again"))
    settings = {"root": root, "device": torch.device("cpu"), "image_size": 12, "channels": 1, "test_fraction": 0.2}
    again = load_dataset("image_folder", **settings)
    assert len(again.train) + len(again.val) == data["train"] + data["val"] and [n[:17] for n in again.notes] == ["skipped 1 corrupt"]
    (root / "grey" / "00.png").touch()  # a changed file: decoded again
    monkeypatch.undo()
    assert any(n.startswith("decoded 37 images") for n in load_dataset("image_folder", **settings).notes)


def test_an_image_folder_with_train_and_test_folders_and_the_refusals(tmp_path, capsys, run_dlrun):
    from dlrun.training.data import load_dataset

    make_image_folder(tmp_path / "split" / "train", per_class=6, corrupt=False)
    make_image_folder(tmp_path / "split" / "test", per_class=2, corrupt=False)
    data = load_dataset("image_folder", root=tmp_path / "split", device=torch.device("cpu"), image_size=8, channels=3, val_fraction=0)
    assert (len(data.train), len(data.test), data.input_shape, data.classes) == (18, 6, (3, 8, 8), ["dark", "grey", "light"])
    root = make_image_folder(tmp_path / "images")
    message = refused(run_dlrun, capsys, *IMAGES, f"dataset.root={root}", "dataset.corrupt=refuse")
    assert message.startswith(f"{root / 'dark' / 'broken.png'} is not a readable image") and "dataset.corrupt=skip" in message
    message = refused(run_dlrun, capsys, *IMAGES, f"dataset.root={root}", "dataset.max_memory_gb=1e-6")
    assert "needs 21.3 kB in memory (37 examples of 1 x 12 x 12 as float32), more than dataset.max_memory_gb=1e-06" in message


def test_tensors_from_an_npz_file_and_a_data_function_returning_datasets(run_dlrun, tmp_path):
    g = np.random.default_rng(0)
    y = g.integers(0, 3, 60)
    np.savez(tmp_path / "features.npz", x=(y[:, None, None] * 100 + g.integers(0, 40, (60, 12, 12))).astype(np.uint8), y=y,
             classes=np.array(["a", "b", "c"]))  # fmt: skip
    data = read_summary(run_dlrun("dataset=tensors", f"dataset.path={tmp_path / 'features.npz'}", *QUICK))["data"]
    assert data["input_shape"] == [1, 12, 12] and data["class_names"] == ["a", "b", "c"] and data["test"] == 12
    run = run_dlrun("dataset=custom", "dataset._target_=tests.own_models.blob_datasets", *QUICK)
    data = read_summary(run)["data"]
    assert (data["train"], data["val"], data["test"], data["input_shape"], data["class_names"]) == (81, 9, 30, [1, 8, 8], ["0", "1", "2"])


# ---------------------------------------------------------------------------------------------
# dlrun eval and dlrun predict.


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A finished run on a generated image folder, shared by the eval and predict tests (which must not change it)."""
    base = tmp_path_factory.mktemp("image_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DLRUN_CACHE", str(base / "cache"))
        root = make_image_folder(base / "images")
        assert main([*IMAGES, f"dataset.root={root}", *QUICK, f"hydra.run.dir={base / 'run'}"]) == 0
    return base / "run"


def test_eval_reproduces_the_test_metrics_and_changes_no_file_of_the_run(image_run, capsys):
    before = hashes(image_run)
    assert main(["eval", str(image_run)]) == 0
    out = capsys.readouterr().out
    evaluated = sorted((image_run / "eval").iterdir())[-1]
    metrics = json.loads((evaluated / "metrics.json").read_text())
    test = read_summary(image_run)["test"]
    assert (metrics["acc"], metrics["loss"], metrics["examples"]) == (test["acc"], test["loss"], test["examples"])
    assert metrics["checkpoint"] == "best.pt" and sum(map(sum, metrics["confusion_matrix"])) == test["examples"]
    assert (evaluated / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG" and "at training" in out and "confusion matrix" in out
    assert main(["eval", str(image_run), "--checkpoint", "last", "--split", "val"]) == 0
    assert hashes(image_run) == before


def test_predict_on_pngs_of_the_test_images_gives_the_runs_own_predictions(image_run, tmp_path, capsys):
    from PIL import Image

    from dlrun.training.data import load_dataset

    before = hashes(image_run)
    assert main(["eval", str(image_run)]) == 0
    evaluated = sorted((image_run / "eval").iterdir())[-1]
    with open(evaluated / "predictions.csv", newline="") as f:
        expected = [row["predicted"] for row in csv.DictReader(f)]
    cfg = read_summary(image_run)["config"]["dataset"]
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    data = load_dataset("image_folder", device=torch.device("cpu"), **kwargs)  # the run's test split, as the run loaded it
    files = []
    for i, image in enumerate(data.test.x):
        files.append(tmp_path / f"{i:03d}.png")
        Image.fromarray((image[0] * 255).round().to(torch.uint8).numpy(), mode="L").save(files[-1])
    Image.fromarray(np.full((40, 30, 3), 200, dtype=np.uint8)).save(tmp_path / "big colour.jpg")  # any size, colour: converted
    capsys.readouterr()
    assert main(["predict", str(image_run), *map(str, files), str(tmp_path / "big colour.jpg"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["class"] for row in rows[:-1]] == expected
    assert len(rows[0]["top"]) == 3 and rows[0]["top"][0]["probability"] == rows[0]["probability"]
    assert hashes(image_run) == before


def test_eval_refuses_a_missing_truncated_or_foreign_checkpoint(image_run, tmp_path, capsys, run_dlrun):
    import shutil

    def refusal(folder: Path, *args: str) -> str:
        capsys.readouterr()
        assert main(["eval", str(folder), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("dlrun: error: ") and "\n" not in err
        return err

    copy = tmp_path / "copy"
    shutil.copytree(image_run, copy, ignore=shutil.ignore_patterns("eval"))
    (copy / "checkpoints" / "best.pt").unlink()
    assert "best.pt is missing" in refusal(copy)
    (copy / "checkpoints" / "last.pt").write_bytes((image_run / "checkpoints" / "last.pt").read_bytes()[:500])
    assert "last.pt is truncated or corrupt" in refusal(copy, "--checkpoint", "last")
    other = run_dlrun(*IMAGES, f"dataset.root={image_run.parent / 'images'}", "model.channels=[4]", *QUICK)
    shutil.copy(other / "checkpoints" / "best.pt", copy / "checkpoints" / "best.pt")
    assert "best.pt is from another model" in refusal(copy)
    assert "eval takes dataset overrides only" in refusal(image_run, "model=mlp")
    assert "no such run folder" in refusal(tmp_path / "nothing")


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_eval_and_predict_have_their_own_help_and_do_not_import_torch_for_it(command):
    code = "\n".join(["import sys", "from dlrun.cli import main", f"try: main([{command!r}, '--help'])", "except SystemExit: pass",
                      "print('torch' in sys.modules)"])  # fmt: skip
    env = subprocess_env() | {"PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.strip().endswith("False") and f"usage: dlrun {command} " in done.stdout


def test_dlrun_help_lists_eval_predict_and_the_own_options(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for text in ("dlrun eval RUN", "dlrun predict RUN FILE", "model=custom", "image_folder", "tensors"):
        assert text in out, text

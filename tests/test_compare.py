"""`dlrun compare` on synthetic run folders: columns, sort, filter, group-by, formats, plot, statuses."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dlrun import cli
from dlrun.analysis import compare
from dlrun.analysis.curves import label
from dlrun.analysis.query import differing_keys, group_runs, sort_items
from dlrun.analysis.runfolder import find_runs, load_run, shown
from tests.runfolders import SGD, make_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_compare(capsys, *argv) -> tuple[int, str, str]:
    code = compare.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def csv_rows(capsys, *argv) -> list[dict[str, str]]:
    code, out, err = run_compare(capsys, *argv, "--format", "csv")
    assert code == 0, err
    return list(csv.DictReader(io.StringIO(out)))


@pytest.fixture
def lr_sweep(tmp_path) -> Path:
    """Six runs: optimizer.lr in {0.01, 0.001} x seed in {0, 1, 2}, val/acc chosen per run."""
    sweep = tmp_path / "multirun" / "2026-11-26" / "14-00-00"
    accs = {(0.01, 0): 0.90, (0.01, 1): 0.92, (0.01, 2): 0.97, (0.001, 0): 0.80, (0.001, 1): 0.84, (0.001, 2): 0.82}
    for job, ((lr, seed), acc) in enumerate(accs.items()):
        make_run(
            sweep / str(job),
            set={"optimizer.lr": lr, "seed": seed},
            val_acc=[acc - 0.1, acc],
            test_acc=acc - 0.01,
            test_loss=1 - acc,
            wall_s=10.0 + job,
        )
    return sweep


# ---------------------------------------------------------------------------------------------
# Columns.


def test_only_differing_config_keys_become_columns(lr_sweep, capsys):
    rows = csv_rows(capsys, lr_sweep)
    assert list(rows[0])[:3] == ["run", "seed", "optimizer.lr"]  # config order; dataset, model, ... are the same
    assert not any(k.startswith(("model.", "dataset.", "trainer.")) for k in rows[0])
    assert differing_keys(find_runs([lr_sweep])) == ["seed", "optimizer.lr"]


def test_keys_that_only_come_with_a_group_choice_are_left_out(tmp_path):
    make_run(tmp_path / "a", set={"optimizer": SGD})
    make_run(tmp_path / "b")  # adam: lr 0.001, beta1, beta2
    make_run(tmp_path / "c", set={"optimizer.lr": 0.01, "model.hidden_sizes": [64]})
    keys = differing_keys(find_runs([tmp_path]))
    assert keys == ["model.hidden_sizes", "optimizer.name", "optimizer.lr"]  # not beta1/beta2: 'optimizer' says it


def test_table_shows_the_runs_values_and_statuses(lr_sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run_compare(capsys, lr_sweep)
    assert code == 0
    header = next(line for line in out.splitlines() if line.startswith("run"))
    assert header.split()[:3] == ["run", "seed", "optimizer.lr"] and "best val/acc" in header and "test/loss" in header
    first = next(line for line in out.splitlines() if line.startswith("2 "))
    assert first.split()[:5] == ["2", "2", "0.01", "completed", "2/3"] and "97.00%" in first and "96.00%" in first


def test_narrow_terminal_keeps_numbers_whole(lr_sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "64")
    code, out, _ = run_compare(capsys, lr_sweep)
    rows = [line.split() for line in out.splitlines() if "completed" in line]
    assert code == 0 and rows[0][:5] == ["2", "2", "0.01", "completed", "2/3"] and rows[0][5:] == ["97.00%", "96.00%"]
    assert "time, test/loss left out to fit 64 columns" in " ".join(out.split())


# ---------------------------------------------------------------------------------------------
# Sort, filter, group.


def test_default_sort_is_best_val_acc_first(lr_sweep, capsys):
    assert [r["val/acc"] for r in csv_rows(capsys, lr_sweep)] == ["0.97", "0.92", "0.9", "0.84", "0.82", "0.8"]


@pytest.mark.parametrize(
    ("key", "extra", "expected_runs"),
    [
        ("test/loss", [], ["2", "1", "0", "4", "5", "3"]),  # losses ascend
        ("time", [], ["0", "1", "2", "3", "4", "5"]),  # alias of time_s; ascends
        ("optimizer.lr", [], ["3", "4", "5", "0", "1", "2"]),  # config values ascend, ties by run id
        ("val/acc", ["--reverse"], ["3", "5", "4", "0", "1", "2"]),
    ],
)
def test_sort(lr_sweep, capsys, key, extra, expected_runs):
    assert [r["run"] for r in csv_rows(capsys, lr_sweep, "--sort", key, *extra)] == expected_runs


def test_runs_without_the_sort_value_go_last(tmp_path, capsys):
    make_run(tmp_path / "a", status="running", val_acc=[0.99])  # no test metrics yet
    make_run(tmp_path / "b", test_acc=0.5)
    make_run(tmp_path / "c", test_acc=0.7)
    assert [r["run"] for r in csv_rows(capsys, tmp_path, "--sort", "test/acc")] == ["c", "b", "a"]
    assert [r["run"] for r in csv_rows(capsys, tmp_path, "--sort", "test/acc", "--reverse")] == ["b", "c", "a"]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (["optimizer.lr=0.01"], {"0", "1", "2"}),
        (["optimizer.lr=1e-2"], {"0", "1", "2"}),  # numbers compare as numbers
        (["optimizer.lr=0.01", "seed=1"], {"1"}),  # repeated filters all apply
        (["seed=0,2"], {"0", "2", "3", "5"}),
        (["seed!=0"], {"1", "2", "4", "5"}),
        (["val/acc>=0.9"], {"0", "1", "2"}),
        (["optimizer=adam"], {"0", "1", "2", "3", "4", "5"}),  # a group name means its .name
        (["model.hidden_sizes=[128, 256]"], {"0", "1", "2", "3", "4", "5"}),
        (["status=completed"], {"0", "1", "2", "3", "4", "5"}),
    ],
)
def test_filter(lr_sweep, capsys, condition, expected):
    args = [a for c in condition for a in ("--filter", c)]
    assert {r["run"] for r in csv_rows(capsys, lr_sweep, *args)} == expected


def test_filter_on_an_unknown_key_names_close_ones(lr_sweep, capsys):
    code, _, err = run_compare(capsys, lr_sweep, "--filter", "optimizer.lrr=0.1")
    [line] = err.strip().splitlines()
    assert code == 2 and line.startswith("dlrun compare: error: unknown key 'optimizer.lrr'; did you mean optimizer.lr,")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sort", "accuracy"], "unknown key 'accuracy'; did you mean val/acc, test/acc, train/acc?"),
        (["--sort", "test_accuracy"], "unknown key 'test_accuracy'; did you mean test/acc?"),
        (["--sort", "loss"], "unknown key 'loss'; did you mean val/loss, test/loss, train/loss, gen/loss, disc/loss?"),
        (["--filter", "dropuot=0.1"], "unknown key 'dropuot'; did you mean regularization.dropout?"),
        (["--group-by", "name"], "ambiguous key 'name'; did you mean dataset.name, device.name, model.name, optimizer.name?"),
    ],
)
def test_an_unknown_key_names_the_keys_meant(lr_sweep, capsys, argv, message):
    code, _, err = run_compare(capsys, lr_sweep, *argv)
    assert code == 2 and err.strip().splitlines() == [f"dlrun compare: error: {message}"]


def test_the_last_part_of_a_config_key_stands_for_it(lr_sweep, capsys):
    assert {r["run"] for r in csv_rows(capsys, lr_sweep, "--filter", "lr=0.01")} == {"0", "1", "2"}
    assert [r["run"] for r in csv_rows(capsys, lr_sweep, "--sort", "lr")] == ["3", "4", "5", "0", "1", "2"]
    assert [r["optimizer.lr"] for r in csv_rows(capsys, lr_sweep, "--group-by", "seed,beta1")] == ["0.01", "0.001"]


def test_group_by_seed_gives_mean_and_sample_std(lr_sweep, capsys):
    rows = csv_rows(capsys, lr_sweep, "--group-by", "seed")
    assert [r["optimizer.lr"] for r in rows] == ["0.01", "0.001"] and "seed" not in rows[0]
    for row, accs in zip(rows, ([0.90, 0.92, 0.97], [0.80, 0.84, 0.82]), strict=True):
        assert row["n"] == "3" and row["val/acc_n"] == "3"
        assert math.isclose(float(row["val/acc_mean"]), statistics.mean(accs))
        assert math.isclose(float(row["val/acc_std"]), statistics.stdev(accs))
        assert math.isclose(float(row["test/acc_mean"]), statistics.mean(accs) - 0.01)
        assert row["runs"].split() == [str(i) for i in range(3)] or row["runs"].split() == [str(i) for i in range(3, 6)]


def test_group_by_in_the_table_and_json(lr_sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "150")
    code, out, _ = run_compare(capsys, lr_sweep, "--group-by", "seed")
    assert code == 0 and "mean ± std over seed" in out
    first = next(line for line in out.splitlines() if line.startswith("0.01"))
    accs = [0.90, 0.92, 0.97]
    assert f"{100 * statistics.mean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}%" in first
    code, out, _ = run_compare(capsys, lr_sweep, "--group-by", "seed,optimizer.lr", "--format", "json")
    [group] = json.loads(out)
    assert group["n"] == 6 and math.isclose(group["val/acc"]["mean"], statistics.mean([0.9, 0.92, 0.97, 0.8, 0.84, 0.82]))


def test_group_by_a_group_name_folds_its_keys(tmp_path):
    make_run(tmp_path / "a", set={"optimizer": SGD})
    make_run(tmp_path / "b")
    make_run(tmp_path / "c", set={"optimizer": SGD, "regularization.dropout": 0.2})
    runs = find_runs([tmp_path])
    groups, kept = group_runs(runs, differing_keys(runs), ["optimizer.name"])
    assert kept == ["regularization.dropout"]
    assert sorted(len(g.runs) for g in groups) == [1, 2]


def test_group_by_a_group_name_keeps_a_key_that_varies_within_one_choice_apart(tmp_path, capsys, monkeypatch):
    """-m optimizer=sgd,adam optimizer.lr=0.01,0.1: folding over optimizer leaves a row per lr;
    four Adam runs that differ only in lr are never one row."""
    monkeypatch.setenv("COLUMNS", "150")
    for job, (optimizer, lr) in enumerate([("sgd", 0.01), ("sgd", 0.1), ("adam", 0.01), ("adam", 0.1)]):
        make_run(tmp_path / "both" / str(job), set={"optimizer": SGD if optimizer == "sgd" else {"name": "adam"}, "optimizer.lr": lr})
    rows = csv_rows(capsys, tmp_path / "both", "--group-by", "optimizer")
    assert [(r["optimizer.lr"], r["n"]) for r in rows] == [("0.01", "2"), ("0.1", "2")]
    assert [(r["optimizer.name"], r["n"]) for r in csv_rows(capsys, tmp_path / "both", "--group-by", "lr")] == [("sgd", "2"), ("adam", "2")]
    code, out, _ = run_compare(capsys, tmp_path / "both", "--group-by", "optimizer")
    assert code == 0 and out.startswith("4 runs in") and out.splitlines()[0].endswith(", mean ± std over optimizer")

    for job, lr in enumerate([0.001, 0.003, 0.01, 0.03]):
        make_run(tmp_path / "adam" / str(job), set={"optimizer.lr": lr})
    assert [(r["optimizer.lr"], r["n"]) for r in csv_rows(capsys, tmp_path / "adam", "--group-by", "optimizer")] == [
        ("0.001", "1"), ("0.003", "1"), ("0.01", "1"), ("0.03", "1")
    ]  # fmt: skip
    code, out, _ = run_compare(capsys, tmp_path / "adam", "--group-by", "optimizer")
    assert code == 0 and out.splitlines()[0].endswith(", nothing folded: optimizer is the same in every run")


def test_the_title_names_the_keys_that_came_with_a_folded_choice(tmp_path, capsys):
    make_run(tmp_path / "a", set={"optimizer": SGD, "seed": 1})  # lr 0.1
    make_run(tmp_path / "b")  # adam, lr 0.001
    code, out, _ = run_compare(capsys, tmp_path, "--group-by", "optimizer,seed", "--format", "md")
    assert code == 0 and out.splitlines()[0] == f"**2 runs in {tmp_path}, mean ± std over seed, optimizer, optimizer.lr**"


def test_a_single_run_in_a_group_has_no_std(tmp_path):
    make_run(tmp_path / "a", val_acc=[0.6])
    [group] = sort_items(group_runs(find_runs([tmp_path]), [], ["seed"])[0], "val/acc")
    assert group.get("val/acc").mean == 0.6 and group.get("val/acc").std is None


# ---------------------------------------------------------------------------------------------
# Formats, parsed back.


def test_csv_values_are_the_summary_values(lr_sweep, capsys):
    for row in csv_rows(capsys, lr_sweep):
        summary = json.loads((Path(row["path"]) / "summary.json").read_text())
        assert float(row["val/acc"]) == summary["best"]["val/acc"]
        assert float(row["test/acc"]) == summary["test"]["acc"] and float(row["test/loss"]) == summary["test"]["loss"]
        assert float(row["time_s"]) == summary["timing"]["wall_s"]
        assert int(row["epochs_done"]) == summary["epochs_completed"] and int(row["epochs"]) == summary["epochs"]
        assert float(row["optimizer.lr"]) == summary["config"]["optimizer"]["lr"] and row["status"] == "completed"


def test_json_rows(lr_sweep, capsys):
    code, out, _ = run_compare(capsys, lr_sweep, "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 6
    assert rows[0]["run"] == "2" and rows[0]["val/acc"] == 0.97 and rows[0]["optimizer.lr"] == 0.01 and rows[0]["seed"] == 2
    assert rows[0]["test/acc"] == pytest.approx(0.96) and rows[0]["error"] is None


def test_markdown_table(lr_sweep, capsys):
    code, out, _ = run_compare(capsys, lr_sweep, "--format", "md")
    lines = [line for line in out.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert code == 0 and cells[0][:3] == ["run", "seed", "optimizer.lr"] and set(cells[1][0]) <= set("-:")
    assert len(cells) == 2 + 6 and all(len(row) == len(cells[0]) for row in cells)
    assert cells[2][:3] == ["2", "2", "0.01"] and "97.00%" in cells[2]


def test_plot_writes_a_png(lr_sweep, capsys, tmp_path):
    target = tmp_path / "plots" / "curves.png"
    code, _, err = run_compare(capsys, lr_sweep, "--plot", target, "--metric", "val/loss")
    assert code == 0 and target.read_bytes()[:8] == PNG_MAGIC and "for 6 of 6 runs" in err
    code, _, _ = run_compare(capsys, lr_sweep, "--plot", tmp_path / "grouped.png", "--group-by", "seed")
    assert code == 0 and (tmp_path / "grouped.png").read_bytes()[:8] == PNG_MAGIC


# ---------------------------------------------------------------------------------------------
# Statuses, odd folders, errors.


def test_every_status_with_the_epochs_it_finished(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "150")
    make_run(tmp_path / "done", epochs=5, val_acc=[0.1, 0.2, 0.3, 0.4, 0.5])
    make_run(tmp_path / "going", status="running", epochs=5, val_acc=[0.3, 0.6])
    make_run(tmp_path / "broke", status="failed", epochs=5, val_acc=[0.2])
    make_run(tmp_path / "nan", status="diverged", epochs=5, val_acc=[0.1, 0.15, 0.05])
    make_run(tmp_path / "stopped", status="interrupted", epochs=5, val_acc=[])
    rows = {r["run"]: r for r in csv_rows(capsys, tmp_path)}
    assert {k: (r["status"], r["epochs_done"]) for k, r in rows.items()} == {
        "done": ("completed", "5"),
        "going": ("running", "2"),
        "broke": ("failed", "1"),
        "nan": ("diverged", "3"),
        "stopped": ("interrupted", "0"),
    }
    assert float(rows["going"]["val/acc"]) == 0.6 and rows["going"]["best_epoch"] == "2.0"  # from metrics.csv
    assert rows["nan"]["val/acc"] == "0.15" and rows["broke"]["error"] == "RuntimeError: stopped (failed)"
    code, out, _ = run_compare(capsys, tmp_path)
    lines = {}
    for line in out.splitlines():
        lines.setdefault(line.split()[0] if line.split() else "", line)
    assert "running" in lines["going"] and "2/5" in lines["going"] and "60.00%" in lines["going"]
    assert "interrupted" in lines["stopped"] and "0/5" in lines["stopped"]
    assert "broke failed: RuntimeError: stopped (failed)" in out


def test_folders_without_runs_are_skipped_with_a_note(lr_sweep, tmp_path, capsys):
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.txt").write_text("no runs here")
    code, out, err = run_compare(capsys, lr_sweep, empty)
    assert code == 0 and err.strip() == f"skipped: {empty} holds no dlrun run" and "optimizer.lr" in out
    code, _, err = run_compare(capsys, empty)
    assert code == 1 and "no runs found" in err


def test_hidden_folders_and_run_subfolders_are_not_searched(tmp_path):
    make_run(tmp_path / "run")
    make_run(tmp_path / "run" / "plots" / "nested")  # inside a run folder: never a run of its own
    make_run(tmp_path / ".venv" / "x")
    assert [r.id for r in find_runs([tmp_path])] == ["run"]


def test_a_missing_path_is_a_one_line_error(tmp_path, capsys):
    code, out, err = run_compare(capsys, tmp_path / "nope")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"dlrun compare: error: {tmp_path / 'nope'}: no such file or folder"]


def test_a_corrupt_summary_is_skipped_with_a_note(lr_sweep, capsys):
    (lr_sweep / "0" / "summary.json").write_text("{not json")
    code, out, err = run_compare(capsys, lr_sweep, "--format", "csv")
    assert code == 0 and len(out.splitlines()) == 1 + 5 and "summary.json: not valid JSON" in err


def test_config_from_hydra_yaml_when_summary_lacks_it(tmp_path):
    make_run(tmp_path / "a", set={"optimizer.lr": 0.05}, config_in_summary=False)
    make_run(tmp_path / "b", set={"optimizer.lr": 0.5}, summary=False)  # no summary.json at all
    a, b = load_run(tmp_path / "a"), load_run(tmp_path / "b")
    assert a.config["optimizer.lr"] == 0.05 and a.status == "completed"
    assert b.config["optimizer.lr"] == 0.5 and b.status == "unknown" and b.epochs_done == 3 and b.metrics["val/acc"] == 0.7
    assert b.overrides == {"optimizer.lr": "0.5"}


def test_runs_without_validation_sort_by_test_acc(tmp_path, capsys):
    make_run(tmp_path / "a", validation=False, test_acc=0.6)
    make_run(tmp_path / "b", validation=False, test_acc=0.9)
    rows = csv_rows(capsys, tmp_path)
    assert [r["run"] for r in rows] == ["b", "a"] and rows[0]["val/acc"] == ""


def test_help_and_dispatch_through_the_dlrun_command(lr_sweep, capsys):
    with pytest.raises(SystemExit) as exit_:
        compare.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and out.startswith("usage: dlrun compare") and "examples:" in out
    assert cli.main(["compare", str(lr_sweep), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6


def test_the_analysis_half_never_imports_torch_or_hydra(lr_sweep, tmp_path):
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        import dlrun.analysis
        for module in pkgutil.iter_modules(dlrun.analysis.__path__):
            importlib.import_module("dlrun.analysis." + module.name)
        from dlrun.analysis.compare import main
        code = main([{str(lr_sweep)!r}, "--group-by", "seed", "--plot", {str(tmp_path / "c.png")!r}])
        heavy = sorted(m for m in ("torch", "torchvision", "sklearn", "hydra") if m in sys.modules)
        print("HEAVY", heavy)
        sys.exit(code)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout and (tmp_path / "c.png").is_file()


def test_keys_that_cannot_change_a_result_are_not_columns(tmp_path):
    make_run(tmp_path / "a", set={"trainer.progress": "off", "trainer.plots": False})
    make_run(tmp_path / "b", set={"optimizer.lr": 0.01})
    assert differing_keys(find_runs([tmp_path])) == ["optimizer.lr"]


def test_an_unset_key_added_later_does_not_split_runs(tmp_path):
    make_run(tmp_path / "old")
    make_run(tmp_path / "new", set={"resume": "", "optimizer.lr": 0.01})
    make_run(tmp_path / "newer", set={"resume": None, "optimizer.lr": 0.1})
    assert differing_keys(find_runs([tmp_path])) == ["optimizer.lr"]
    make_run(tmp_path / "resumed", set={"resume": "outputs/x"})
    assert differing_keys(find_runs([tmp_path])) == ["optimizer.lr", "resume"]


def test_a_torn_last_metrics_line_is_dropped(tmp_path):
    folder = make_run(tmp_path / "a", status="running", epochs=5, val_acc=[0.3, 0.6])
    with open(folder / "metrics.csv", "a") as f:
        f.write("3,0.2,0.5")  # the process died while writing epoch 3
    run = load_run(folder)
    assert run.epochs_done == 2 and run.metrics["val/acc"] == 0.6


def test_thread_count_is_not_a_column(tmp_path):
    make_run(tmp_path / "a", set={"device.threads": 0, "optimizer.lr": 0.01})
    make_run(tmp_path / "b", set={"device.threads": 1, "optimizer.lr": 0.1})
    assert differing_keys(find_runs([tmp_path])) == ["optimizer.lr"]


def test_a_float_with_a_rounding_error_is_shown_as_meant_and_stored_exactly(tmp_path, capsys, monkeypatch):
    """-m 'optimizer.lr=range(0.01,0.1,0.03)' makes 0.06999999999999999: people read 0.07, csv and json keep every digit."""
    monkeypatch.setenv("COLUMNS", "150")
    lrs = [0.01 + i * 0.03 for i in range(3)]
    assert lrs[2] == 0.06999999999999999
    for i, lr in enumerate(lrs):
        make_run(tmp_path / str(i), set={"optimizer.lr": lr}, overrides=[f"optimizer.lr={lr}"], val_acc=[0.5, 0.6 + i / 10])
    for fmt in ("table", "md"):
        code, out, _ = run_compare(capsys, tmp_path, "--format", fmt)
        assert code == 0 and "0.07 " in out and "0.0699" not in out, out
    runs = find_runs([tmp_path])
    assert label(runs[2], ["optimizer.lr"]) == "optimizer.lr=0.07"
    assert [r["optimizer.lr"] for r in csv_rows(capsys, tmp_path)][0] == "0.06999999999999999"
    code, out, _ = run_compare(capsys, tmp_path, "--format", "json")
    assert json.loads(out)[0]["optimizer.lr"] == 0.06999999999999999


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.06999999999999999, "0.07"), (1e-05, "1e-05"), (0.0012345678, "0.0012345678"), (100.0, "100"), (3, "3"),
     ([0.1, 0.06999999999999999], "[0.1,0.07]"), (math.nan, "nan"), (-math.inf, "-inf"), (True, "true"), ("adam", "adam")],
)  # fmt: skip
def test_shown_values(value, expected):
    assert shown(value) == expected


def test_refused_runs_are_hidden_unless_asked_for(tmp_path, capsys):
    make_run(tmp_path / "good")
    make_run(tmp_path / "typo", status="refused", set={"modle": "mlp"})
    assert compare.main([str(tmp_path), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert [row["run"] for row in json.loads(out)] == ["good"] and "1 run refused before the first step not shown (--all shows them)" in err
    assert compare.main([str(tmp_path), "--format", "json", "--all"]) == 0
    assert sorted(row["run"] for row in json.loads(capsys.readouterr().out)) == ["good", "typo"]

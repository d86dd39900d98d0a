"""`dlrun compare` trusts no folder: a hostile or broken run folder is skipped with one line, never a traceback or a hang.

Each case puts one bad folder beside two good runs and checks that compare still shows the good
ones, exits 0, and says why it skipped the bad one (`skipped: PATH: why`), or shows it with the
ill-typed field left out. Cases that could hang or eat memory on a regression run in a
subprocess with a timeout and a memory cap, or under an alarm in-process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dlrun.analysis import compare
from dlrun.analysis.runfolder import RUN_FOLDER_FORMAT, load_run, read_summary, read_yaml
from dlrun.errors import RunFolderError
from tests.runfolders import make_run

FORMATS = ("table", "csv", "json", "md")


class Hang(BaseException):
    """Raised by the alarm; a BaseException, so that no `except Exception` (or OSError) in the code under test hides it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail the test, rather than stall the suite, when the body runs longer than `seconds`."""

    def expired(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def runs(tmp_path) -> Path:
    """Two good runs, `good1` and `good2`, beside which each test writes a bad folder `bad`."""
    make_run(tmp_path / "good1", val_acc=[0.5, 0.9], test_acc=0.88)
    make_run(tmp_path / "good2", set={"optimizer.lr": 0.01}, val_acc=[0.4, 0.7], test_acc=0.66)
    return tmp_path


def compare_all_formats(capsys, parent: Path, *extra: str) -> dict[str, tuple[str, str]]:
    """Run compare in every format; each must exit 0 and show both good runs. Returns {format: (out, err)}."""
    seen = {}
    for fmt in FORMATS:
        with time_limit(10):
            code = compare.main([str(parent), "--format", fmt, *extra])
        out, err = capsys.readouterr()
        assert code == 0, f"--format {fmt}: exit {code}\n{err}"
        assert "good1" in out and "good2" in out, f"--format {fmt}:\n{out}"
        assert "Traceback" not in err
        if fmt == "json":
            json.loads(out, parse_constant=lambda name: pytest.fail(f"invalid JSON constant {name}"))
        seen[fmt] = (out, err)
    return seen


def assert_skipped(capsys, parent: Path, file: Path, why: str) -> None:
    """The bad folder is left out of every format, with one note `skipped: FILE: why...` on stderr."""
    for fmt, (out, err) in compare_all_formats(capsys, parent).items():
        notes = err.strip().splitlines()
        assert len(notes) == 1 and notes[0].startswith(f"skipped: {file}: {why}"), f"--format {fmt}: {err}"
        assert "bad" not in out.replace(str(parent), "")


# ---------------------------------------------------------------------------------------------
# metrics.csv.


def test_a_metrics_csv_that_is_not_utf8(runs, capsys):
    bad = make_run(runs / "bad", status="running", val_acc=[0.3])
    (bad / "metrics.csv").write_bytes(b"epoch,val/acc\n1,0.5\n2,\xff\xfe0.7\n")
    assert_skipped(capsys, runs, bad / "metrics.csv", "not UTF-8 text")


def test_a_metrics_csv_field_past_the_csv_limit(runs, capsys):
    bad = make_run(runs / "bad", status="running", val_acc=[0.3])
    with open(bad / "metrics.csv", "a") as f:
        f.write("2," + "9" * 200_000 + ",0.1,0.2,0.3,0.4\n")  # a field longer than csv's 131072-character limit
    assert_skipped(capsys, runs, bad / "metrics.csv", "line 3: field larger than field limit")


def test_a_metrics_csv_past_the_size_limit(runs, capsys):
    bad = make_run(runs / "bad", summary=False)
    with open(bad / "metrics.csv", "r+b") as f:
        f.truncate(65 << 20)  # sparse: no disk used, and never read
    assert_skipped(capsys, runs, bad / "metrics.csv", "larger than 64 MiB")


def test_the_plot_leaves_out_a_curve_it_cannot_read_and_draws_odd_ones(runs, capsys):
    bad = make_run(runs / "bad")  # completed: the table needs summary.json only, the plot reads metrics.csv
    (bad / "metrics.csv").write_bytes(b"epoch,val/acc\n1,\xff\n")
    odd = make_run(runs / "odd", set={"optimizer.name": "$\\frac{$"})  # a legend label that is broken TeX to matplotlib
    (odd / "metrics.csv").write_text("epoch,val/acc\nnan,0.1\ninf,nan\n1e300,inf\n-inf,0.5\n")
    target = runs / "curves.png"
    with time_limit(20):
        code = compare.main([str(runs), "--plot", str(target)])
    out, err = capsys.readouterr()
    assert code == 0 and target.is_file() and "bad" in out
    assert f"skipped: {bad / 'metrics.csv'}: not UTF-8 text" in err and "for 3 of 4 runs" in err


# ---------------------------------------------------------------------------------------------
# summary.json: unreadable as a whole.


def test_an_integer_of_5000_digits(runs, capsys):
    bad = make_run(runs / "bad")
    (bad / "summary.json").write_text('{"status": "completed", "params": ' + "7" * 5000 + "}")
    assert_skipped(capsys, runs, bad / "summary.json", "not readable JSON (Exceeds the limit (4300 digits)")


def test_json_nested_100000_deep(runs, capsys):
    bad = make_run(runs / "bad")
    (bad / "summary.json").write_text("[" * 100_000 + "]" * 100_000)
    assert_skipped(capsys, runs, bad / "summary.json", "nested more than")


def test_a_config_nested_500_deep(runs, capsys):
    """Deep enough to read, then to overflow the stack of whatever walks it (text(), for the table)."""
    bad = make_run(runs / "bad")
    summary = json.loads((bad / "summary.json").read_text())
    summary["config"]["model"]["hidden_sizes"] = json.loads("[" * 500 + "]" * 500)
    (bad / "summary.json").write_text(json.dumps(summary))
    assert_skipped(capsys, runs, bad / "summary.json", "nested more than")


def test_a_summary_past_the_size_limit(runs, capsys):
    bad = make_run(runs / "bad")
    (bad / "summary.json").write_text(json.dumps({"status": "completed", "notes": "x" * (5 << 20)}))
    assert_skipped(capsys, runs, bad / "summary.json", "larger than 4 MiB")


def test_a_summary_that_is_not_an_object(runs, capsys):
    bad = make_run(runs / "bad")
    (bad / "summary.json").write_text("[1, 2]")
    assert_skipped(capsys, runs, bad / "summary.json", "holds a list, not a JSON object")


def test_a_summary_that_is_a_fifo_does_not_hang(runs, capsys):
    bad = make_run(runs / "bad")
    (bad / "summary.json").unlink()
    os.mkfifo(bad / "summary.json")  # opening it for reading would wait for a writer forever
    assert_skipped(capsys, runs, bad / "summary.json", "not a regular file (a FIFO)")


def run_capped(args: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    """`dlrun compare ARGS` in a child process limited to 1 GiB of memory and `timeout` seconds."""
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from dlrun.analysis.compare import main
        sys.exit(main({args!r}))
    """)
    try:
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dlrun compare {' '.join(args)} still running after {timeout} s")


def test_a_summary_linked_to_dev_zero_is_not_read(runs):
    bad = make_run(runs / "bad")
    (bad / "summary.json").unlink()
    (bad / "summary.json").symlink_to("/dev/zero")  # endless: reading it all would take every byte of memory
    done = run_capped([str(runs), "--format", "csv"])
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [f"skipped: {bad / 'summary.json'}: not a regular file (a character device)"]
    assert [row["run"] for row in csv.DictReader(io.StringIO(done.stdout))] == ["good1", "good2"]


@pytest.mark.parametrize("shape", ["list", "dict"])
def test_a_yaml_alias_bomb_in_hydra_config_is_refused(runs, shape):
    bad = make_run(runs / "bad", config_in_summary=False)  # compare reads .hydra/config.yaml for the config
    if shape == "list":  # billion laughs: 9 levels of 9 aliases each, 9**9 strings once expanded
        lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    else:  # the same with mappings, which flatten() walks key by key
        lines = ["a0: &a0 {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1}"]
        lines += [f"a{i}: &a{i} {{{', '.join(f'k{j}: *a{i - 1}' for j in range(9))}}}" for i in range(1, 10)]
    (bad / ".hydra" / "config.yaml").write_text("\n".join(lines) + "\n")
    done = run_capped([str(runs), "--format", "csv"])
    assert done.returncode == 0, done.stderr
    [note] = done.stderr.strip().splitlines()
    assert note.startswith(f"skipped: {bad / '.hydra' / 'config.yaml'}: expands to more than")
    assert [row["run"] for row in csv.DictReader(io.StringIO(done.stdout))] == ["good1", "good2"]


# ---------------------------------------------------------------------------------------------
# summary.json: fields of the wrong type are read as absent; the run is shown.


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("epochs_completed", "x", {"epochs_done": "3"}),  # counted from metrics.csv instead
        ("epochs", "ten", {"epochs": "3"}),  # the config's trainer.epochs instead
        ("best", [], {"val/acc": ""}),  # as if missing: a completed run's best is not guessed from metrics.csv
        ("best", [1, 2], {"val/acc": ""}),
        ("best", {"val/acc": "high", "epoch": None}, {"val/acc": "", "best_epoch": ""}),
        ("test", {"acc": "high", "loss": [0.5]}, {"test/acc": "", "test/loss": ""}),
        ("test", "high", {"test/acc": ""}),
        ("final", {"train/acc": {"x": 1}}, {"train/acc": ""}),
        ("timing", 5, {"time_s": ""}),
        ("timing", {"wall_s": True}, {"time_s": ""}),
        ("params", "many", {"params": ""}),
        pytest.param("params", 10**4000, {"params": ""}, id="params-10**4000"),  # too big for a float, which sorting needs
        ("status", 3, {"status": "unknown"}),
        ("error", {"why": 1}, {"error": ""}),
        ("experiment", ["a"], {}),
        ("config", [1, 2], {"optimizer.lr": "0.001"}),  # Hydra's .hydra/config.yaml instead
        ("overrides", 5, {}),
        ("overrides", [1, None], {}),
    ],
)
def test_a_field_of_the_wrong_type_is_read_as_absent(runs, capsys, field, value, expected):
    bad = make_run(runs / "bad")
    summary = json.loads((bad / "summary.json").read_text())
    summary[field] = value
    (bad / "summary.json").write_text(json.dumps(summary))
    seen = compare_all_formats(capsys, runs, "--sort", "params")
    assert all(err == "" for _, err in seen.values())
    rows = {row["run"]: row for row in csv.DictReader(io.StringIO(seen["csv"][0]))}
    assert {k: rows["bad"][k] for k in expected} == expected


def test_a_config_number_too_big_for_a_float(runs, capsys):
    make_run(runs / "big", set={"optimizer.lr": 10**400})
    for extra in (["--sort", "optimizer.lr"], ["--filter", "optimizer.lr>0"], ["--group-by", "seed"]):
        code, out, err = compare.main([str(runs), "--format", "csv", *extra]), *capsys.readouterr()
        assert code == 0 and err == "" and "good1" in out, (extra, err)


def test_metrics_that_are_nan_or_inf_sort_last_and_print_as_nan_and_inf(runs, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    for name, value in (("nan", float("nan")), ("inf", float("inf"))):
        folder = make_run(runs / name, test_acc=value, test_loss=value, wall_s=value)
        summary = json.loads((folder / "summary.json").read_text())
        summary["best"]["val/acc"] = value
        (folder / "summary.json").write_text(json.dumps(summary))  # NaN and Infinity, as Python writes them
    seen = compare_all_formats(capsys, runs)
    order = [line.split()[0] for line in seen["table"][0].splitlines() if line.startswith(("good", "nan", "inf"))]
    assert order == ["good1", "good2", "inf", "nan"]  # after every finite value, in run order
    rows = {row["run"]: row for row in csv.DictReader(io.StringIO(seen["csv"][0]))}
    assert list(rows) == ["good1", "good2", "inf", "nan"]
    assert (rows["nan"]["val/acc"], rows["nan"]["test/loss"], rows["inf"]["time_s"]) == ("nan", "nan", "inf")
    json_rows = {row["run"]: row for row in json.loads(seen["json"][0])}
    assert (json_rows["nan"]["val/acc"], json_rows["inf"]["test/acc"], json_rows["inf"]["time_s"]) == ("nan", "inf", "inf")
    table = {line.split()[0]: line.split() for line in seen["table"][0].splitlines() if line.startswith(("nan", "inf"))}
    assert table["nan"][-4:] == ["nan", "nan", "nan", "nan"] and table["inf"][-4:] == ["inf", "inf", "inf", "inf"]
    md = {line.split("|")[1].strip(): line for line in seen["md"][0].splitlines() if line.startswith("| nan") or line.startswith("| inf")}
    assert "| nan | nan | nan | nan |" in md["nan"] and "| inf | inf | inf | inf |" in md["inf"]


def test_a_group_with_a_nan_member(runs, capsys):
    make_run(runs / "nan", set={"seed": 1}, test_acc=float("nan"))
    make_run(runs / "inf", set={"seed": 2}, test_acc=float("inf"))
    code, out, err = compare.main([str(runs), "--group-by", "seed", "--sort", "test/acc"]), *capsys.readouterr()
    assert code == 0 and err == "" and "nan" in out


def test_text_that_would_break_a_line_or_drive_the_terminal(runs, capsys):
    """A newline or an escape in a folder name or a string field, a lone surrogate from JSON, a name that is not UTF-8."""
    make_run(runs / "new\nline")
    make_run(Path(os.fsdecode(os.fsencode(runs) + b"/\xffname")))
    bad = make_run(runs / "bad")
    summary = json.loads((bad / "summary.json").read_text())
    (bad / "summary.json").write_text(json.dumps(summary | {"status": "\ud800\x1b[31m", "error": "two\nlines"}))
    seen = compare_all_formats(capsys, runs)
    for fmt in ("table", "md"):
        out = seen[fmt][0]
        assert "\x1b" not in out and "new\\nline" in out and "\\udcffname" in out and "\\ud800\\x1b[31m" in out, out
    assert "bad \\ud800\\x1b[31m: two\\nlines" in seen["table"][0]


def test_a_folder_named_with_a_digit_that_is_no_decimal(runs, capsys):
    make_run(runs / "²")  # str.isdigit() is true for it, and int() fails
    out = compare_all_formats(capsys, runs)["csv"][0]
    assert "²" in out


# ---------------------------------------------------------------------------------------------
# The format version.


def test_a_summary_without_format_is_read_as_format_1(runs):
    summary = json.loads((runs / "good1" / "summary.json").read_text())
    assert "format" not in summary and RUN_FOLDER_FORMAT == 1
    assert load_run(runs / "good1").status == "completed"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (7, "written by a newer dlrun (format 7); this dlrun reads format 1"),
        ("1", "format '1' is not a run-folder format version"),
        (True, "format True is not a run-folder format version"),
        (0, "format 0 is not a run-folder format version"),
        (1.0, "format 1.0 is not a run-folder format version"),
    ],
)
def test_an_unknown_format_is_skipped_with_a_note(runs, capsys, value, why):
    bad = make_run(runs / "bad")
    summary = json.loads((bad / "summary.json").read_text())
    (bad / "summary.json").write_text(json.dumps(summary | {"format": value}))
    assert_skipped(capsys, runs, bad / "summary.json", why)


def test_format_1_is_read(runs, capsys):
    for name in ("good1", "good2"):
        path = runs / name / "summary.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"format": 1}))
    compare_all_formats(capsys, runs)


# ---------------------------------------------------------------------------------------------
# The readers themselves, for the training half too.


def test_read_summary(tmp_path):
    assert read_summary(tmp_path) == {}
    (tmp_path / "summary.json").write_text('{"status": "running", "format": 1}')
    assert read_summary(tmp_path) == {"status": "running", "format": 1}
    for text, why in (("{", "not valid JSON"), ("[]", "holds a list, not a JSON object"), ('{"format": 2}', "written by a newer dlrun")):
        (tmp_path / "summary.json").write_text(text)
        with pytest.raises(RunFolderError) as err:
            read_summary(tmp_path)
        assert str(err.value).startswith(f"{tmp_path / 'summary.json'}: {why}") and "\n" not in str(err.value)
    (tmp_path / "summary.json").unlink()
    (tmp_path / "summary.json").mkdir()
    with pytest.raises(RunFolderError, match="not a regular file \\(a folder\\)"):
        read_summary(tmp_path)


def test_read_yaml(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("a: &x [1, 2]\nb: *x\nc: .nan\n")  # a few aliases are fine
    value = read_yaml(path)
    assert value["a"] == value["b"] == [1, 2] and value["c"] != value["c"]
    for text, why in (
        ("a: [", "not valid YAML"),
        ("a: !!python/object:os.system {}", "not valid YAML"),  # safe: no tags that run code
        ("a: &a [*a]", "nested more than"),  # a list that holds itself: endlessly deep
        ("a: " + "[" * 200 + "]" * 200, "nested more than"),
        ("a: " + "1" * 5000, "not readable YAML (Exceeds the limit (4300 digits)"),
    ):
        path.write_text(text)
        with pytest.raises(RunFolderError) as err:
            read_yaml(path)
        assert str(err.value).startswith(f"{path}: {why}") and "\n" not in str(err.value), str(err.value)
    path.write_text("x: " + "y" * (1 << 20))
    with pytest.raises(RunFolderError, match="larger than 1 MiB"):
        read_yaml(path)
    with pytest.raises(FileNotFoundError):
        read_yaml(tmp_path / "nope.yaml")


def test_the_sweep_summary_skips_a_bad_job(tmp_path, capsys):
    from rich.console import Console

    from dlrun.analysis.sweep import summarize_sweep

    make_run(tmp_path / "0", overrides=["seed=0"])
    make_run(tmp_path / "1", set={"seed": 1}, overrides=["seed=1"])
    bad = make_run(tmp_path / "2", set={"seed": 2}, overrides=["seed=2"])
    (bad / "summary.json").write_text("[" * 100_000)
    with time_limit(20):
        paths = summarize_sweep(tmp_path, console=Console(file=io.StringIO(), width=120))
    err = capsys.readouterr().err
    assert set(paths) == {"csv", "md", "png"} and f"skipped: {bad / 'summary.json'}: nested more than" in err
    assert [row["run"] for row in csv.DictReader(io.StringIO(paths["csv"].read_text()))] == ["0", "1"]

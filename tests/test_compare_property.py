"""Random bytes and random JSON in a run folder's files: `dlrun compare` never raises, never hangs, and still shows the good runs.

Whatever lands in summary.json, metrics.csv or .hydra/config.yaml, compare must either show the
run (with what it could read) or skip it with one `skipped: ...` line, exit 0 for the good runs
beside it, and write valid JSON with --format json.
"""

from __future__ import annotations

import json
import math
import signal
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlrun.analysis import compare
from tests.runfolders import make_run

# Names compare looks for, so that random JSON hits the fields it uses, not only keys it ignores.
NAMES = [
    *("format", "status", "config", "overrides", "best", "test", "final", "timing", "params", "epochs", "epochs_completed"),
    *("experiment", "error", "acc", "loss", "epoch", "wall_s", "val/acc", "val/loss", "train/acc", "train/loss"),
    *("optimizer", "lr", "trainer", "seed", "model", "name", "completed", "running"),
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),  # past a float's range
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(NAMES),
)
keys = st.one_of(st.sampled_from(NAMES), st.text(max_size=6))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=25)
summaries = st.one_of(st.dictionaries(st.sampled_from(NAMES), json_values, max_size=8), json_values)

cells = st.one_of(st.sampled_from(["nan", "inf", "-inf", "1e999", "", "x", "0.5", "3", "-0"]), st.text(string.printable, max_size=6))
csv_texts = st.builds(
    lambda header, rows: "\n".join(",".join(line) for line in [header, *rows]) + "\n",
    st.lists(st.sampled_from(["epoch", "val/acc", "val/loss", "train/loss", "test/acc", "lr", "x", ""]), min_size=1, max_size=5),
    st.lists(st.lists(cells, max_size=6), max_size=5),
)
FILES = ["summary.json", "metrics.csv", ".hydra/config.yaml", ".hydra/overrides.yaml"]
contents = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    summaries.map(lambda v: json.dumps(v).encode()),
    csv_texts.map(str.encode),
)


class Hang(BaseException):
    """Raised by the alarm; a BaseException, so that no `except Exception` in compare can hide it."""


def expired(signum, frame):
    raise Hang("compare still running after 5 s")


def check_compare(capsys, parent: Path, fmt: str, sort: str) -> None:
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, 5)
    try:
        code = compare.main([str(parent), "--format", fmt, "--sort", sort])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "good" in out, out
    notes = err.splitlines()
    assert all(line.startswith("skipped: ") for line in notes) and len(notes) <= 1, err
    if fmt == "json":
        rows = json.loads(out, parse_constant=lambda name: pytest.fail(f"invalid JSON: {name}"))
        assert "good" in [row["run"] for row in rows]


SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@given(
    writes=st.lists(st.tuples(st.sampled_from(FILES), contents), min_size=1, max_size=3),
    status=st.sampled_from(["completed", "running", "failed"]),
    fmt=st.sampled_from(["table", "csv", "json", "md"]),
    sort=st.sampled_from(["val/acc", "test/loss", "time", "params", "epochs_done", "optimizer.lr", "status"]),
)
def test_random_files_in_a_run_folder(capsys, writes, status, fmt, sort):
    with tempfile.TemporaryDirectory() as tmp:
        parent = Path(tmp)
        make_run(parent / "good")
        bad = make_run(parent / "bad", status=status, config_in_summary=status != "failed")
        for name, data in writes:
            (bad / name).write_bytes(data)
        check_compare(capsys, parent, fmt, sort)


@SETTINGS
@given(
    fields=st.dictionaries(st.sampled_from(NAMES), json_values, min_size=1, max_size=4),
    fmt=st.sampled_from(["table", "csv", "json", "md"]),
    sort=st.sampled_from(["val/acc", "test/acc", "time", "params", "epochs", "best_epoch"]),
)
def test_random_values_in_a_real_summary(capsys, fields, fmt, sort):
    """A summary.json as dlrun writes it, with some of its fields replaced by random JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        parent = Path(tmp)
        make_run(parent / "good")
        bad = make_run(parent / "bad", test_acc=math.nan)
        summary = json.loads((bad / "summary.json").read_text()) | fields
        (bad / "summary.json").write_text(json.dumps(summary))
        check_compare(capsys, parent, fmt, sort)

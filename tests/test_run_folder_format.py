"""docs/run-folder.md is the run folder's contract: a real run's files hold what it documents."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from tests.helpers import QUICK

DOC = Path(__file__).resolve().parents[1] / "docs" / "run-folder.md"
TYPES = {"int": int, "float": (int, float), "str": str, "object": dict, "list of str": list, "str or null": (str, type(None))}


def documented(heading: str) -> list[tuple[str, str, str]]:
    """(field, type, present) rows of the table under `## heading`."""
    section = DOC.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    found = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            for name in re.findall(r"`([^`]+)`", cells[0]):
                found.append((name, cells[1], cells[2]))
    return found


def test_every_documented_summary_field_is_in_a_real_run_with_its_type(run_dlrun):
    summary = json.loads((run_dlrun(*QUICK) / "summary.json").read_text())
    fields = documented("summary.json")
    assert len(fields) > 20
    expected_now = {"always", "once started", "once the data loaded", "completed", "ended"}
    for name, kind, present in fields:
        if present in expected_now:
            assert name in summary, name
        if name in summary:
            assert isinstance(summary[name], TYPES[kind]), (name, kind, summary[name])
    undocumented = set(summary) - {name for name, _, _ in fields}
    assert not undocumented


def test_every_metrics_column_is_documented_and_the_documented_ones_are_there(run_dlrun):
    run = run_dlrun(*QUICK, "trainer.grad_clip=1")
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {name: present for name, _, present in documented("metrics.csv")}
    assert set(rows[0]) <= set(columns)
    assert {
        name for name, present in columns.items() if present in ("always", "with a validation split", "`trainer.grad_clip` > 0")
    } <= set(rows[0])


def test_checkpoint_keys_are_documented(run_dlrun):
    run = run_dlrun(*QUICK)
    keys = {name for name, _, _ in documented("Checkpoints")}
    for name in ("last.pt", "best.pt"):
        checkpoint = torch.load(run / "checkpoints" / name, weights_only=True)
        assert set(checkpoint) - {"format", "version"} <= keys, name
    assert set(torch.load(run / "checkpoints" / "last.pt", weights_only=True)) - {"format", "version"} == keys


@pytest.mark.parametrize("version", [2, "1", None])
def test_resume_refuses_a_summary_of_an_unknown_format(run_dlrun, interrupt_at_epoch, tmp_path, capsys, version):
    part = tmp_path / "part"
    interrupt_at_epoch(2)
    with pytest.raises(SystemExit):
        run_dlrun(*QUICK, "trainer.epochs=3", run_dir=part)
    interrupt_at_epoch(None)
    summary = json.loads((part / "summary.json").read_text())
    summary["format"] = version
    (part / "summary.json").write_text(json.dumps(summary))
    before = {p: p.read_bytes() for p in part.rglob("*") if p.is_file() and p.name != ".lock"}
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        run_dlrun(f"resume={part}", run_dir=part)
    assert refused.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dlrun: error: ") and "format" in err and "\n" not in err
    assert before == {p: p.read_bytes() for p in part.rglob("*") if p.is_file() and p.name != ".lock"}

"""Shell completion: Hydra's script runs `dlrun -sc query=bash` with the line typed so far in $COMP_LINE.

A subcommand's line is answered from its argparse parser and never reaches Hydra, which would print
`Error parsing override 'compare'` into the terminal; other lines stay Hydra's.
"""

from __future__ import annotations

import pytest

from dlrun import cli


def complete(capsys, monkeypatch, line: str, shell: str = "bash") -> tuple[list[str], str]:
    monkeypatch.setenv("COMP_LINE", line)
    monkeypatch.setenv("COMP_POINT", str(len(line)))
    assert cli.main(["-sc", f"query={shell}"]) == 0
    out, err = capsys.readouterr()
    return out.split(), err


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("dlrun compare --so", ["--sort"]),
        ("dlrun compare runs/ --f", ["--filter", "--format"]),
        ("dlrun compare runs/ --format ", ["table", "csv", "json", "md"]),
        ("dlrun compare runs/ --format j", ["json"]),
        ("dlrun compare ", []),  # a path: bash falls back to completing file names
        ("dlrun compare runs/ --plot cur", []),
        ("dlrun compare --sort ", []),
        ("python -m dlrun compare --rev", ["--reverse"]),
    ],
)
def test_a_subcommand_completes_its_flags_and_leaves_paths_to_the_shell(capsys, monkeypatch, line, expected):
    assert complete(capsys, monkeypatch, line) == (expected, "")


def test_fish_gets_the_paths_listed(capsys, monkeypatch, tmp_path):
    (tmp_path / "multirun").mkdir()
    (tmp_path / "notes.txt").write_text("")
    monkeypatch.chdir(tmp_path)
    assert complete(capsys, monkeypatch, "dlrun compare mu", shell="fish") == (["multirun/"], "")
    assert complete(capsys, monkeypatch, "dlrun compare --reverse n", shell="fish") == (["notes.txt"], "")
    assert complete(capsys, monkeypatch, "dlrun compare --sort n", shell="fish") == ([], "")  # a KEY, not a path


def test_the_first_word_completes_to_a_subcommand_and_to_hydras_overrides(capsys, monkeypatch):
    assert complete(capsys, monkeypatch, "dlrun comp") == (["compare"], "")
    words, err = complete(capsys, monkeypatch, "dlrun ")
    assert "compare" in words and "optimizer=" in words and err == ""
    assert complete(capsys, monkeypatch, "dlrun optim") == (["optimizer.", "optimizer="], "")

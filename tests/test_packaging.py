"""The built wheel carries conf/, and works from a fresh virtual environment outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)], check=True, timeout=600)
    return next(out.glob("dlrun-*.whl"))


@pytest.mark.slow
def test_wheel_carries_every_config_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"dlrun/conf/{p.relative_to(ROOT / 'conf')}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert expected and expected <= names
    # The Optuna sweeper sits in Hydra's plugin namespace package, which has no __init__.py of its own.
    assert {"hydra_plugins/dlrun_optuna_sweeper/config.py", "hydra_plugins/dlrun_optuna_sweeper/_search.py"} <= names
    assert "hydra_plugins/__init__.py" not in names


@pytest.mark.slow
def test_installed_wheel_runs_from_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    fresh_python = venv / "bin" / "python"
    # The heavy dependencies (torch is several GB) come from this environment through a .pth file;
    # dlrun itself comes only from the wheel.
    fresh_site = Path(
        subprocess.run(
            [str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    here_site = sysconfig.get_paths()["purelib"]
    deps = [p for p in Path(here_site).iterdir() if not p.name.startswith(("dlrun", "_dlrun", "__editable__"))]
    link = tmp_path / "deps"
    link.mkdir()
    for p in deps:
        (link / p.name).symlink_to(p)
    (fresh_site / "deps.pth").write_text(f"{link}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(fresh_python), "install", "--no-deps", "-q", str(wheel)], check=True, timeout=300
    )
    where = subprocess.run(
        [str(fresh_python), "-c", "from dlrun.config import config_dir; print(config_dir())"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where) == fresh_site / "dlrun" / "conf"
    result = subprocess.run(
        [str(venv / "bin" / "dlrun"), "debug=fast", "trainer.plots=false", "model=cnn"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "outputs").glob("*/*/summary.json"))) == 1

"""
The release artefacts: the sdist and wheel build and pass ``twine check``, and the wheel, installed into a fresh
virtual environment, runs the quickstart and the ``sb3-qsm`` command. Slow (a virtual environment with PyTorch):
``python -m pytest -m slow tests/test_release.py``.
"""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*command: str, cwd: pathlib.Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_the_quickstart(tmp_path):
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT), cwd=tmp_path)
    artefacts = sorted(path.name for path in dist.iterdir())
    assert any(name.endswith(".whl") for name in artefacts) and any(name.endswith(".tar.gz") for name in artefacts)
    assert "PASSED" in _run(sys.executable, "-m", "twine", "check", *map(str, dist.iterdir()), cwd=tmp_path)

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv), cwd=tmp_path)
    python = str(venv / "bin" / "python")
    torch_version = _run(sys.executable, "-c", "import torch; print(torch.__version__.split('+')[0])", cwd=tmp_path)
    # The torch of this environment first (the README's first step), then the wheel with its extras
    _run(python, "-m", "pip", "install", "--quiet", f"torch=={torch_version.strip()}", cwd=tmp_path)
    (wheel,) = dist.glob("*.whl")
    _run(python, "-m", "pip", "install", "--quiet", f"{wheel}[extra]", cwd=tmp_path)
    assert "usage: sb3-qsm" in _run(str(venv / "bin" / "sb3-qsm"), "--help", cwd=tmp_path)
    output = _run(python, str(ROOT / "examples" / "quickstart.py"), "--steps", "300", "--out", "q", cwd=tmp_path)
    assert "mean_reward=" in output

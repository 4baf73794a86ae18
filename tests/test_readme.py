"""The README's Python blocks run as written (with training cut short)."""

import pathlib
import re

from sb3_qsm import QSM

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "the README has no Python block"
    learn = QSM.learn

    def short_learn(self: QSM, total_timesteps: int, *args, **kwargs) -> QSM:
        return learn(self, min(total_timesteps, 300), *args, **kwargs)

    monkeypatch.setattr(QSM, "learn", short_learn)
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    assert (tmp_path / "qsm_pendulum.zip").is_file()

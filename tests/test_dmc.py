"""DeepMind Control through Shimmy: the zoo entries train and replay, the paper preset runs, the dmc suite builds."""

import inspect
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from sb3_qsm import QSM
from sb3_qsm.benchmarks import suite
from sb3_qsm.benchmarks.settings import make_model
from sb3_qsm.qsm.presets import PAPER_HYPERPARAMS, PAPER_NOISE_STD

pytest.importorskip("shimmy")
pytest.importorskip("dm_control")

# The tasks of the QSM paper's reference configuration
PAPER_TASKS = ("cartpole-balance", "walker-walk", "quadruped-walk", "humanoid-walk")


def test_zoo_has_an_entry_for_each_of_the_papers_tasks(zoo_hyperparams):
    for task in PAPER_TASKS:
        entry = zoo_hyperparams[f"dm_control/{task}-v0"]
        assert entry["env_wrapper"] == "gymnasium.wrappers.FlattenObservation", task


def test_zoo_entries_of_the_papers_tasks_are_the_paper_preset(zoo_hyperparams, zoo_kwargs):
    """The entries run QSM.from_paper_config's settings, which the dmc suite measured on walker-walk (YAML cannot
    import them): each of the preset's arguments is the entry's or, where the entry leaves it out, QSM's default."""
    defaults = {name: parameter.default for name, parameter in inspect.signature(QSM.__init__).parameters.items()}
    for task in PAPER_TASKS:
        entry = zoo_hyperparams[f"dm_control/{task}-v0"]
        for key, value in PAPER_HYPERPARAMS.items():
            if key == "policy_kwargs":
                assert zoo_kwargs(entry[key]) == value, task
            else:
                assert entry.get(key, defaults[key]) == value, (task, key)
        assert (entry["noise_type"], entry["noise_std"]) == ("normal", PAPER_NOISE_STD), task


def test_suite_flattens_the_observations_of_a_dm_control_task():
    env = suite.make_env("dm_control/walker-walk-v0")
    observation, _ = env.reset(seed=0)
    # walker: height (1), orientations (14), velocity (9)
    assert observation.shape == (24,) and env.observation_space.shape == (24,)
    assert env.action_space.shape == (6,)
    model, settings = make_model("qsm-paper", env, "dm_control/walker-walk-v0", seed=0, budget=1000, device="cpu")
    assert settings["effective_hyperparams"]["score_target"] == "'gradient'" and model.buffer_size == 1000
    _, sac = make_model("sac", env, "dm_control/walker-walk-v0", seed=0, budget=1000, device="cpu")
    assert sac["hyperparams_source"].startswith("SB3 defaults")


def test_paper_preset_learns_on_a_dm_control_task():
    env = suite.make_env("dm_control/cartpole-balance-v0")
    model = QSM.from_paper_config(env, learning_starts=50, buffer_size=500, policy_kwargs=dict(net_arch=[32, 32]), seed=0)
    model.learn(120)
    action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
    assert action.shape == (1,) and np.all(np.abs(action) <= 1.0)


def test_zoo_trains_and_replays_a_dm_control_task(tmp_path: pathlib.Path):
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}

    def zoo(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "sb3_qsm.zoo", *args]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)

    env_id = "dm_control/cartpole-balance-v0"
    train = zoo("train", "--algo", "qsm", "--env", env_id, "-n", "200", "-f", "logs", "-params", "learning_starts:50")
    assert train.returncode == 0, train.stderr[-3000:]
    run = tmp_path / "logs" / "qsm" / "dm_control-cartpole-balance-v0_1"
    assert (run / "dm_control-cartpole-balance-v0.zip").is_file()
    enjoy = zoo("enjoy", "--algo", "qsm", "--env", env_id, "-f", "logs", "-n", "100", "--no-render")
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]

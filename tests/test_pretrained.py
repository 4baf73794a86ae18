"""The QSM agents shipped in rl-trained-agents/: they load on their own, return what their evaluation.json says,
and the zoo's enjoy replays them."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_qsm import QSM
from sb3_qsm.benchmarks.evaluation import mean_return, std_return

AGENTS = pathlib.Path(__file__).resolve().parents[1] / "rl-trained-agents"
RUNS = sorted((AGENTS / "qsm").glob("*_1"))
EPISODES = 3


def test_at_least_pendulum_and_two_mujoco_agents_are_shipped():
    names = {run.name for run in RUNS}
    assert "Pendulum-v1_1" in names
    assert len(names) >= 3
    for run in RUNS:
        env_id = run.name[: -len("_1")]
        assert (run / f"{env_id}.zip").stat().st_size < 5 * 2**20
        assert sum(path.stat().st_size for path in run.rglob("*") if path.is_file()) < 5 * 2**20


@pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])
def test_shipped_agent_returns_its_documented_return(run):
    env_id = run.name[: -len("_1")]
    documented = json.loads((run / "evaluation.json").read_text())["deterministic"]
    model = QSM.load(run / f"{env_id}.zip", buffer_size=1, device="cpu")  # the .zip alone, no env
    env = make_vec_env(env_id, n_envs=1, seed=123)
    returns, _ = evaluate_policy(model, env, n_eval_episodes=EPISODES, deterministic=True, return_episode_rewards=True)
    # A few episodes from other initial states: within three documented standard deviations (and 20% of the mean)
    margin = max(3 * std_return(documented), 0.2 * abs(mean_return(documented)))
    assert np.mean(returns) >= mean_return(documented) - margin, (returns, mean_return(documented))


@pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])
def test_enjoy_replays_shipped_agent(run, tmp_path):
    env_id = run.name[: -len("_1")]
    command = [sys.executable, "-m", "sb3_qsm.zoo", "enjoy", "--algo", "qsm", "--env", env_id, "-f", str(AGENTS)]
    command += ["--exp-id", "1", "-n", "300", "--no-render"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Loading {AGENTS}/qsm/{run.name}/{env_id}.zip" in result.stdout


@pytest.mark.parametrize("run", RUNS, ids=[run.name for run in RUNS])
def test_packaged_zoo_entry_still_trains_with_the_shipped_agents_settings(run, zoo_hyperparams, zoo_kwargs):
    """Each shipped agent was trained from its packaged qsm.yml entry (its command.txt): the entry must still give
    QSM the settings the agent holds, whatever QSM's defaults have become since."""
    env_id = run.name[: -len("_1")]
    entry = zoo_hyperparams[env_id]
    policy_kwargs = zoo_kwargs(entry.get("policy_kwargs", "dict()"))
    shipped = QSM.load(run / f"{env_id}.zip", buffer_size=1, device="cpu")
    settings = ("score_target", "score_scale", "n_diffusion_steps", "beta_schedule", "policy_delay", "score_actions")
    settings += ("target_diffusion_steps", "q_spread_floor", "sampler_noise_color", "learning_starts")
    trained = QSM(
        "MlpPolicy",
        env_id,
        buffer_size=1,
        batch_size=1,
        device="cpu",
        policy_kwargs=policy_kwargs,
        **{key: entry[key] for key in (*settings, "sampler") if key in entry},
    )
    for name in settings:
        assert getattr(trained, name) == getattr(shipped, name), name
    assert trained.policy.actor.sampler == shipped.policy.actor.sampler
    assert trained.policy.critic_kwargs["n_critics"] == shipped.policy.critic_kwargs["n_critics"]
    assert trained.policy.n_quantiles == shipped.policy.n_quantiles
    assert trained.policy.actor.action_fan_in_init == shipped.policy.actor.action_fan_in_init

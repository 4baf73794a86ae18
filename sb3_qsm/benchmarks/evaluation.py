"""
The one format of an evaluation result, and the provenance every record carries.

An evaluation result is a dict ``{"returns": [...], "lengths": [...]}``: the return and the length of each episode, in
order (``lengths`` is absent from the few records written before it was kept). Means and spreads are computed from
the returns when read, never stored beside them.
"""

import json
import os
import pathlib
import platform
import socket
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.type_aliases import GymEnv

import sb3_qsm
from sb3_qsm.common.checkpoint import atomic_file

EvaluationResult = dict[str, list[Any]]


def evaluate(model: BaseAlgorithm, env: GymEnv, n_episodes: int, deterministic: bool) -> EvaluationResult:
    """
    :param model: The agent
    :param env: The evaluation environment (a ``Monitor``-wrapped env or a VecEnv)
    :param n_episodes: Number of episodes
    :param deterministic: Whether the policy acts deterministically
    :return: The evaluation result: each episode's return and length
    """
    returns, lengths = evaluate_policy(
        model, env, n_eval_episodes=n_episodes, deterministic=deterministic, return_episode_rewards=True, warn=False
    )
    return {"returns": [float(r) for r in returns], "lengths": [int(n) for n in lengths]}  # type: ignore[union-attr]


def mean_return(result: EvaluationResult) -> float:
    """:return: The mean return of an evaluation result"""
    return float(np.mean(result["returns"]))


def std_return(result: EvaluationResult) -> float:
    """:return: The standard deviation of the returns of an evaluation result (over episodes)"""
    return float(np.std(result["returns"]))


def describe_result(result: EvaluationResult) -> str:
    """:return: ``mean +/- std`` of the returns"""
    return f"{mean_return(result):.1f} +/- {std_return(result):.1f}"


def environment() -> dict[str, Any]:
    """The package versions and the machine a measurement ran with."""
    versions = {"python": platform.python_version(), "numpy": np.__version__, "gymnasium": gym.__version__}
    versions |= {"sb3_qsm": sb3_qsm.__version__, "stable_baselines3": stable_baselines3.__version__, "torch": th.__version__}
    try:
        import mujoco

        versions["mujoco"] = mujoco.__version__
    except ImportError:
        pass
    machine: dict[str, Any] = {"host": socket.gethostname(), "processor": platform.processor() or platform.machine()}
    cpuinfo = pathlib.Path("/proc/cpuinfo")  # Linux only
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    if models:
        machine["cpu_model"] = models[0]
    machine |= {"cpus": os.cpu_count(), "platform": platform.platform()}
    return {"versions": versions, "machine": machine}


def write_json(path: pathlib.Path, data: dict[str, Any]) -> None:
    """Write a JSON file atomically (``atomic_file``: a reader never sees half a file, a kill never leaves one)."""
    with atomic_file(path) as file:
        file.write(json.dumps(data, indent=1).encode())

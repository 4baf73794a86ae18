"""
Multi-modal demonstration: train QSM, SAC and TD3 on ``sb3_qsm/MultiModalBandit-v0`` (four equally good, separated
optimal actions), then measure, for 2000 stochastic samples of each trained policy, how many modes they cover and
how much reward they earn, and draw every policy's samples side by side.

    python examples/multimodal.py --steps 5000 --seeds 0 1 2 --out benchmarks/multimodal/defaults

A sample counts for a mode when it lies within the half-peak radius of it (its reward is at least half the peak);
a mode is covered when it holds at least 10% of the samples. Each (algorithm, seed) writes its own JSON file, and an
existing file is reused, so the script resumes after an interruption. ``--qsm-kwargs`` passes QSM arguments
(e.g. ``'{"score_scale": 1.0}'``) to compare settings; write each setting to its own ``--out`` folder.
"""

import argparse
import json
import pathlib
from typing import Any

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

import sb3_qsm.envs
from sb3_qsm import QSM
from sb3_qsm.common.inspection import mode_coverage, sample_actions
from sb3_qsm.envs.multimodal import MultiModalBandit
from sb3_qsm.plotting import plot_action_distribution

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"qsm": QSM, "sac": SAC, "td3": TD3}
N_SAMPLES, MIN_FRACTION = 2000, 0.1


def evaluate_samples(actions: np.ndarray, bandit: MultiModalBandit) -> dict[str, Any]:
    """Mode coverage and reward of a policy's samples."""
    coverage = mode_coverage(actions, bandit.modes, bandit.half_peak_radius, MIN_FRACTION)
    mean_reward = float(bandit.reward(actions).mean() / bandit.peak_reward)
    return {**coverage, "mean_reward_over_peak": mean_reward}


def run(algo: str, seed: int, steps: int, qsm_kwargs: dict[str, Any], out: pathlib.Path) -> dict[str, Any]:
    """Train one agent (or reuse its result file) and measure its samples."""
    path = out / f"{algo}_seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    env = gym.make(sb3_qsm.envs.MULTIMODAL_ENV_ID)
    kwargs = qsm_kwargs if algo == "qsm" else {}
    model = ALGORITHMS[algo]("MlpPolicy", env, seed=seed, **kwargs)
    model.learn(steps)
    obs, _ = env.reset(seed=seed)
    actions = sample_actions(model, obs, N_SAMPLES)
    bandit = env.unwrapped
    assert isinstance(bandit, MultiModalBandit)
    result = {"algo": algo, "seed": seed, "steps": steps, "kwargs": {k: repr(v) for k, v in kwargs.items()}}
    result |= {**evaluate_samples(actions, bandit), "actions": actions.tolist()}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def summary_table(results: list[dict[str, Any]]) -> str:
    lines = ["| Algorithm | Seed | Modes with >= 10% | Share at each mode | Outside every mode | Mean reward / peak |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        shares = ", ".join(f"{f:.0%}" for f in r["fractions"])
        lines.append(
            f"| {r['algo']} | {r['seed']} | {r['n_covered']} | {shares} | {r['outside']:.0%} "
            f"| {r['mean_reward_over_peak']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=list(ALGORITHMS), choices=list(ALGORITHMS))
    parser.add_argument("--qsm-kwargs", type=json.loads, default={}, help="QSM arguments, as JSON")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/multimodal/defaults"))
    args = parser.parse_args()
    th.set_num_threads(1)
    results = [run(algo, seed, args.steps, args.qsm_kwargs, args.out) for algo in args.algos for seed in args.seeds]
    bandit = gym.make(sb3_qsm.envs.MULTIMODAL_ENV_ID).unwrapped
    assert isinstance(bandit, MultiModalBandit)
    fig, axes = plt.subplots(len(args.algos), len(args.seeds), figsize=(3.2 * len(args.seeds), 3 * len(args.algos)))
    for ax, r in zip(np.atleast_2d(axes).flat, results, strict=True):
        title = f"{r['algo']} seed {r['seed']}: {r['n_covered']} modes, reward {r['mean_reward_over_peak']:.2f}"
        plot_action_distribution(np.array(r["actions"]), -1, 1, modes=bandit.modes, ax=ax, title=title)
    fig.tight_layout()
    fig.savefig(args.out / "comparison.png", dpi=90)
    table = summary_table(results)
    (args.out / "summary.md").write_text(table)
    print(table)
    print(f"Written to {args.out}")


if __name__ == "__main__":
    main()

"""
Evaluate zoo-layout agents (``<folder>/<algo>/<ENV>_<id>/<ENV>.zip``) with deterministic episodes and write the
result as ``evaluation.json`` next to each agent (or under ``--out``). The environment is built as the zoo's
``enjoy`` builds it, from the agent's saved ``config.yml`` and ``args.yml``.

    python examples/evaluate_zoo_agents.py --folder rl-trained-agents --algo qsm --episodes 10
"""

import argparse
import json
import pathlib

import numpy as np
import stable_baselines3
import torch as th
from rl_zoo3 import ALGOS, create_test_env, get_saved_hyperparams
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_qsm import __version__
from sb3_qsm.zoo import register


def evaluate_agent(run: pathlib.Path, algo: str, episodes: int, seed: int) -> dict:
    """
    :param run: The agent's folder (``<ENV>_<id>``)
    :param algo: Zoo algorithm name
    :param episodes: Number of deterministic episodes
    :param seed: Seed of the evaluation environment
    :return: The returns and their statistics
    """
    env_id = run.name.rsplit("_", 1)[0]
    stats_path = run / env_id
    hyperparams, _ = get_saved_hyperparams(str(stats_path), test_mode=True)
    env = create_test_env(
        env_id, n_envs=1, stats_path=str(stats_path), seed=seed, log_dir=None, should_render=False, hyperparams=hyperparams
    )
    custom_objects = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0}
    model = ALGOS[algo].load(run / f"{env_id}.zip", custom_objects=custom_objects, device="cpu", buffer_size=1)
    returns, _ = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True)
    return {
        "env": env_id,
        "algo": algo,
        "n_timesteps": model.num_timesteps,
        "episodes": episodes,
        "seed": seed,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": [float(value) for value in np.atleast_1d(returns)],
        "versions": {"sb3_qsm": __version__, "stable_baselines3": stable_baselines3.__version__, "torch": th.__version__},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=pathlib.Path, default=pathlib.Path("rl-trained-agents"))
    parser.add_argument("--algo", default="qsm")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=None, help="write <out>/<ENV>_<id>/evaluation.json instead")
    args = parser.parse_args()
    register(predict_only=True)
    for run in sorted(path for path in (args.folder / args.algo).iterdir() if path.is_dir()):
        result = evaluate_agent(run, args.algo, args.episodes, args.seed)
        target = run if args.out is None else args.out / run.name
        target.mkdir(parents=True, exist_ok=True)
        (target / "evaluation.json").write_text(json.dumps(result, indent=2))
        mean, std = result["mean_return"], result["std_return"]
        print(f"{args.algo} {result['env']}: {mean:.1f} +/- {std:.1f} ({args.episodes} episodes)")


if __name__ == "__main__":
    main()

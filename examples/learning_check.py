"""
Learning check (not a test): train QSM with its default settings on one environment for several seeds and report
the deterministic evaluation return of each at the end of training.

Each seed writes its own JSON result file; a seed whose file exists is skipped, so an interrupted run resumes.

    python examples/learning_check.py --env Pendulum-v1 --seeds 0 1 2 --steps 20000 --out benchmarks/learning_check
"""

import argparse
import json
import pathlib
import time

import gymnasium as gym
import torch as th
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_qsm import QSM, __version__


def run_seed(env_id: str, seed: int, steps: int, eval_episodes: int) -> dict:
    """
    Train QSM with default settings and evaluate it.

    :param env_id: Gymnasium environment id
    :param seed: Random seed
    :param steps: Environment steps to train for
    :param eval_episodes: Number of deterministic evaluation episodes
    :return: The result record
    """
    model = QSM("MlpPolicy", env_id, seed=seed)
    start = time.perf_counter()
    model.learn(steps)
    train_seconds = time.perf_counter() - start
    eval_env = Monitor(gym.make(env_id))
    eval_env.reset(seed=seed + 10_000)
    returns, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=eval_episodes, deterministic=True, return_episode_rewards=True
    )
    stochastic, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=eval_episodes, deterministic=False, return_episode_rewards=True
    )
    return {
        "env": env_id,
        "seed": seed,
        "steps": steps,
        "eval_episodes": eval_episodes,
        "deterministic_returns": [float(r) for r in returns],
        "deterministic_mean": float(sum(returns) / len(returns)),
        "stochastic_mean": float(sum(stochastic) / len(stochastic)),
        "train_seconds": train_seconds,
        "steps_per_second": steps / train_seconds,
        "sb3_qsm_version": __version__,
        "torch_version": th.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/learning_check"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        path = args.out / f"qsm_{args.env}_seed{seed}.json"
        if path.exists():
            print(f"{path} exists, skipping")
            continue
        result = run_seed(args.env, seed, args.steps, args.eval_episodes)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2))
        tmp.rename(path)
        print(f"seed {seed}: deterministic {result['deterministic_mean']:.1f}, stochastic {result['stochastic_mean']:.1f}")


if __name__ == "__main__":
    main()

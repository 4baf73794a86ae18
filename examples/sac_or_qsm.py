"""
The same training script for SAC or QSM: swapping one for the other is one word, the algorithm class.

    python examples/sac_or_qsm.py --algo qsm --env Pendulum-v1 --steps 20000 --seed 0
    python examples/sac_or_qsm.py --algo sac --env Pendulum-v1 --steps 20000 --seed 0
"""

import argparse

import gymnasium as gym
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_qsm import QSM

ALGOS: dict[str, type[SAC] | type[QSM]] = {"sac": SAC, "qsm": QSM}


def main(algo: str, env_id: str, steps: int, seed: int) -> None:
    """
    :param algo: ``"sac"`` or ``"qsm"``
    :param env_id: Gymnasium id of an environment with a ``Box`` action space
    :param steps: Environment steps to train for
    :param seed: Random seed (training and evaluation)
    """
    model = ALGOS[algo]("MlpPolicy", env_id, seed=seed, verbose=1)  # the only line that depends on --algo
    model.learn(total_timesteps=steps)

    eval_env = Monitor(gym.make(env_id))
    eval_env.reset(seed=seed + 1000)
    mean_reward, std_reward = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    print(f"{algo.upper()} on {env_id}: mean_reward={mean_reward:.2f} +/- {std_reward:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=list(ALGOS), default="qsm", help="Algorithm to train")
    parser.add_argument("--env", default="Pendulum-v1", help="Gymnasium environment id")
    parser.add_argument("--steps", type=int, default=20_000, help="Environment steps to train for")
    parser.add_argument("--seed", type=int, default=0, help="Random seed")
    args = parser.parse_args()
    main(args.algo, args.env, args.steps, args.seed)

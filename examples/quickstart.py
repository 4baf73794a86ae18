"""
Quickstart: train QSM on Pendulum-v1, save it, load it back and evaluate it.

    python examples/quickstart.py --steps 20000 --seed 0 --out qsm_pendulum
"""

import argparse

import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_qsm import QSM


def main(steps: int, seed: int, out: str) -> None:
    """
    :param steps: Environment steps to train for
    :param seed: Random seed (training and evaluation)
    :param out: Where to save the model (SB3 appends ``.zip``)
    """
    model = QSM("MlpPolicy", "Pendulum-v1", seed=seed)
    model.learn(total_timesteps=steps, progress_bar=True)
    model.save(out)
    del model

    # buffer_size=1: only predicting, so do not allocate the 1e6-transition replay buffer
    model = QSM.load(out, buffer_size=1)
    eval_env = Monitor(gym.make("Pendulum-v1"))
    eval_env.reset(seed=seed + 1000)
    mean_reward, std_reward = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    print(f"mean_reward={mean_reward:.2f} +/- {std_reward:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000, help="Environment steps to train for")
    parser.add_argument("--seed", type=int, default=0, help="Random seed")
    parser.add_argument("--out", default="qsm_pendulum", help="Path of the saved model (without .zip)")
    args = parser.parse_args()
    main(args.steps, args.seed, args.out)

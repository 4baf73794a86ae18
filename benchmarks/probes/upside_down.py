"""
How much of HalfCheetah-v5's time the cheetah spends on its back (the torso's pitch ``cos(rooty) < 0``, ``rooty``
being the observation's second entry), per 1,000-step episode. Running on its back is HalfCheetah's best-known local
optimum (about 1,000-1,500 at 50,000-100,000 steps); once most of the replay is upside down, the critics learn that
regime and the policy stays in it. Three ways to call it:

- ``buffer PATH``: the replay buffer of a runner checkpoint (``replay_buffer.pkl.gz``), episode by episode;
- ``policy PATH``: one deterministic episode (seed 0) of a saved QSM model (a runner checkpoint's ``model.zip``): its
  return and the fraction upside down;
- ``train ALGO ARGUMENTS STEPS SEEDS``: trains ``ALGO`` (``qsm`` or ``sac``, one torch thread) with the JSON
  ``ARGUMENTS`` for ``STEPS`` steps on each of the comma-separated ``SEEDS`` and prints its replay's episodes, one
  JSON line per seed;
- ``explore KIND``: 3,000 steps of exploration alone on seeds 0-2, with ``KIND`` one of ``qsm`` (the untrained
  policy's sampler, as it explores), ``uniform`` (SB3's warm-up), ``bangbang`` (the signs of uniform actions) and
  ``gauss`` (a normal of standard deviation 0.8, clipped).

    python benchmarks/probes/upside_down.py train qsm '{}' 5000 0,1,2
"""

import json
import sys

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import SAC

from sb3_qsm import QSM
from sb3_qsm.common.checkpoint import read_pickle_file

EPISODE = 1000


def flipped(observations: np.ndarray) -> np.ndarray:
    """:return: Whether the torso is upside down at each of ``observations`` (its pitch ``rooty``, entry 1)"""
    return np.cos(observations[:, 1]) < 0


def upside_down(observations: np.ndarray) -> list[float]:
    """:return: The fraction of steps with the torso upside down, per 1,000-step episode of ``observations``"""
    steps = flipped(observations)
    return [round(float(steps[start : start + EPISODE].mean()), 2) for start in range(0, len(steps), EPISODE)]


def lag1_correlation(actions: np.ndarray) -> float:
    """:return: The correlation of consecutive values of the first action coordinate (pink noise: about 0.7)"""
    return round(float(np.corrcoef(actions[:-1, 0], actions[1:, 0])[0, 1]), 2)


def from_buffer(path: str) -> None:
    buffer = read_pickle_file(path, "replay buffer")
    size = buffer.buffer_size if buffer.full else buffer.pos
    print(json.dumps({"buffer": path, "upside_down_per_episode": upside_down(buffer.observations[:size, 0])}))


def deterministic_episode(model: QSM) -> tuple[np.ndarray, float]:
    """
    :param model: A model trained on HalfCheetah-v5
    :return: The observations of one deterministic episode (seed 0), the reset's first, and its return
    """
    env = gym.make("HalfCheetah-v5")
    observation, _ = env.reset(seed=0)
    visited, episode_return, done = [observation], 0.0, False
    while not done:
        action, _ = model.predict(observation, deterministic=True)
        observation, reward, terminated, truncated, _ = env.step(action)
        visited.append(observation)
        episode_return += float(reward)
        done = terminated or truncated
    return np.array(visited), episode_return


def from_policy(path: str) -> None:
    observations, episode_return = deterministic_episode(QSM.load(path, buffer_size=1, device="cpu"))
    line = {"policy": path, "return": round(episode_return, 1), "upside_down": upside_down(observations[1:])[0]}
    print(json.dumps(line))


def from_training(algo: str, arguments: dict, steps: int, seeds: list[int]) -> None:
    for seed in seeds:
        model = {"qsm": QSM, "sac": SAC}[algo]("MlpPolicy", gym.make("HalfCheetah-v5"), seed=seed, **arguments)
        model.learn(steps)
        observations, actions = model.replay_buffer.observations[:steps, 0], model.replay_buffer.actions[:steps, 0]
        line = {"algo": algo, "arguments": arguments, "seed": seed, "upside_down_per_episode": upside_down(observations)}
        print(json.dumps({**line, "lag1": lag1_correlation(actions)}), flush=True)


def from_exploration(kind: str, steps: int = 3000) -> None:
    fractions = []
    for seed in range(3):
        env = gym.make("HalfCheetah-v5")
        if kind == "qsm":
            # No gradient step: the untrained policy's sampler explores from the first step
            model = QSM("MlpPolicy", env, seed=seed, learning_starts=0, gradient_steps=0)
            model.learn(steps)
            observations = model.replay_buffer.observations[:steps, 0]
        else:
            rng = np.random.default_rng(seed)
            observation, _ = env.reset(seed=seed)
            visited = []
            for _ in range(steps):
                action = rng.uniform(-1.0, 1.0, size=env.action_space.shape)
                if kind == "bangbang":
                    action = np.sign(action)
                elif kind == "gauss":
                    action = np.clip(rng.normal(0.0, 0.8, size=env.action_space.shape), -1.0, 1.0)
                observation, _, terminated, truncated, _ = env.step(action)
                visited.append(observation)
                if terminated or truncated:
                    observation, _ = env.reset()
            observations = np.array(visited)
        fractions.append(round(float(flipped(observations).mean()), 2))
    print(json.dumps({"explore": kind, "seeds": [0, 1, 2], "upside_down": fractions}))


def main() -> None:
    th.set_num_threads(1)
    mode = sys.argv[1]
    if mode == "buffer":
        from_buffer(sys.argv[2])
    elif mode == "policy":
        from_policy(sys.argv[2])
    elif mode == "train":
        from_training(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), [int(seed) for seed in sys.argv[5].split(",")])
    elif mode == "explore":
        from_exploration(sys.argv[2])
    else:
        raise ValueError(f"mode must be buffer, policy, train or explore, got {mode!r}")


if __name__ == "__main__":
    main()

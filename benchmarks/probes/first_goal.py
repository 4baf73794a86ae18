"""
When does QSM first reach MountainCarContinuous-v0's goal? Trains one seed with the given QSM arguments, one torch
thread, and stops at the first training episode of positive return (the goal's +100 outweighs any action cost).
Prints one JSON line: the arguments, the seed, the step of the first goal (null if none within the budget) and the
training episodes' returns.

    python benchmarks/probes/first_goal.py '{"sampler_noise_color": 1.0, "q_spread_floor": 0.1}' 0 20000

The key ``"pink_action_noise"`` (not a QSM argument) adds pink action noise of that standard deviation to the
policy's actions while collecting data (``action_noise``: pink-noise-rl's ``PinkActionNoise``, one series per episode
of 999 steps, seeded with the run's seed). The key ``"variant"`` (not a QSM argument either) patches QSM as that variant of
``target_variants.py`` does (e.g. ``"tqc-2"``, TQC's critics):

    python benchmarks/probes/first_goal.py '{"variant": "tqc-2"}' 0 50000
"""

import json
import sys
import time

import numpy as np
import torch as th
from pink import PinkActionNoise
from stable_baselines3.common.callbacks import BaseCallback
from target_variants import with_variant

from sb3_qsm import QSM


class FirstGoal(BaseCallback):
    """Records the training episodes' returns; stops training at the first positive one."""

    def __init__(self) -> None:
        super().__init__()
        self.returns: list[float] = []
        self.found: int | None = None

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.returns.append(round(float(info["episode"]["r"]), 1))
                if info["episode"]["r"] > 0 and self.found is None:
                    self.found = self.num_timesteps
        return self.found is None


def main() -> None:
    kwargs, seed, budget = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    th.set_num_threads(1)
    arguments = dict(kwargs)
    if "pink_action_noise" in arguments:
        sigma = arguments.pop("pink_action_noise")
        arguments["action_noise"] = PinkActionNoise(sigma, 999, 1, rng=np.random.default_rng(seed))
    if "variant" in arguments:
        arguments = with_variant(arguments.pop("variant"), arguments)
    model = QSM("MlpPolicy", "MountainCarContinuous-v0", seed=seed, **arguments)
    callback, start = FirstGoal(), time.time()
    model.learn(budget, callback=callback)
    minutes = round((time.time() - start) / 60, 1)
    record = dict(kwargs=kwargs, seed=seed, budget=budget, found=callback.found, returns=callback.returns)
    print(json.dumps({**record, "minutes": minutes}))


if __name__ == "__main__":
    main()

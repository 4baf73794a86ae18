"""
How large are the critics' preferences between actions, next to the other scales of the critic? Trains QSM at its
defaults (one seed, one torch thread) and every ``every`` steps prints one JSON line, from a replay batch of 256:

- ``spread_u``: the standard deviation of Q over 32 uniform actions per observation, averaged over the batch (what
  the posterior target's spread measures at its noisy steps, where its candidates are nearly uniform);
- ``spread_pol``: the same over 8 of the policy's own samples; ``pol_std``: those samples' standard deviation;
- ``disagree``: the mean ``|Q_1 - Q_2|`` over the uniform actions; ``q_abs``, ``q_state_std``: the mean and the
  standard deviation over the batch of Q at the replay actions; ``td_rms``: the root mean square TD error;
  ``rew_std``: the standard deviation of the batch's rewards; ``ret``: the mean of the last 5 training episodes.

    python benchmarks/probes/critic_scales.py MountainCarContinuous-v0 15000 1000 '{}'
"""

import json
import sys

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor

import sb3_qsm.envs  # noqa: F401  (registers the bandit)
from sb3_qsm import QSM
from sb3_qsm.benchmarks.suite import make_env
from sb3_qsm.common.critics import candidate_q_values


class CriticScales(BaseCallback):
    """Measures the scales every ``every`` steps after learning starts."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every
        self.returns: list[float] = []

    def _on_step(self) -> bool:
        self.returns += [float(info["episode"]["r"]) for info in self.locals["infos"] if "episode" in info]
        model = self.model
        assert isinstance(model, QSM)
        if self.num_timesteps % self.every == 0 and self.num_timesteps > model.learning_starts:
            print(json.dumps(scales(model, self.returns)), flush=True)
        return True


def scales(model: QSM, returns: list[float]) -> dict[str, float | int | None]:
    """:return: The scales of the docstring, rounded"""
    with th.no_grad():
        data = model.replay_buffer.sample(256)  # type: ignore[union-attr]
        observations, actions = data.observations, data.actions
        uniform = th.rand(actions.shape[0], 32, actions.shape[1]) * 2 - 1
        q_uniform = candidate_q_values(model.critic, observations, uniform)
        policy = th.stack([model.policy._predict(observations) for _ in range(8)], dim=1).float()
        q_policy = candidate_q_values(model.critic, observations, policy.clamp(-1, 1)).mean(dim=-1)
        q_replay = candidate_q_values(model.critic, observations, actions.unsqueeze(1)).mean(dim=-1).squeeze(1)
        target = model._critic_target(data.next_observations, data.rewards, data.dones, model.gamma)[0].squeeze(1)
        values = {
            "spread_u": q_uniform.mean(dim=-1).std(dim=1).mean(),
            "spread_pol": q_policy.std(dim=1).mean(),
            "pol_std": policy.std(dim=1).mean(),
            "disagree": (q_uniform[..., 0] - q_uniform[..., 1]).abs().mean(),
            "q_abs": q_replay.abs().mean(),
            "q_state_std": q_replay.std(),
            "td_rms": (q_replay - target).pow(2).mean().sqrt(),
            "rew_std": data.rewards.std(),
        }
    row: dict[str, float | int | None] = {"t": model.num_timesteps}
    row |= {key: round(value.item(), 4) for key, value in values.items()}
    row["ret"] = round(float(np.mean(returns[-5:])), 2) if returns else None
    return row


def main() -> None:
    env_id, steps, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    kwargs = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    th.set_num_threads(1)
    # The environment as the suites build it (a DeepMind Control task's observations flattened)
    QSM("MlpPolicy", Monitor(make_env(env_id)), seed=0, **kwargs).learn(steps, callback=CriticScales(every))


if __name__ == "__main__":
    main()

"""
Does QSM's deterministic policy act as far out in the box as its critics would have it, and are the critics right?
Reads a runner checkpoint (a folder with ``model.zip`` and ``replay_buffer.pkl.gz``, as
``benchmarks/results/<suite>/.checkpoints/<env>/<algo>_seed<n>/`` holds while a run is in progress; copy it first,
the runner replaces it) and prints, over the observations of the last 2,000 replay entries:

- ``det_abs``, ``det_saturated``: the mean ``|a|`` of the deterministic actions and the fraction of their
  coordinates beyond 0.9 (the replay actions' likewise: ``replay_abs``, ``replay_saturated``);
- ``sample_std``: the standard deviation of 8 of the policy's samples per coordinate;
- the critics' mean value at the deterministic action, at ``1.3`` times it (clipped), at its signs, and after 50
  Adam steps (lr 0.05) of ascent on the smaller critic from it (``q_ascent``, with ``ascent_abs``);
- then the returns of 3 episodes (seeds 100-102) acting with the deterministic action refined by ``k`` steps of that
  ascent at every environment step, for each ``(k, lr)`` of ``REFINEMENTS``: whether the critics' preference for
  larger actions is worth acting on.

    python benchmarks/probes/saturation.py /tmp/checkpoint HalfCheetah-v5
"""

import json
import sys

import gymnasium as gym
import numpy as np
import torch as th

from sb3_qsm import QSM
from sb3_qsm.common.critics import q_values

# (steps of ascent, Adam learning rate) of the refined actions; (0, 0) is the policy's own deterministic action
REFINEMENTS = ((0, 0.0), (10, 0.02), (10, 0.05), (20, 0.05))


def ascend(model: QSM, observations: th.Tensor, actions: th.Tensor, steps: int, lr: float) -> th.Tensor:
    """:return: The actions after ``steps`` Adam steps of ascent on the smaller critic's value, kept in the box"""
    actions = actions.clone().requires_grad_(True)
    optimizer = th.optim.Adam([actions], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (-q_values(model.critic, observations, actions).min(dim=1).values.sum()).backward()
        optimizer.step()
        with th.no_grad():
            actions.clamp_(-1.0, 1.0)
    return actions.detach()


def scales(model: QSM) -> dict[str, float]:
    """:return: The statistics of the deterministic actions and of the critics' values around them"""
    buffer = model.replay_buffer
    assert buffer is not None
    rows = np.arange(max(0, buffer.pos - 2000), buffer.pos)
    observations = th.as_tensor(buffer.observations[rows, 0], dtype=th.float32)
    replay = np.abs(buffer.actions[rows, 0])
    with th.no_grad():
        deterministic = model.actor.sample(observations, deterministic=True)
        samples = th.stack([model.actor.sample(observations) for _ in range(8)], dim=1)

        def value(actions: th.Tensor) -> float:
            return round(q_values(model.critic, observations, actions).mean().item(), 3)

        values = dict(q_det=value(deterministic), q_scaled=value((1.3 * deterministic).clamp(-1, 1)))
        values["q_sign"] = value(deterministic.sign())
    ascended = ascend(model, observations, deterministic, 50, 0.05)
    with th.no_grad():
        values["q_ascent"] = value(ascended)
    return dict(
        t=model.num_timesteps,
        det_abs=round(deterministic.abs().mean().item(), 3),
        det_saturated=round((deterministic.abs() > 0.9).float().mean().item(), 3),
        replay_abs=round(float(replay.mean()), 3),
        replay_saturated=round(float((replay > 0.9).mean()), 3),
        sample_std=round(samples.std(dim=1).mean().item(), 3),
        **values,
        ascent_abs=round(ascended.abs().mean().item(), 3),
    )


def refined_returns(model: QSM, env_id: str, steps: int, lr: float) -> list[float]:
    """:return: The returns of 3 episodes acting with the deterministic action refined by ``steps`` of ascent"""
    env = gym.make(env_id)
    returns = []
    for episode in range(3):
        observation, _ = env.reset(seed=100 + episode)
        done, total = False, 0.0
        while not done:
            observations = th.as_tensor(observation[None], dtype=th.float32)
            with th.no_grad():
                action = model.actor.sample(observations, deterministic=True)
            action = ascend(model, observations, action, steps, lr)
            observation, reward, terminated, truncated, _ = env.step(model.policy.unscale_action(action.numpy())[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(round(total, 1))
    return returns


def main() -> None:
    folder, env_id = sys.argv[1], sys.argv[2]
    th.set_num_threads(1)
    model = QSM.load(f"{folder}/model.zip", device="cpu")
    model.load_replay_buffer(f"{folder}/replay_buffer.pkl.gz")
    print(json.dumps(scales(model)), flush=True)
    for steps, lr in REFINEMENTS:
        print(json.dumps(dict(steps=steps, lr=lr, returns=refined_returns(model, env_id, steps, lr))), flush=True)


if __name__ == "__main__":
    main()

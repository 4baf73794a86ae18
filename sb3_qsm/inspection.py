"""
Look inside a trained policy: the actions it takes for one observation, the denoising chains that produce them, and
how many of a task's known modes those actions cover. Works with any SB3 algorithm through ``predict``; the chains
are QSM's alone. The figures are drawn by ``sb3_qsm.plotting``.
"""

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_qsm.common.utils import map_observations, repeat_rows
from sb3_qsm.qsm.policies import DiffusionActorPolicy


def repeat_observation(observation: np.ndarray | dict[str, np.ndarray], n: int) -> np.ndarray | dict[str, np.ndarray]:
    """
    :param observation: One observation (not batched); a dict for ``Dict`` observation spaces
    :param n: Number of copies
    :return: A batch of ``n`` copies
    """
    return repeat_rows(map_observations(lambda value: np.asarray(value)[None], observation), n)


def sample_actions(
    model: BaseAlgorithm, observation: np.ndarray | dict[str, np.ndarray], n_samples: int = 2000, deterministic: bool = False
) -> np.ndarray:
    """
    The actions an agent takes for one observation, ``n_samples`` times, through ``model.predict`` (so in the action
    space's units, as the environment receives them).

    For QSM and SAC, ``deterministic=False`` draws from the policy; TD3's policy is deterministic (its exploration
    noise is added only while collecting data), so all its samples are the same action.

    :param model: A trained agent (QSM, SAC, TD3, ...)
    :param observation: One observation, not batched
    :param n_samples: Number of actions to draw
    :param deterministic: Whether to use the deterministic action
    :return: Actions, shape ``(n_samples, action_dim)``
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    actions, _ = model.predict(repeat_observation(observation, n_samples), deterministic=deterministic)  # type: ignore[arg-type]
    return np.asarray(actions).reshape(n_samples, -1)


def denoising_trajectories(
    model: BaseAlgorithm, observation: np.ndarray | dict[str, np.ndarray], n_samples: int = 100, deterministic: bool = False
) -> np.ndarray:
    """
    The reverse diffusion chains of a QSM policy for one observation, from the noise ``x_T`` to the actions.

    :param model: A QSM agent
    :param observation: One observation, not batched
    :param n_samples: Number of chains
    :param deterministic: Run the deterministic chain (zero start, no injected noise): all chains are then the same
    :return: Shape ``(T + 1, n_samples, action_dim)``, in the action space's units (intermediate samples of an
        unclipped sampler may lie outside the bounds)
    """
    policy = model.policy
    if not isinstance(policy, DiffusionActorPolicy):
        raise TypeError(f"Denoising chains exist only for QSM policies, not for {type(policy).__name__}")
    obs_tensor, _ = policy.obs_to_tensor(repeat_observation(observation, n_samples))  # type: ignore[arg-type]
    trajectory: list[th.Tensor] = []
    with th.no_grad():
        policy.actor.sample(obs_tensor, deterministic=deterministic, trajectory=trajectory)
    chains = th.stack(trajectory).cpu().numpy()
    return policy.unscale_action(chains)


def mode_coverage(actions: np.ndarray, modes: np.ndarray, radius: float, min_fraction: float = 0.1) -> dict[str, Any]:
    """
    How a set of actions spreads over known modes: each action counts for its nearest mode if it lies within
    ``radius`` of it.

    :param actions: Actions, shape ``(n, action_dim)``
    :param modes: Mode centres, shape ``(n_modes, action_dim)``
    :param radius: Largest distance at which an action counts for a mode
    :param min_fraction: Share of the actions a mode needs to count as covered
    :return: ``fractions`` (share of the actions at each mode), ``n_covered`` (modes holding at least
        ``min_fraction``) and ``outside`` (share of the actions near no mode)
    """
    actions, modes = np.asarray(actions, dtype=np.float64), np.asarray(modes, dtype=np.float64)
    if actions.ndim != 2 or modes.ndim != 2 or actions.shape[1] != modes.shape[1]:
        raise ValueError(f"actions {actions.shape} and modes {modes.shape} must be 2-D with the same action dimension")
    distances = np.linalg.norm(actions[:, None, :] - modes[None], axis=-1)
    nearest, within = distances.argmin(axis=1), distances.min(axis=1) <= radius
    fractions = np.array([np.mean(within & (nearest == k)) for k in range(len(modes))])
    return {
        "fractions": fractions.tolist(),
        "n_covered": int((fractions >= min_fraction).sum()),
        "outside": float(1.0 - within.mean()),
    }

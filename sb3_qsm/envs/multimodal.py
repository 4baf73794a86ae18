"""A one-step control task whose best actions form several separated, equally good modes."""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def default_modes(action_dim: int) -> np.ndarray:
    """The corners of the cube ``[-0.5, 0.5]^action_dim``: ``2^action_dim`` modes, each 1 apart from its neighbours."""
    grid = np.stack(np.meshgrid(*[[-0.5, 0.5]] * action_dim, indexing="ij"), axis=-1)
    return grid.reshape(-1, action_dim)


class MultiModalBandit(gym.Env):
    """
    A one-step task (a bandit with a constant observation) whose reward has several equally high peaks: a policy
    that earns the most can pick any of them, and a policy that keeps several is as good as one that keeps one.

    The action lies in ``[-1, 1]^action_dim``. The reward is ``r(a) = max_k exp(-||a - c_k||^2 / (2 width^2))``: 1
    at each mode ``c_k``, falling off with the distance to the nearest one. By default, in 2 dimensions, the modes are
    the four points ``(+-0.5, +-0.5)`` and ``width`` is 0.15, so a uniformly random action earns about 0.14 on average
    and the peaks are far apart compared to their width (a Gaussian policy centred between two peaks earns about 0).
    Every episode is one step long and ends with ``terminated=True``.

    :param action_dim: Dimension of the action space
    :param modes: Mode centres, shape ``(n_modes, action_dim)``, inside ``[-1, 1]``; default: ``default_modes``
    :param width: Width of each peak
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (declared so by gymnasium.Env)

    def __init__(self, action_dim: int = 2, modes: np.ndarray | None = None, width: float = 0.15):
        if action_dim < 1:
            raise ValueError(f"action_dim must be at least 1, got {action_dim}")
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.modes = default_modes(action_dim) if modes is None else np.asarray(modes, dtype=np.float64)
        if self.modes.ndim != 2 or self.modes.shape[1] != action_dim or np.abs(self.modes).max() > 1:
            raise ValueError(f"modes must have shape (n_modes, {action_dim}) and lie in [-1, 1], got {self.modes}")
        self.width = width
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
        self.peak_reward = 1.0

    @property
    def half_peak_radius(self) -> float:
        """Distance from a mode at which the reward falls to half the peak: ``width * sqrt(2 ln 2)``."""
        return self.width * float(np.sqrt(2 * np.log(2)))

    def reward(self, actions: np.ndarray) -> np.ndarray:
        """
        :param actions: Actions, shape ``(n, action_dim)``
        :return: Their rewards, shape ``(n,)``
        """
        squared = ((np.asarray(actions)[:, None, :] - self.modes[None]) ** 2).sum(axis=-1)
        return np.exp(-squared / (2 * self.width**2)).max(axis=1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode: the observation is always zero."""
        super().reset(seed=seed)
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Reward the action (clipped to the bounds) and end the episode."""
        reward = float(self.reward(np.clip(action, -1.0, 1.0)[None])[0])
        return np.zeros(1, dtype=np.float32), reward, True, False, {}

"""
How QSM collects data past its warm-up: with ``sampler_noise_color > 0``, the sampler's noise (the chain's start and
injected noise) is the next step of a colored noise series per environment rather than white noise, so that
successive actions push in one direction for a while (Eberhard et al., "Pink Noise Is All You Need", ICLR 2023).
"""

import numpy as np
import torch as th
from pink import ColoredNoiseProcess
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from sb3_qsm.qsm.actor import DiffusionActor
from sb3_qsm.qsm.arguments import time_limit
from sb3_qsm.qsm.policies import DiffusionActorPolicy

# Length of the colored noise series of the sampler when the environment has no episode length limit
DEFAULT_NOISE_HORIZON = 1000


class ColoredSamplerNoise(OffPolicyAlgorithm):
    """
    QSM's choice of the actions to collect data with, and the colored noise series behind them (``sampler_noise_color``,
    set by ``QSM.__init__``, documented there). Not an algorithm of its own: ``QSM`` is.
    """

    policy: DiffusionActorPolicy
    actor: DiffusionActor
    sampler_noise_color: float
    _colored_noise: ColoredNoiseProcess | None

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        SB3's choice of the actions to collect data with (see ``OffPolicyAlgorithm._sample_action``); past
        ``learning_starts`` and with ``sampler_noise_color > 0``, the sampler's noise is the next step of the colored
        noise series (see ``sampler_noise_color``).
        """
        if self.sampler_noise_color == 0 or self.num_timesteps < learning_starts or not self.policy.acts_with_sampler:
            return super()._sample_action(learning_starts, action_noise, n_envs)
        with self.policy.exploration_noise(self._next_sampler_noise(n_envs)):
            return super()._sample_action(learning_starts, action_noise, n_envs)

    def _next_sampler_noise(self, n_envs: int) -> th.Tensor:
        """
        :param n_envs: Number of environments
        :return: The next step of the colored noise series, one per environment and coordinate of the sampler's
            noise, shape ``(n_envs, T, action_dim)`` (see ``DiffusionActor.sample``)
        """
        shape = (n_envs, self.actor.n_diffusion_steps, self.actor.action_dim)
        process = self._colored_noise
        if process is None or process.size[0] != n_envs or process.beta != self.sampler_noise_color:
            size = (n_envs, shape[1] * shape[2], self._episode_horizon())
            rng = np.random.default_rng(self.seed)
            process = self._colored_noise = ColoredNoiseProcess(beta=self.sampler_noise_color, size=size, rng=rng)
        noise = process.sample()
        return th.as_tensor(noise, dtype=th.float32, device=self.device).view(shape)

    def _episode_horizon(self) -> int:
        """:return: The training environment's episode length limit, or ``DEFAULT_NOISE_HORIZON`` if it has none"""
        assert self.env is not None
        return time_limit(self.env) or DEFAULT_NOISE_HORIZON

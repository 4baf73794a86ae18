"""The diffusion actor of QSM: a noise-prediction network over observation features and its DDPM sampler."""

from collections.abc import Callable
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn

from sb3_qsm.common.diffusion import DiffusionSchedule
from sb3_qsm.common.policies import BoundedActionPolicy
from sb3_qsm.common.schedules import check_sampler, check_sampler_temperature
from sb3_qsm.common.torch_layers import Denoiser

# Constructor arguments of the diffusion actor and policy that files saved before they existed lack, with the value
# those files were trained with
ARGUMENTS_OF_OLDER_FILES: dict[str, Any] = {"sampler": "reference"}


class DiffusionActor(BoundedActionPolicy):
    """
    Diffusion actor for QSM: a noise-prediction network ``eps_theta(s, a_t, t)`` and its DDPM sampler.

    The actor owns the diffusion settings: ``n_diffusion_steps`` and ``beta_schedule`` are those of its ``schedule``
    (fixed once built: the denoiser is trained for them), ``sampler_temperature`` and ``sampler`` may be changed at
    any time (they are checked when set). The algorithm and the policy read them from here.

    Sampling extracts the observation features once and then runs ``T`` denoiser calls on the whole batch.
    With ``deterministic=True`` the chain starts at ``x_T = 0`` and injects no noise, so the action is a pure
    function of the observation and the weights; otherwise ``x_T ~ N(0, I)`` and the noise comes from torch's
    global random number generator (seeded by ``set_random_seed``).

    :param observation_space: Observation space
    :param action_space: Action space (a ``Box``)
    :param net_arch: Hidden layer sizes of the denoiser MLP
    :param features_extractor: Network to extract features
    :param features_dim: Number of features
    :param activation_fn: Activation function of the denoiser
    :param n_diffusion_steps: Number of diffusion steps ``T``
    :param beta_schedule: Noise schedule: ``"cosine"``, ``"vp"`` or ``"linear"``
    :param sampler_temperature: Scale of the noise the sampler injects at each step
    :param clip_sampler: Keep the chain in ``[-1, 1]``: clip each step's estimate of the clean action
        (``sampler="posterior"``) or the sample after every step (``sampler="reference"``, as the reference does)
    :param time_embed_dim: Number of Fourier features of the time index
    :param time_net_arch: Layer sizes of the MLP applied to the Fourier features
    :param action_fan_in_init: Initialise the denoiser's first-layer weights on the noisy action by the action's
        own fan-in (see ``Denoiser``; not in the reference)
    :param sampler: How each reverse step moves and what noise it adds (see ``DiffusionSchedule.sample``)
    :param normalize_images: Whether to normalize images or not, dividing by 255.0
    """

    arguments_of_older_files = ARGUMENTS_OF_OLDER_FILES

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module],
        n_diffusion_steps: int,
        beta_schedule: str,
        sampler_temperature: float,
        clip_sampler: bool,
        time_embed_dim: int,
        time_net_arch: list[int],
        action_fan_in_init: bool,
        sampler: str,
        normalize_images: bool = True,
    ):
        super().__init__(
            observation_space,
            action_space,
            features_extractor=features_extractor,
            normalize_images=normalize_images,
            squash_output=True,
        )
        self.net_arch = net_arch
        self.features_dim = features_dim
        self.activation_fn = activation_fn
        self.sampler_temperature = sampler_temperature
        self.sampler = sampler
        self.clip_sampler = clip_sampler
        self.time_embed_dim = time_embed_dim
        self.time_net_arch = time_net_arch
        self.action_fan_in_init = action_fan_in_init
        self.action_dim = get_action_dim(self.action_space)
        self.schedule = DiffusionSchedule(n_diffusion_steps, beta_schedule)
        self._compiled_sample: Callable[[PyTorchObs, bool, None, int | None, th.Tensor | None], th.Tensor] | None = None
        self.denoiser = Denoiser(
            features_dim,
            self.action_dim,
            net_arch,
            activation_fn,
            time_embed_dim=time_embed_dim,
            time_net_arch=time_net_arch,
            action_fan_in_init=action_fan_in_init,
        )

    @property
    def n_diffusion_steps(self) -> int:
        """Number of diffusion steps ``T`` of the sampler (fixed: the denoiser is trained for it)."""
        return self.schedule.n_diffusion_steps

    @property
    def beta_schedule(self) -> str:
        """Name of the noise schedule (fixed: the denoiser is trained for it)."""
        return self.schedule.beta_schedule

    @property
    def sampler_temperature(self) -> float:
        """Scale of the noise the sampler injects at each reverse step; may be changed at any time."""
        return self._sampler_temperature

    @sampler_temperature.setter
    def sampler_temperature(self, value: float) -> None:
        check_sampler_temperature(value)
        self._sampler_temperature = value

    @property
    def sampler(self) -> str:
        """How each reverse step moves and what noise it adds (see ``DiffusionSchedule.sample``); may be changed."""
        return self._sampler

    @sampler.setter
    def sampler(self, value: str) -> None:
        check_sampler(value)
        self._sampler = value

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                net_arch=self.net_arch,
                features_dim=self.features_dim,
                activation_fn=self.activation_fn,
                features_extractor=self.features_extractor,
                **self.diffusion_settings(),
            )
        )
        return data

    def diffusion_settings(self) -> dict[str, Any]:
        """
        :return: The actor's diffusion and sampler settings as they are now, under the names of the
            ``DiffusionActorPolicy`` arguments that set them
        """
        return dict(
            n_diffusion_steps=self.n_diffusion_steps,
            beta_schedule=self.beta_schedule,
            sampler_temperature=self.sampler_temperature,
            sampler=self.sampler,
            clip_sampler=self.clip_sampler,
            time_embed_dim=self.time_embed_dim,
            time_net_arch=self.time_net_arch,
            action_fan_in_init=self.action_fan_in_init,
        )

    def predict_noise(self, obs: PyTorchObs, noisy_actions: th.Tensor, timesteps: th.Tensor) -> th.Tensor:
        """
        Predict the noise ``eps_theta(s, a_t, t)`` for a batch with one time index per sample: the prediction that
        denoising score matching regresses (with the noise of ``schedule.sample_noisy_actions`` as its target, or
        a target built from the critics).

        :param obs: Observations (a batch)
        :param noisy_actions: ``a_t`` in the normalised action space, shape ``(batch, action_dim)``
        :param timesteps: 0-based time indices, shape ``(batch,)``, integer
        :return: Predicted noise, shape ``(batch, action_dim)``
        """
        features = self.extract_features(obs, self.features_extractor)
        return self.denoiser(features, noisy_actions, timesteps, self.n_diffusion_steps)

    def sample(
        self,
        obs: PyTorchObs,
        deterministic: bool = False,
        trajectory: list[th.Tensor] | None = None,
        n_steps: int | None = None,
        noise: th.Tensor | None = None,
    ) -> th.Tensor:
        """
        Draw actions in ``[-1, 1]`` with the reverse diffusion process (compiled after ``compile_sampler``, unless a
        trajectory is asked for).

        :param obs: Observations (a batch)
        :param deterministic: Start from ``x_T = 0`` and inject no noise (no random draw at all)
        :param trajectory: If given, the samples of the chain, from ``x_T`` to the actions, are appended to it
            (normalised space)
        :param n_steps: Number of reverse steps: all ``T`` (None), or fewer, on a strided subset of the time indices
            (see ``DiffusionSchedule.sample``)
        :param noise: The chain's standard normal noise, shape ``(batch, n_steps, action_dim)``: the start ``x_T``,
            then the noise injected at each reverse step but the last; None draws it from PyTorch's generator.
            Ignored with ``deterministic=True``
        :return: Actions in the normalised space ``[-1, 1]``, shape ``(batch, action_dim)``
        """
        if trajectory is None and self._compiled_sample is not None:
            return self._compiled_sample(obs, deterministic, None, n_steps, noise)
        return self._sample(obs, deterministic, trajectory, n_steps, noise)

    def _sample(
        self,
        obs: PyTorchObs,
        deterministic: bool,
        trajectory: list[th.Tensor] | None = None,
        n_steps: int | None = None,
        noise: th.Tensor | None = None,
    ) -> th.Tensor:
        features = self.extract_features(obs, self.features_extractor)
        # Features and time codes enter the first layer once per call, not once per step
        condition = self.denoiser.condition(features, self.n_diffusion_steps)
        shape = (features.shape[0], self.action_dim)
        if deterministic:
            x, noise = features.new_zeros(shape), None
        elif noise is None:
            x = th.randn(shape, device=features.device, dtype=features.dtype)
        else:
            x, noise = noise[:, 0], noise[:, 1:]

        def denoise(x_t: th.Tensor, t: int) -> th.Tensor:
            return self.denoiser.forward_conditioned(x_t, condition[t])

        return self.schedule.sample(
            denoise,
            x,
            temperature=self.sampler_temperature,
            clip=self.clip_sampler,
            deterministic=deterministic,
            trajectory=trajectory,
            n_steps=n_steps,
            step_noise=noise,
            sampler=self.sampler,
        )

    def compile_sampler(self, **compile_kwargs: Any) -> None:
        """
        Compile ``sample`` (the features, the reverse chain and its noise) with ``torch.compile``; ``QSM(compile=True)``
        does it, with options under which the noise comes from PyTorch's generator, as in the eager sampler
        (``sb3_qsm.common.compilation.compile_options``).

        :param compile_kwargs: Keyword arguments for ``torch.compile``
        """
        self._compiled_sample = th.compile(self._sample, **compile_kwargs)

    def __getstate__(self) -> dict[str, Any]:
        # A compiled sampler is bound to this actor and cannot be pickled: a copy samples eagerly until compiled again
        return {**self.__dict__, "_compiled_sample": None}

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.sample(obs, deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.sample(observation, deterministic)

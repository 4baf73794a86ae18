"""Policies for QSM: a diffusion actor (:class:`~sb3_qsm.qsm.actor.DiffusionActor`) paired with sb3-contrib's TQC
``Critic`` (or SB3's ``ContinuousCritic``, or sb3-contrib's ``CrossQCritic``), and how they choose actions together."""

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch as th
from gymnasium import spaces
from sb3_contrib.crossq.policies import CrossQCritic
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    get_actor_critic_arch,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import ConstantSchedule
from torch import nn

from sb3_qsm.common.critics import MIN_Q_SPREAD, LayeredCritic, QuantileCritic, candidate_q_values
from sb3_qsm.common.policies import BoundedActionPolicy
from sb3_qsm.common.utils import n_observations, repeat_rows
from sb3_qsm.qsm.actor import ARGUMENTS_OF_OLDER_FILES, DiffusionActor
from sb3_qsm.qsm.arguments import check_batch_norm, check_best_of_n, check_quantiles, resolve_n_quantiles

__all__ = ["CnnPolicy", "DiffusionActor", "DiffusionActorPolicy", "MlpPolicy", "MultiInputPolicy", "QSMPolicy"]

# Optimizers whose fused implementation DiffusionActorPolicy selects unless told otherwise
FUSED_OPTIMIZERS: tuple[type[th.optim.Optimizer], ...] = (th.optim.Adam, th.optim.AdamW)
# Settings of the batch renormalisation layers of critic_batch_norm=True, under CrossQ's names
CROSSQ_CRITIC_ARGS = ("batch_norm_momentum", "batch_norm_eps", "renorm_warmup_steps")
# Policy arguments that older files may lack, with the value those files trained with: the actor's, and the plain
# critics of the archives saved before TQC's became the default
POLICY_ARGUMENTS_OF_OLDER_FILES: dict[str, Any] = {**ARGUMENTS_OF_OLDER_FILES, "n_quantiles": None}
# Seed of the n chains behind predict(deterministic=True) with best_of_n > 1 (see DiffusionActorPolicy.fixed_noise)
FIXED_NOISE_SEED = 0


class DiffusionActorPolicy(BoundedActionPolicy):
    """
    Policy class for QSM: a diffusion actor (:class:`DiffusionActor`) and sb3-contrib's TQC ``Critic`` with its
    target networks (the default, ``n_quantiles="auto"``); with ``n_quantiles=None``, SB3's ``ContinuousCritic``
    with its target networks; or, with ``critic_batch_norm=True``, sb3-contrib's ``CrossQCritic`` without them.

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: Hidden layer sizes: a list for both networks, or ``dict(pi=[...], qf=[...])`` for the
        denoiser (``pi``) and the critics (``qf``). Default ``[256, 256]`` (the paper used ``[512, 512]``).
    :param activation_fn: Activation function of the critics (ReLU, as in SAC, TD3 and the QSM reference)
    :param features_extractor_class: Features extractor to use.
    :param features_extractor_kwargs: Keyword arguments to pass to the features extractor.
    :param normalize_images: Whether to normalize images or not, dividing by 255.0 (True by default)
    :param optimizer_class: The optimizer to use, ``th.optim.Adam`` by default
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer.
        Adam and AdamW run their fused implementation (``fused=True``) unless ``fused`` or ``foreach`` is given
    :param n_critics: Number of critic networks to create.
    :param share_features_extractor: Whether to share the features extractor between the actor and the critic
        (it is then trained by the actor loss only, as in SAC and TD3)
    :param n_diffusion_steps: Number of diffusion steps ``T`` (paper: 5)
    :param beta_schedule: Noise schedule: ``"cosine"``, ``"vp"`` (paper) or ``"linear"``
    :param sampler_temperature: Scale of the noise injected by the sampler (paper: 1.0)
    :param sampler: How each reverse step moves and what noise it adds: ``"posterior"`` (the default) draws from the
        forward process's posterior at the step's (clipped) estimate of the clean action, as Diffusion-QL does;
        ``"reference"`` takes the DDPM mean and adds noise of std ``sqrt(beta_t)``, as the QSM reference does (see
        ``DiffusionSchedule.sample``)
    :param clip_sampler: Keep the chain in ``[-1, 1]``: clip each step's estimate of the clean action
        (``sampler="posterior"``) or the sample after every step (``sampler="reference"``; paper: True)
    :param denoiser_activation_fn: Activation function of the denoiser. Default SiLU, which has nearly the same
        shape as the paper's mish but is several times faster on CPU in PyTorch; the paper preset uses ``nn.Mish``
    :param time_embed_dim: Number of Fourier features of the time index (paper: 64)
    :param time_net_arch: Layer sizes of the MLP applied to the time features (default and paper: ``[128, 128]``)
    :param xavier_critic_init: Initialise the critics' linear layers with Xavier-uniform weights and zero biases,
        as the reference does (default: PyTorch's initialisation, as in SAC and TD3)
    :param action_fan_in_init: Initialise the denoiser's first-layer weights on the noisy action by the action's
        own fan-in rather than Xavier over the whole input, which gives the action small weights next to the
        128-dimensional time code (see ``Denoiser``; the reference and the paper preset: False)
    :param best_of_n: How the policy acts. 1 (the default): a sample of the sampler (``predict(deterministic=False)``,
        exploration) or its noise-free chain (``deterministic=True``). ``n > 1``: ``n`` sampled actions per
        observation, valued by the critics (their minimum, as in the TD target), and the best of them taken (as SDAC
        and MaxEntDP act), or, with ``deterministic=False`` and ``selection_temperature > 0``, one drawn by those
        values: the behaviour is then greedier than the sampler, which keeps its breadth for the score target. With
        ``deterministic=True`` the ``n`` chains take a fixed noise (``fixed_noise``), so the action is a function
        of the observation and the caller's random stream is left untouched. It costs ``n`` times the sampling and one
        critic pass per action; the critic target still takes a single sample. Settable after loading
        (``model.policy.best_of_n = 32``)
    :param selection_temperature: With ``best_of_n > 1``, how ``predict(deterministic=False)`` picks among the
        ``n`` sampled actions: 0 (the default), the best one, as ``deterministic=True`` does; ``tau > 0``, one
        drawn with probability ``softmax(z / tau)``, ``z`` being the critics' values standardised over the
        observation's candidates: a resampling of the sampler's actions towards ``pi(a) exp(z(a) / tau)``.
        ``math.inf``: a plain sample of the sampler (the limit, at the cost of one sample), so that only
        ``deterministic=True`` takes the best of ``n``, as MaxEntDP evaluates, and exploration keeps the sampler's
        modes (exploring with the best of ``n`` gathers the data, and then the critics' values, on one mode, even
        at ``tau > 0``: see the hyperparameter guide). Settable after loading
    :param critic_batch_norm: Build the critics as CrossQ does (Bhatt et al., ICLR 2024; sb3-contrib's
        ``CrossQCritic``): batch renormalisation before every linear layer, and no target networks. The TD target
        then comes from the critics themselves, evaluated with the current batch in one pass (see
        ``QSM._critic_loss``); everywhere else (the score target, acting) they normalise by their running statistics
    :param batch_norm_momentum: Rate of the running statistics of the batch renormalisation layers (CrossQ: 0.01)
    :param batch_norm_eps: Added to their variance (CrossQ: 0.001)
    :param renorm_warmup_steps: Critic updates that normalise by batch statistics alone before batch
        renormalisation's correction towards the running statistics starts (CrossQ: 100,000)
    :param n_quantiles: Build the critics as TQC does (Kuznetsov et al., ICML 2020; sb3-contrib's TQC ``Critic``):
        each network outputs this many quantiles of the return, trained by quantile regression onto the pooled
        target quantiles less the largest ``QSM(top_quantiles_to_drop_per_net=...)`` per network, in place of the
        minimum of the critics' values. Everywhere a value is needed (the score target, acting) a network's value is
        the mean of its quantiles. ``"auto"`` (the default): TQC's 25, or plain critics with ``critic_batch_norm``;
        ``None``: plain critics (SB3's ``ContinuousCritic``, as SAC's and TD3's; archives saved before TQC's critics
        became the default load with them)
    """

    actor: DiffusionActor
    critic: LayeredCritic
    critic_target: LayeredCritic | None
    arguments_of_older_files = POLICY_ARGUMENTS_OF_OLDER_FILES

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
        share_features_extractor: bool = False,
        n_diffusion_steps: int = 10,
        beta_schedule: str = "cosine",
        sampler_temperature: float = 1.0,
        sampler: str = "posterior",
        clip_sampler: bool = True,
        denoiser_activation_fn: type[nn.Module] = nn.SiLU,
        time_embed_dim: int = 64,
        time_net_arch: list[int] | None = None,
        xavier_critic_init: bool = False,
        action_fan_in_init: bool = True,
        best_of_n: int = 1,
        selection_temperature: float = 0.0,
        critic_batch_norm: bool = False,
        batch_norm_momentum: float = 0.01,
        batch_norm_eps: float = 0.001,
        renorm_warmup_steps: int = 100_000,
        n_quantiles: int | str | None = "auto",
    ):
        check_best_of_n(best_of_n, selection_temperature)
        check_batch_norm(critic_batch_norm, batch_norm_momentum, batch_norm_eps, renorm_warmup_steps)
        check_quantiles(n_quantiles, critic_batch_norm)
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
            normalize_images=normalize_images,
        )
        if net_arch is None:
            net_arch = [256, 256]
        actor_arch, critic_arch = get_actor_critic_arch(net_arch)
        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.share_features_extractor = share_features_extractor
        self.xavier_critic_init = xavier_critic_init
        self.critic_batch_norm = critic_batch_norm
        self.best_of_n = int(best_of_n)
        self.selection_temperature = float(selection_temperature)
        self._fixed_noise_cache: th.Tensor | None = None
        self._exploration_noise: th.Tensor | None = None
        net_args = {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "normalize_images": normalize_images,
        }
        # What make_actor builds the actor from; once built, the actor holds these settings (see DiffusionActor)
        self.actor_kwargs = {
            **net_args,
            "net_arch": actor_arch,
            "activation_fn": denoiser_activation_fn,
            "n_diffusion_steps": n_diffusion_steps,
            "beta_schedule": beta_schedule,
            "sampler_temperature": sampler_temperature,
            "sampler": sampler,
            "clip_sampler": clip_sampler,
            "time_embed_dim": time_embed_dim,
            "time_net_arch": [128, 128] if time_net_arch is None else list(time_net_arch),
            "action_fan_in_init": action_fan_in_init,
        }
        self.critic_kwargs = {
            **net_args,
            "net_arch": critic_arch,
            "activation_fn": activation_fn,
            "n_critics": n_critics,
            "share_features_extractor": share_features_extractor,
        }
        if critic_batch_norm:
            self.critic_kwargs.update(
                batch_norm_momentum=batch_norm_momentum,
                batch_norm_eps=batch_norm_eps,
                renorm_warmup_steps=renorm_warmup_steps,
            )
        n_quantiles = resolve_n_quantiles(n_quantiles, critic_batch_norm)
        if n_quantiles is not None:
            self.critic_kwargs["n_quantiles"] = n_quantiles
        self._build(lr_schedule)

    def _build(self, lr_schedule: Schedule) -> None:
        self.actor = self.make_actor()
        self.actor.optimizer = self.optimizer_class(
            self.actor.parameters(),
            lr=lr_schedule(1),  # type: ignore[call-arg]
            **self._optimizer_arguments(),
        )
        if self.share_features_extractor:
            self.critic = self.make_critic(features_extractor=self.actor.features_extractor)
            # The shared extractor is trained by the actor loss only (SB3 convention)
            critic_parameters = [param for name, param in self.critic.named_parameters() if "features_extractor" not in name]
        else:
            self.critic = self.make_critic(features_extractor=None)
            critic_parameters = list(self.critic.parameters())
        if self.xavier_critic_init:
            for module in self.critic.q_networks:
                module.apply(_xavier_init)
        self.critic.optimizer = self.optimizer_class(
            critic_parameters,
            lr=lr_schedule(1),  # type: ignore[call-arg]
            **self._optimizer_arguments(),
        )
        self.critic_target = None
        if not self.critic_batch_norm:
            # The target never shares the features extractor
            critic_target = self.make_critic(features_extractor=None)
            critic_target.load_state_dict(self.critic.state_dict())
            critic_target.set_training_mode(False)
            self.critic_target = critic_target

    def _optimizer_arguments(self) -> dict[str, Any]:
        """
        :return: ``optimizer_kwargs``, with ``fused=True`` for torch's Adam and AdamW unless ``fused`` or ``foreach``
            is given: their fused kernel updates every parameter in one call, where the default runs a loop of small
            operations per parameter tensor (same update, to float rounding)
        """
        if self.optimizer_class in FUSED_OPTIMIZERS and not {"fused", "foreach"} & self.optimizer_kwargs.keys():
            return {**self.optimizer_kwargs, "fused": True}
        return self.optimizer_kwargs

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        diffusion = self.actor.diffusion_settings()
        data.update(
            dict(
                net_arch=self.net_arch,
                activation_fn=self.activation_fn,
                # Not needed to load the policy alone: SB3's _dummy_schedule as a class that a safe load may construct
                lr_schedule=ConstantSchedule(0.0),
                optimizer_class=self.optimizer_class,
                optimizer_kwargs=self.optimizer_kwargs,
                features_extractor_class=self.features_extractor_class,
                features_extractor_kwargs=self.features_extractor_kwargs,
                n_critics=self.critic_kwargs["n_critics"],
                share_features_extractor=self.share_features_extractor,
                denoiser_activation_fn=self.actor.activation_fn,
                xavier_critic_init=self.xavier_critic_init,
                critic_batch_norm=self.critic_batch_norm,
                best_of_n=self.best_of_n,
                selection_temperature=self.selection_temperature,
                **diffusion,
            )
        )
        if self.critic_batch_norm:
            data.update({key: self.critic_kwargs[key] for key in CROSSQ_CRITIC_ARGS})
        data["n_quantiles"] = self.n_quantiles
        return data

    @property
    def n_quantiles(self) -> int | None:
        """Quantiles per critic network (TQC's critics), or None for critics of one value per network"""
        n_quantiles = self.critic_kwargs.get("n_quantiles")
        return None if n_quantiles is None else int(n_quantiles)  # type: ignore[call-overload]

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> DiffusionActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return DiffusionActor(**actor_kwargs).to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> LayeredCritic:
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        if self.critic_batch_norm:
            return CrossQCritic(**critic_kwargs).to(self.device)
        if self.n_quantiles is not None:
            return QuantileCritic(**critic_kwargs).to(self.device)
        return ContinuousCritic(**critic_kwargs).to(self.device)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        temperature = 0.0 if deterministic else self.selection_temperature
        if self.best_of_n > 1 and temperature < math.inf:
            noise = self.fixed_noise(self.best_of_n) if deterministic else None
            return self.best_sampled_actions(observation, self.best_of_n, temperature, noise)
        return self.actor.sample(observation, deterministic, noise=None if deterministic else self._exploration_noise)

    @property
    def acts_with_sampler(self) -> bool:
        """Whether ``predict(deterministic=False)`` is a plain sample of the sampler (no choice among samples)."""
        return self.best_of_n == 1 or self.selection_temperature == math.inf

    @contextlib.contextmanager
    def exploration_noise(self, noise: th.Tensor) -> Iterator[None]:
        """
        Within the context, ``predict(deterministic=False)`` runs the sampler on the given noise instead of drawing
        it (``QSM`` collects data so with ``sampler_noise_color > 0``), where the policy acts with the sampler alone.

        :param noise: The chain's noise, shape ``(batch, T, action_dim)`` (see ``DiffusionActor.sample``)
        """
        self._exploration_noise = noise
        try:
            yield
        finally:
            self._exploration_noise = None

    def fixed_noise(self, n_samples: int) -> th.Tensor:
        """
        The noise of the ``n`` chains behind ``predict(deterministic=True)`` with ``best_of_n = n``: drawn once from
        a generator of its own seeded with ``FIXED_NOISE_SEED`` (on the CPU, so that every device gets the same
        values), and shared by every observation. The action is then a function of the observation alone (not of
        the rest of its batch, nor of the device), and nothing is drawn from the caller's random stream, as with
        SB3's deterministic actions.

        :param n_samples: Number of chains ``n``
        :return: Standard normal noise, shape ``(n, T, action_dim)`` (see ``DiffusionActor.sample``), on the
            policy's device
        """
        shape = (n_samples, self.actor.n_diffusion_steps, self.actor.action_dim)
        cached = self._fixed_noise_cache
        if cached is None or cached.shape != shape or cached.device != self.device:
            generator = th.Generator().manual_seed(FIXED_NOISE_SEED)
            cached = th.randn(shape, generator=generator).to(self.device)
            self._fixed_noise_cache = cached
        return cached

    def best_sampled_actions(
        self, observation: PyTorchObs, n_samples: int, temperature: float = 0.0, noise: th.Tensor | None = None
    ) -> th.Tensor:
        """
        :param observation: A batch of observations
        :param n_samples: Actions sampled per observation
        :param temperature: 0: take the sampled action of the highest ``min_i Q_i(s, a)``; ``tau > 0``: draw one
            with probability ``softmax(z / tau)``, ``z`` being those values standardised over the observation's
            samples (see ``selection_temperature``)
        :param noise: The chains' noise, shape ``(n_samples, T, action_dim)``, the same for every observation
            (``fixed_noise``); None draws it from PyTorch's generator
        :return: One of the sampled actions per observation, in ``[-1, 1]``
        """
        repeated = repeat_rows(observation, n_samples)
        # Row i * n + j of the repeated batch is the j-th chain of observation i
        batch_noise = None if noise is None else noise.repeat(n_observations(observation), 1, 1)
        candidates = self.actor.sample(repeated, deterministic=False, noise=batch_noise)
        candidates = candidates.view(-1, n_samples, candidates.shape[-1])
        values = candidate_q_values(self.critic, observation, candidates).min(dim=-1).values
        if temperature > 0:
            spread = values.std(dim=1, keepdim=True).clamp_min(MIN_Q_SPREAD)
            logits = (values - values.mean(dim=1, keepdim=True)) / (spread * temperature)
            chosen = th.multinomial(th.softmax(logits, dim=1), 1).squeeze(1)
        else:
            chosen = values.argmax(dim=1)
        return candidates[th.arange(candidates.shape[0], device=candidates.device), chosen]

    def set_training_mode(self, mode: bool) -> None:
        """
        Put the policy in either training or evaluation mode (affects batch normalisation and dropout).

        :param mode: if true, set to training mode, else set to evaluation mode
        """
        self.actor.set_training_mode(mode)
        self.critic.set_training_mode(mode)
        if isinstance(self.critic, CrossQCritic):
            # As in CrossQ, batch statistics only in the critic loss's pass, which switches them on for itself
            self.critic.set_bn_training_mode(False)
        self.training = mode


def _xavier_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


# Archives that name their policy QSMPolicy (sb3-qsm 0.1) load through this alias
QSMPolicy = DiffusionActorPolicy
MlpPolicy = DiffusionActorPolicy


class CnnPolicy(DiffusionActorPolicy):
    """
    Policy class for QSM with a ``NatureCNN`` features extractor by default (image observations).
    Same parameters as :class:`DiffusionActorPolicy`.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        **kwargs: Any,
    ):
        super().__init__(
            observation_space, action_space, lr_schedule, features_extractor_class=features_extractor_class, **kwargs
        )


class MultiInputPolicy(DiffusionActorPolicy):
    """
    Policy class for QSM with a ``CombinedExtractor`` by default (``Dict`` observations).
    Same parameters as :class:`DiffusionActorPolicy`.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        **kwargs: Any,
    ):
        super().__init__(
            observation_space, action_space, lr_schedule, features_extractor_class=features_extractor_class, **kwargs
        )

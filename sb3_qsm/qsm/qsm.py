"""Q-Score Matching (QSM) as a Stable-Baselines3 off-policy algorithm."""

import io
import math
import pathlib
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from pink import ColoredNoiseProcess
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, ReplayBufferSamples, Schedule
from stable_baselines3.common.utils import get_parameters_by_name, polyak_update, update_learning_rate
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer
from torch.nn import functional as F

from sb3_qsm.common.checkpoint import (
    REBUILT_ENTRIES,
    atomic_file,
    check_policy_class,
    decode_checkpoint_data,
    decode_checkpoint_entry,
    read_checkpoint_json,
    read_pickle_file,
    unpickle_entries,
    with_values_of_older_archives,
)
from sb3_qsm.common.compilation import check_compile_args, compile_options
from sb3_qsm.common.critics import MIN_Q_SPREAD, candidate_q_values, q_values
from sb3_qsm.common.diffusion import check_diffusion_args, check_sampler, check_sampler_temperature
from sb3_qsm.common.utils import check_bool
from sb3_qsm.qsm.arguments import (
    DIFFUSION_POLICY_ARGS,
    FIXED_DIFFUSION_ARGS,
    SAMPLER_SETTINGS,
    WARMUP_WITHOUT_TIME_LIMIT,
    auto_learning_starts,
    check_action_space,
    check_image_policy,
    check_off_policy_args,
    check_policy_kwargs,
    check_qsm_args,
    check_sampler_noise_color,
    check_score_target,
    check_target_diffusion_steps,
    target_chain_steps,
    time_limit,
)
from sb3_qsm.qsm.policies import (
    ARGUMENTS_OF_OLDER_FILES,
    CnnPolicy,
    DiffusionActor,
    DiffusionActorPolicy,
    MlpPolicy,
    MultiInputPolicy,
)
from sb3_qsm.qsm.presets import PAPER_HYPERPARAMS, PAPER_NOISE_STD

SelfQSM = TypeVar("SelfQSM", bound="QSM")

# Arguments that older archives may lack, with the value those archives trained with
ADDED_ARGUMENTS: dict[str, Any] = {
    "score_target": "gradient",
    "q_spread_floor": 0.0,
    "sampler_noise_color": 0.0,
    "target_diffusion_steps": None,
    "score_actions": "replay",
}
# Length of the colored noise series of the sampler when the environment has no episode length limit
DEFAULT_NOISE_HORIZON = 1000
# Exploration defaults, measured on the screen and in probes (docs: guide/parameters): pink sampler noise, and a floor
# of 0.3 under the posterior target's spread, with which the posterior sampler finds MountainCarContinuous-v0's goal on
# 4 of 5 seeds within 20k steps (0 of 5 with a floor of 0.1, whose policy pushes too little: benchmarks/probes), keeps
# the bandit's four modes and costs nothing beyond the spread between seeds on Hopper; HalfCheetah's seeds are in the
# benchmarks page's ablation table
DEFAULT_SAMPLER_NOISE_COLOR = 1.0
DEFAULT_Q_SPREAD_FLOOR = 0.3


class QSM(OffPolicyAlgorithm):
    """
    Q-Score Matching (QSM): a diffusion-model policy trained by matching its score to one built from the critics.

    Paper: "Learning a Diffusion Model Policy from Rewards via Q-Score Matching", Psenka, Escontrela, Abbeel, Ma,
    ICML 2024, https://arxiv.org/abs/2312.11752.
    Original implementation: https://github.com/Alescontrela/score_matching_rl

    Each gradient step updates the critics with a TD target built from a fresh diffusion sample at the next
    observation (plus Gaussian target noise, min over the target critics), then regresses the denoiser
    ``eps_theta(s, a_t, t)`` at a noised replay action ``a_t`` onto a target built from the critics: by default the
    noise of the policy ``exp(score_scale * Q / spread)`` noised to step ``t`` (``score_target="posterior"``), or the
    paper's ``-score_scale * grad_a mean_i Q_i(s, a_t)`` (``score_target="gradient"``, as in
    ``QSM.from_paper_config``).

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, ...)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: learning rate for the Adam optimizers of the actor and the critics,
        it can be a function of the current progress remaining (from 1 to 0)
    :param buffer_size: size of the replay buffer
    :param learning_starts: how many steps of uniformly random actions to collect before learning starts. ``"auto"``
        (default): ten episodes of the environment's time limit (10,000 steps on MuJoCo's 1,000-step tasks, as the RL
        Zoo's SAC and TD3 gather there; 2,000 on Pendulum-v1), or 100 steps (SB3's default) for an environment
        without one. Set when the model is built, from the environment it is given; ``model.learning_starts`` holds
        the number
    :param batch_size: Minibatch size for each gradient update
    :param tau: the soft update coefficient ("Polyak update", between 0 and 1)
    :param gamma: the discount factor
    :param train_freq: Update the model every ``train_freq`` steps. Alternatively pass a tuple of frequency and unit
        like ``(5, "step")`` or ``(2, "episode")``.
    :param gradient_steps: How many gradient steps to do after each rollout (see ``train_freq``).
        Set to ``-1`` means to do as many gradient steps as steps done in the environment during the rollout.
    :param action_noise: the action noise type (None by default) added to the stochastic diffusion sample when
        collecting data. The paper adds ``NormalActionNoise`` with std 0.1.
    :param replay_buffer_class: Replay buffer class to use (for instance ``HerReplayBuffer``).
        If ``None``, it will be automatically selected.
    :param replay_buffer_kwargs: Keyword arguments to pass to the replay buffer on creation.
    :param optimize_memory_usage: Enable a memory efficient variant of the replay buffer
        at a cost of more complexity.
    :param n_steps: When n_step > 1, uses n-step return (with the NStepReplayBuffer) when updating the Q-value network.
    :param score_scale: With the ``"posterior"`` target (the default), the inverse temperature of the policy
        ``exp(score_scale * Q / spread)``: dimensionless, independent of the reward scale; larger values give
        greedier policies (5 keeps the multi-modal bandit's peaks). With the ``"gradient"`` target, the paper's
        ``alpha`` (``M_q`` in the reference code): the denoiser is regressed onto ``-score_scale * grad_a Q``, a
        gradient whose size grows with the reward scale and with ``1 / (1 - gamma)``; the paper used 50 (about 120
        for humanoid-like tasks).
    :param n_diffusion_steps: Number of diffusion steps ``T`` of the policy (paper: 5)
    :param beta_schedule: Noise schedule ``beta_1..beta_T``: ``"cosine"`` (default), ``"vp"`` (paper) or ``"linear"``
    :param sampler_temperature: Scale of the noise the reverse sampler injects (paper: 1.0); 0 makes the stochastic
        sampler deterministic apart from its random start ``x_T``
    :param sampler: How each reverse step of the policy moves and what noise it adds. ``"posterior"`` (the default,
        as Diffusion-QL and IDQL sample): the step estimates the clean action, clips the estimate to the box, and
        draws from the forward process's posterior there, whose noise is smaller than ``sqrt(beta_t)`` at the clean
        steps; the noisy samples stay unclipped, as the denoiser saw them in training. ``"reference"`` (the paper):
        the DDPM mean plus noise of std ``sqrt(beta_t)``, the sample clipped to the box after every step. See
        ``DiffusionSchedule.sample``; ``policy_kwargs=dict(clip_sampler=False)`` turns either clip off
    :param target_policy_noise: Standard deviation of the Gaussian noise added to the sampled next action in the
        critic target (paper: 0.1)
    :param target_noise_clip: Limit for the absolute value of that noise (``None``: no limit, as in the paper)
    :param deterministic_target: The critic target's next action is the sampler's noise-free chain instead of a fresh
        sample (paper: a sample): the critics then value the policy that is evaluated, as TD3's do, and exploration
        keeps the sampled actions. It is the action of ``predict(deterministic=True)`` (with ``best_of_n=1``) when
        ``target_diffusion_steps=None``; by default, that chain's noise-free counterpart on half the steps
    :param policy_delay: The actor is updated once every ``policy_delay`` critic updates (paper: 1).
        The target critics are updated at every critic update, as in the paper.
    :param actor_lr_decay_steps: If set, the actor's learning rate follows a cosine decay to 0 over this many actor
        updates (paper: 2e6), on top of ``learning_rate``. ``None`` keeps it equal to ``learning_rate``.
    :param bc_coef: Weight of a denoising score matching term on the replay actions added to the actor loss
        (``||eps_theta(s, a_t, t) - eps||^2``, with ``a_t`` the replay action noised by ``eps``). 0, the default, is
        the paper's QSM. A positive weight keeps the policy close to the actions in the replay buffer (mostly its own
        recent ones); ``convert_to_qsm`` uses it so that fine-tuning starts from the converted policy.
    :param score_target: What the denoiser is regressed onto. ``"gradient"`` (the paper's QSM):
        ``-score_scale * grad_a Q(s, a_t)``, the score of the policy ``pi ~ exp(score_scale * Q)`` taken at the noisy
        action as if it were clean. ``"posterior"`` (the default; not in the reference): the noise that Tweedie's
        formula gives for that policy noised to step ``t``, ``(a_t - sqrt(alpha_bar_t) E[a_0 | a_t]) / sqrt(1 - alpha_bar_t)``,
        with ``E[a_0 | a_t]`` estimated from the replay action and ``n_score_samples`` candidate actions weighted by
        ``exp(score_scale * Q / spread)``, ``spread`` being the critic's spread over the candidates, so that the
        target does not depend on the reward scale (see ``posterior_noise``). It is the target a diffusion model of
        that policy would be trained on, so the sampler stays inside the box and can keep separate modes; it costs
        a critic forward pass over ``batch_size * (n_score_samples + 1)`` actions instead of a backward pass.
    :param n_score_samples: Candidate actions per sample of the ``"posterior"`` target (at least 2). Its cost grows
        linearly with them; 8 keep the bandit's peaks (docs: guide/multimodal)
    :param score_proposal: Where the ``"posterior"`` target draws its candidates. ``"forward"`` (the default): all
        from the forward process's posterior ``q(a_0 | a_t)``, nearly uniform on the box at the noisy steps.
        ``"policy"``: half of them around the actor's own estimate of the clean action (from the noise it predicts
        at ``a_t``), weighted against the mixture of the two proposals, so that the target stays the same while the
        candidates follow the policy (see ``DiffusionSchedule.posterior_mean``)
    :param score_actions: Which clean actions the actor loss noises into ``a_t`` (and, with the ``"posterior"``
        target, keeps as the extra candidate). ``"replay"`` (the default, as the paper): the replay batch's actions,
        so the denoiser is fitted where the data lies and the posterior target leans towards the data's actions,
        which at the noisy steps outweigh the nearly uniform candidates (on HalfCheetah they carry more than half of
        the weight): the policy then becomes a Q-weighted copy of its replay, older behaviour included.
        ``"policy"``: fresh samples of the current policy at the replay observations (drawn without gradient on the
        critic target's chain, ``target_diffusion_steps``), so that the estimate leans towards the current policy and
        the target's fixed point is the policy ``exp(score_scale * Q / spread)`` itself; one more sampled chain per
        actor update. ``bc_coef``'s term keeps the replay actions either way
    :param target_diffusion_steps: Number of reverse steps of the sample of the next action in the critic target,
        on a strided subset of the time indices with the chain respaced: ``"auto"`` (the default), half of ``T``
        rounded up (5 of the default 10); an integer from 1 to ``T``; or None, all ``T`` (archives saved before the
        argument existed). The critic target then costs about ``target_diffusion_steps / T`` of its denoiser passes;
        acting keeps all ``T``. Half the chain costs nothing measurable in returns on the screen and brings the
        step's work under twice SAC's (the guide on performance gives both)
    :param q_spread_floor: The smallest ``spread`` the ``"posterior"`` target divides by, in the units of ``Q`` (the
        rewards'): where the critics' values vary less than this over the candidates, the policy
        ``exp(score_scale * Q / spread)`` stays broader than ``score_scale`` alone makes it. 0 keeps the target
        independent of the reward scale; a floor keeps a critic that has seen only small rewards (MountainCar's
        action cost before its goal) from turning its negligible preferences into a sharp policy that stops exploring.
        Default 0.3 (0 in archives saved before the argument existed)
    :param sampler_noise_color: Exponent ``beta`` of the power spectrum ``1 / f^beta`` of the sampler's noise over
        the steps of an environment while collecting data (the chain's start and injected noise, drawn by
        pink-noise-rl's ``ColoredNoiseProcess``, one series per environment and noise coordinate, as long as an
        episode): 0, white noise, independent at every step; 1, pink noise; 2, red noise. Every action is still a
        sample of the policy, but successive ones are correlated, so exploration pushes in one direction for a while
        (Eberhard et al., "Pink Noise Is All You Need", ICLR 2023). Used where the policy acts with the sampler alone
        (``best_of_n = 1`` or ``selection_temperature = math.inf``); ``predict`` itself always draws white noise.
        Default 1 (0 in archives saved before the argument existed)
    :param compile: Compile the training step's losses (with their backward passes) and the sampler with
        ``torch.compile`` (off by default; the first gradient steps and the first ``predict`` then take tens of
        seconds to compile). The optimizer steps and the check for non-finite losses stay eager. The compiled step
        draws its random numbers from PyTorch's generator, as the eager one does, and computes the same update to
        float rounding; on CUDA it runs as CUDA graphs. Not saved with the model, like ``device``: pass it to
        ``load`` again. See ``sb3_qsm.common.compilation``
    :param compile_kwargs: Keyword arguments for ``torch.compile`` (``mode``, ``backend``, ``dynamic``, ``options``,
        ...); a ``mode`` replaces the default options
    :param use_sde: Not supported (gSDE is for Gaussian policies); must stay False
    :param sde_sample_freq: Not supported; must stay -1
    :param use_sde_at_warmup: Not supported; must stay False
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation. See
        :class:`~sb3_qsm.qsm.policies.DiffusionActorPolicy`
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or wrappers used), 2 for
        debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    policy: DiffusionActorPolicy
    actor: DiffusionActor
    critic: ContinuousCritic
    critic_target: ContinuousCritic

    def __init__(
        self,
        policy: str | type[DiffusionActorPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,  # 1e6
        learning_starts: int | str = "auto",
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        score_scale: float = 5.0,
        n_diffusion_steps: int = 10,
        beta_schedule: str = "cosine",
        sampler_temperature: float = 1.0,
        sampler: str = "posterior",
        target_policy_noise: float = 0.1,
        target_noise_clip: float | None = None,
        deterministic_target: bool = False,
        policy_delay: int = 1,
        actor_lr_decay_steps: int | None = None,
        bc_coef: float = 0.0,
        score_target: str = "posterior",
        n_score_samples: int = 8,
        score_proposal: str = "forward",
        score_actions: str = "replay",
        target_diffusion_steps: int | str | None = "auto",
        q_spread_floor: float = DEFAULT_Q_SPREAD_FLOOR,
        sampler_noise_color: float = DEFAULT_SAMPLER_NOISE_COLOR,
        compile: bool = False,
        compile_kwargs: dict[str, Any] | None = None,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        if use_sde or sde_sample_freq != -1 or use_sde_at_warmup:
            raise ValueError(
                "QSM does not support gSDE (use_sde, sde_sample_freq, use_sde_at_warmup): its diffusion policy explores "
                "through the sampler noise. Remove these arguments, or use action_noise for extra exploration."
            )
        policy_kwargs = dict(policy_kwargs or {})
        check_policy_kwargs(policy_kwargs)
        check_diffusion_args(n_diffusion_steps, beta_schedule, sampler_temperature, sampler)
        check_qsm_args(score_scale, policy_delay, target_policy_noise, target_noise_clip, actor_lr_decay_steps, bc_coef)
        check_bool("deterministic_target", deterministic_target)
        check_score_target(score_target, n_score_samples, score_proposal, q_spread_floor, score_actions)
        check_sampler_noise_color(sampler_noise_color)
        check_target_diffusion_steps(target_diffusion_steps, n_diffusion_steps)
        check_off_policy_args(buffer_size, learning_starts, batch_size, tau, gamma)
        check_compile_args(compile, compile_kwargs)
        # NumPy integers are accepted; the model keeps Python's (JSON in the saved archive)
        n_diffusion_steps, n_score_samples = int(n_diffusion_steps), int(n_score_samples)
        # The actor owns these settings once built (see the properties below); policy_kwargs carries them to it
        policy_kwargs.update(
            n_diffusion_steps=n_diffusion_steps,
            beta_schedule=beta_schedule,
            sampler_temperature=sampler_temperature,
            sampler=sampler,
        )
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            WARMUP_WITHOUT_TIME_LIMIT if learning_starts == "auto" else int(learning_starts),
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            supported_action_spaces=None,  # checked in _setup_model, with a ValueError
            support_multi_env=True,
        )
        if learning_starts == "auto" and self.env is not None:
            self.learning_starts = auto_learning_starts(time_limit(self.env))
        self.score_scale = score_scale
        self.target_policy_noise = target_policy_noise
        self.target_noise_clip = target_noise_clip
        self.deterministic_target = bool(deterministic_target)
        self.policy_delay = policy_delay
        self.actor_lr_decay_steps = actor_lr_decay_steps
        self.bc_coef = bc_coef
        self.score_target = score_target
        self.n_score_samples = n_score_samples
        self.score_proposal = score_proposal
        self.score_actions = score_actions
        self.target_diffusion_steps = target_diffusion_steps
        self.q_spread_floor = q_spread_floor
        self.sampler_noise_color = sampler_noise_color
        self._colored_noise: ColoredNoiseProcess | None = None
        self.compile = compile
        self.compile_kwargs = compile_kwargs

        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        check_action_space(self.action_space)
        flattens = not issubclass(self.policy_class, CnnPolicy | MultiInputPolicy)
        check_image_policy(self.observation_space, flattens, self.policy_kwargs)
        super()._setup_model()
        self._create_aliases()
        # Running mean and running var of batch norm layers, copied to the target (SB3 GH#996)
        self.critic_batch_norm_stats = get_parameters_by_name(self.critic, ["running_"])
        self.critic_batch_norm_stats_target = get_parameters_by_name(self.critic_target, ["running_"])
        self._setup_losses()

    def _setup_losses(self) -> None:
        """
        Choose the loss functions of the training step: the methods themselves, or their ``torch.compile``d versions
        (and the actor's compiled sampler) with ``compile=True``. ``load`` sets ``compile`` anew (it is not saved), so
        the check runs here too.
        """
        check_compile_args(self.compile, self.compile_kwargs)
        self._critic_loss_fn: Callable[..., th.Tensor] = self._critic_loss
        self._actor_loss_fn: Callable[..., tuple[th.Tensor, th.Tensor]] = self._actor_loss
        if self.compile:
            options = compile_options(self.device, self.compile_kwargs)
            self.actor.compile_sampler(**options)
            self._critic_loss_fn = th.compile(self._critic_loss, **options)
            self._actor_loss_fn = th.compile(self._actor_loss, **options)

    def _create_aliases(self) -> None:
        self.actor = self.policy.actor
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target

    @property
    def n_diffusion_steps(self) -> int:
        """Number of diffusion steps ``T`` of the actor (fixed once built)."""
        return self.actor.n_diffusion_steps

    @property
    def beta_schedule(self) -> str:
        """Noise schedule of the actor (fixed once built)."""
        return self.actor.beta_schedule

    @property
    def sampler_temperature(self) -> float:
        """Scale of the noise the actor's sampler injects; setting it changes the actor's (and what ``save`` keeps)."""
        return self.actor.sampler_temperature

    @sampler_temperature.setter
    def sampler_temperature(self, value: float) -> None:
        self.actor.sampler_temperature = value

    @property
    def sampler(self) -> str:
        """The actor's reverse sampler; setting it changes the actor's (and what ``save`` keeps)."""
        return self.actor.sampler

    @sampler.setter
    def sampler(self, value: str) -> None:
        self.actor.sampler = value

    @classmethod
    def from_paper_config(
        cls: type[SelfQSM], env: GymEnv | str, policy: str | type[DiffusionActorPolicy] = "MlpPolicy", **kwargs: Any
    ) -> SelfQSM:
        """
        Build QSM with the configuration the paper ran (the reference's "paper" config): 512x512 networks, mish in
        the denoiser, the gradient score target with score scale 50, T=5 with the vp schedule, Adam 3e-4 with the
        actor's cosine decay over 2e6 updates, 10k random warm-up steps, exploration and target noise 0.1. See
        ``sb3_qsm.qsm.presets``.

        :param env: The environment to learn from
        :param policy: The policy model to use
        :param kwargs: Any QSM constructor argument, overriding the preset; ``policy_kwargs`` entries are merged into
            the preset's ``policy_kwargs``
        :return: The model
        """
        policy_kwargs = {**PAPER_HYPERPARAMS["policy_kwargs"], **(kwargs.pop("policy_kwargs", None) or {})}
        hyperparams = {**PAPER_HYPERPARAMS, **kwargs, "policy_kwargs": policy_kwargs}
        model = cls(policy, env, **hyperparams)
        if "action_noise" not in kwargs:
            action_dim = model.action_space.shape[0]  # type: ignore[index]
            model.action_noise = NormalActionNoise(np.zeros(action_dim), PAPER_NOISE_STD * np.ones(action_dim))
        return model

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])

        actor_losses, critic_losses = [], []
        diagnostics: dict[str, list[float]] = {}
        critic_parameters: list[th.Tensor] = list(self.critic.parameters())
        target_parameters: list[th.Tensor] = list(self.critic_target.parameters())
        for _ in range(gradient_steps):
            self._n_updates += 1
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            critic_losses.append(self._update_critic(replay_data))

            if self._n_updates % self.policy_delay == 0:
                actor_loss, target_stats = self._update_actor(replay_data)
                actor_losses.append(actor_loss)
                for key, value in target_stats.items():
                    diagnostics.setdefault(key, []).append(value)

            self._update_target_critic(critic_parameters, target_parameters)

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        if len(actor_losses) > 0:
            self.logger.record("train/actor_loss", np.mean(actor_losses))
        for key, values in diagnostics.items():
            self.logger.record(f"train/{key}", np.mean(values))
        if self.actor_lr_decay_steps is not None:
            self.logger.record("train/actor_learning_rate", self.actor.optimizer.param_groups[0]["lr"])

    def _update_target_critic(self, critic_parameters: list[th.Tensor], target_parameters: list[th.Tensor]) -> None:
        """
        The Polyak update of all target parameters at once, ``target + tau * (online - target)``, and a copy of the
        batch norm running statistics (see SB3 issue #996).

        :param critic_parameters: ``list(self.critic.parameters())``, made once per ``train`` call
        :param target_parameters: ``list(self.critic_target.parameters())``, likewise
        """
        with th.no_grad():
            th._foreach_lerp_(target_parameters, critic_parameters, self.tau)
        polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)

    def _update_critic(
        self, replay_data: ReplayBufferSamples, regularizer: Callable[[ReplayBufferSamples], th.Tensor] | None = None
    ) -> float:
        """
        One critic step on ``_critic_loss`` (compiled when ``compile`` is set).

        :param replay_data: A batch from the replay buffer
        :param regularizer: A term added to the loss, computed from the same batch (pretraining's conservative
            penalty, ``sb3_qsm.convert.pretrain``); none in QSM's own training
        :return: The critic loss (the regularizer included)
        """
        # For n-step replay, discount factor is gamma**n_steps (when no early termination)
        discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
        critic_loss = self._critic_loss_fn(
            replay_data.observations,
            replay_data.actions,
            replay_data.next_observations,
            replay_data.rewards,
            replay_data.dones,
            discounts,
        )
        if regularizer is not None:
            critic_loss = critic_loss + regularizer(replay_data)
        loss_value = critic_loss.item()
        self._check_finite("critic_loss", loss_value)
        self.critic.optimizer.zero_grad()
        critic_loss.backward()
        self.critic.optimizer.step()
        return loss_value

    def _critic_loss(
        self,
        observations: Any,
        actions: th.Tensor,
        next_observations: Any,
        rewards: th.Tensor,
        dones: th.Tensor,
        discounts: th.Tensor | float,
    ) -> th.Tensor:
        """
        The critic loss: every critic regressed onto ``r + discount (1 - d) min_i Q'_i(s', a')``, with ``a'`` from
        ``_target_actions``.

        :param observations: Observations of a replay batch
        :param actions: Their actions, in ``[-1, 1]``
        :param next_observations: The next observations
        :param rewards: The rewards, shape ``(batch, 1)``
        :param dones: Whether the episode terminated, shape ``(batch, 1)``
        :param discounts: The discount of each transition (``gamma ** n`` with n-step returns), or ``gamma``
        :return: The mean over critics of the squared TD errors
        """
        target_q_values = self._critic_target(next_observations, rewards, dones, discounts)
        current_q_values = q_values(self.critic, observations, actions)
        # Mean over critics, as the reference (SAC uses 0.5 * sum, TD3 the sum: only a scale for Adam)
        return F.mse_loss(current_q_values, target_q_values.expand_as(current_q_values))

    def _critic_target(
        self, next_observations: Any, rewards: th.Tensor, dones: th.Tensor, discounts: th.Tensor | float
    ) -> th.Tensor:
        """
        :return: The TD target ``r + discount (1 - d) min_i Q'_i(s', a')``, with ``a'`` from ``_target_actions``
            (no gradient)
        """
        with th.no_grad():
            next_actions = self._target_actions(next_observations)
            next_q_values = q_values(self.critic_target, next_observations, next_actions)
            next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
            return rewards + (1 - dones) * discounts * next_q_values

    def _target_actions(self, next_observations: Any) -> th.Tensor:
        """
        The next actions of the critic target: a fresh sample of the current diffusion policy (the reference has no
        target actor), plus Gaussian noise of std ``target_policy_noise`` clipped to ``+-target_noise_clip`` (when
        set), the sum clipped to ``[-1, 1]``.

        :param next_observations: A batch of next observations
        :return: The actions, shape ``(batch, action_dim)``, in ``[-1, 1]``
        """
        next_actions = self.actor.sample(
            next_observations,
            deterministic=self.deterministic_target,
            n_steps=target_chain_steps(self.target_diffusion_steps, self.n_diffusion_steps),
        )
        if self.target_policy_noise > 0:
            noise = th.randn_like(next_actions) * self.target_policy_noise
            if self.target_noise_clip is not None:
                noise = noise.clamp(-self.target_noise_clip, self.target_noise_clip)
            next_actions = (next_actions + noise).clamp(-1.0, 1.0)
        return next_actions

    def q_score(self, observations: Any, actions: th.Tensor) -> th.Tensor:
        """
        The critics' action gradient ``grad_a mean_i Q_i(s, a)``, detached. Only the actions are differentiated:
        the critics' parameter gradients (``.grad``) are left untouched.

        :param observations: A batch of observations (tensors, as sampled from the replay buffer)
        :param actions: Actions in ``[-1, 1]``, shape ``(batch, action_dim)``
        :return: The gradient, same shape as ``actions``
        """
        actions = actions.detach().requires_grad_(True)
        mean_q_values = q_values(self.critic, observations, actions).mean(dim=1)
        (q_grad,) = th.autograd.grad(mean_q_values.sum(), actions)
        return q_grad

    def posterior_noise(
        self, observations: Any, noisy_actions: th.Tensor, timesteps: th.Tensor, actions: th.Tensor | None = None
    ) -> tuple[th.Tensor, float]:
        """
        The ``"posterior"`` score target: the noise ``(a_t - sqrt(alpha_bar_t) E[a_0 | a_t]) / sqrt(1 - alpha_bar_t)``
        for the policy ``pi(a | s) ~ exp(score_scale * mean_i Q_i(s, a) / spread)`` on the box, with ``E[a_0 | a_t]``
        estimated by importance sampling over ``n_score_samples`` candidates (critics evaluated without gradients),
        and the replay actions as extra candidates when given (see ``DiffusionSchedule.posterior_mean``).
        ``spread`` is the critic's spread over the candidates: the standard deviation of ``Q`` over each sample's
        candidates, averaged over the batch. It makes ``score_scale`` independent of the scale of the rewards.

        :param observations: A batch of observations (tensors, as sampled from the replay buffer)
        :param noisy_actions: Noisy actions ``a_t``, shape ``(batch, action_dim)``
        :param timesteps: Their 0-based time indices, shape ``(batch,)``
        :param actions: The clean actions that were noised into ``a_t`` (the replay actions), or None
        :return: The target noise, same shape as ``noisy_actions``, and the spread
        """
        target, spread = self._posterior_target(observations, noisy_actions, timesteps, actions)
        return target, spread.item()

    def _posterior_target(
        self,
        observations: Any,
        noisy_actions: th.Tensor,
        timesteps: th.Tensor,
        actions: th.Tensor | None,
        predicted_noise: th.Tensor | None = None,
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        ``posterior_noise``, with the spread as a tensor.

        :param predicted_noise: The actor's noise prediction at ``noisy_actions``, if already computed: with
            ``score_proposal="policy"``, the centre of the policy's candidates comes from it
        """
        spreads: list[th.Tensor] = []

        def log_density(candidates: th.Tensor) -> th.Tensor:
            values = candidate_q_values(self.critic, observations, candidates).mean(dim=-1)
            spreads.append(values.std(dim=1).mean().clamp_min(max(self.q_spread_floor, MIN_Q_SPREAD)))
            return self.score_scale * values / spreads[0]

        schedule = self.actor.schedule
        with th.no_grad():
            guide = None
            if self.score_proposal == "policy":
                if predicted_noise is None:
                    predicted_noise = self.actor.predict_noise(observations, noisy_actions, timesteps)
                guide = schedule.clean_from_noise(noisy_actions, predicted_noise.detach(), timesteps).clamp(-1.0, 1.0)
            clean = schedule.posterior_mean(
                noisy_actions, timesteps, log_density, self.n_score_samples, anchor=actions, guide=guide
            )
            return schedule.noise_from_clean(noisy_actions, clean, timesteps), spreads[0]

    def _update_actor(self, replay_data: ReplayBufferSamples) -> tuple[float, dict[str, float]]:
        """
        One actor step on ``_actor_loss`` (compiled when ``compile`` is set).

        :param replay_data: A batch from the replay buffer
        :return: The actor loss, and a statistic of the target to log: the mean L2 norm of the critic's action
            gradient (``q_grad_norm``) or the critic's spread over the candidates (``q_spread``, see
            ``posterior_noise``)
        """
        actor_loss, target_statistic = self._actor_loss_fn(replay_data.observations, replay_data.actions)
        if self.actor_lr_decay_steps is not None:
            update_learning_rate(self.actor.optimizer, self._actor_learning_rate())
        loss_value = actor_loss.item()
        self._check_finite("actor_loss", loss_value)
        self.actor.optimizer.zero_grad()
        actor_loss.backward()
        self.actor.optimizer.step()
        statistic_name = "q_spread" if self.score_target == "posterior" else "q_grad_norm"
        return loss_value, {statistic_name: target_statistic.item()}

    def _actor_loss(self, observations: Any, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """
        The Q-score matching loss (paper section 4, reference ``update_actor``): noise the replay action (or a fresh
        sample of the policy, see ``score_actions``), ``a_t = sqrt(alpha_bar_t) a + sqrt(1 - alpha_bar_t) eps`` with
        ``t ~ U{0..T-1}``, and regress
        ``eps_theta(s, a_t, t)`` onto ``-score_scale * grad_{a_t} mean_i Q_i(s, a_t)`` (or onto ``posterior_noise``,
        see ``score_target``), plus ``bc_coef`` times the denoising loss on the replay action.

        :param observations: Observations of a replay batch
        :param actions: Their actions, in ``[-1, 1]``
        :return: The loss, and the critic's spread over the candidates (posterior target) or the mean L2 norm of
            its action gradient (gradient target)
        """
        clean = self._score_actions(observations, actions)
        noisy_actions, timesteps, noise = self.actor.schedule.sample_noisy_actions(clean)
        eps_pred = self.actor.predict_noise(observations, noisy_actions, timesteps)
        if self.score_target == "posterior":
            target, target_statistic = self._posterior_target(observations, noisy_actions, timesteps, clean, eps_pred)
        else:
            q_grad = self.q_score(observations, noisy_actions)
            target, target_statistic = -self.score_scale * q_grad, q_grad.norm(dim=1).mean()
        actor_loss = F.mse_loss(eps_pred, target)
        if self.bc_coef > 0:
            actor_loss = actor_loss + self.bc_coef * self._denoising_loss(observations, actions, eps_pred, noise)
        return actor_loss, target_statistic

    def _score_actions(self, observations: Any, actions: th.Tensor) -> th.Tensor:
        """
        :param observations: Observations of a replay batch
        :param actions: Their actions, in ``[-1, 1]``
        :return: The clean actions the actor loss noises (see ``score_actions``): the replay actions, or fresh samples
            of the policy at the observations, on the critic target's chain (no gradient)
        """
        if self.score_actions == "replay":
            return actions
        with th.no_grad():
            n_steps = target_chain_steps(self.target_diffusion_steps, self.n_diffusion_steps)
            return self.actor.sample(observations, n_steps=n_steps)

    def _denoising_loss(self, observations: Any, actions: th.Tensor, eps_pred: th.Tensor, noise: th.Tensor) -> th.Tensor:
        """
        ``bc_coef``'s term: the denoising loss on the replay actions. With ``score_actions="replay"`` the score's
        noisy actions are those, and serve; otherwise the replay actions are noised and denoised anew.

        :param observations: Observations of a replay batch
        :param actions: Their actions
        :param eps_pred: The actor's noise prediction at the score's noisy actions
        :param noise: The noise that made them
        :return: The mean squared error of the noise predicted at the noised replay actions
        """
        if self.score_actions != "replay":
            noisy_actions, timesteps, noise = self.actor.schedule.sample_noisy_actions(actions)
            eps_pred = self.actor.predict_noise(observations, noisy_actions, timesteps)
        return F.mse_loss(eps_pred, noise)

    def _actor_learning_rate(self) -> float:
        """
        :return: ``learning_rate`` times the cosine decay ``0.5 (1 + cos(pi min(k, K) / K))`` where ``k`` counts the
            actor updates done so far and ``K`` is ``actor_lr_decay_steps`` (optax ``cosine_decay_schedule``)
        """
        assert self.actor_lr_decay_steps is not None
        actor_updates = min((self._n_updates - 1) // self.policy_delay, self.actor_lr_decay_steps)
        decay = 0.5 * (1.0 + math.cos(math.pi * actor_updates / self.actor_lr_decay_steps))
        return self.lr_schedule(self._current_progress_remaining) * decay

    def _check_finite(self, name: str, loss: float) -> None:
        """
        Stop training before a non-finite loss reaches the weights.

        :param name: Name of the loss, for the message
        :param loss: The loss value
        :raises FloatingPointError: if the loss is NaN or infinite
        """
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"QSM update {self._n_updates} (after {self.num_timesteps} environment steps): {name} is "
                f"{loss}. Training stopped before the optimizer step, so the model holds the weights of the "
                "previous update. Check the rewards and observations for NaN/inf, or lower learning_rate or score_scale."
            )

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

    def learn(
        self: SelfQSM,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "QSM",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfQSM:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfQSM],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        safe: bool = True,
        **kwargs: Any,
    ) -> SelfQSM:
        """
        Load a QSM model from a zip file. The file is checked first (a readable, uncorrupted Stable-Baselines3
        archive that holds a QSM model), so that a bad file fails with a ``ValueError`` naming the file and the
        problem; the check unpickles nothing. By default (``safe=True``) the load runs no code from the file: the
        objects SB3 pickled into it are decoded by an allow-listed unpickler (spaces, PyTorch and SB3 classes,
        ``sb3_qsm.common.safe_pickle``), the weights are read as tensors only, and an entry naming anything else is
        refused with an error naming it (replace it with ``custom_objects``, or allow a class of yours with
        ``sb3_qsm.add_safe_globals``). ``safe=False`` unpickles such entries as SAC's ``load`` does, which runs any
        code they hold: only for files you trust. Pass ``buffer_size=1`` to avoid allocating the full replay buffer
        when only predicting.
        An archive saved before ``score_target`` existed goes on training with the paper's ``"gradient"`` target it
        was trained with, not today's default; one saved before ``sampler`` existed samples with the
        ``"reference"`` sampler it was trained with. ``sampler_temperature`` and ``sampler`` given here replace the
        saved ones; ``n_diffusion_steps`` and ``beta_schedule`` can only be given with their saved values, since the
        denoiser was trained for them. See ``BaseAlgorithm.load`` for the parameters.

        :param path: path to the file (or a file-like) where to load the agent from
        :param env: the new environment to run the loaded model on (its spaces must match the saved ones)
        :param device: Device on which the code should run.
        :param custom_objects: Dictionary of objects to replace upon loading.
        :param print_system_info: Whether to print system info from the saved model
        :param force_reset: Force call to ``reset()`` before training to avoid unexpected behavior.
        :param safe: Run no code from the file (see above); ``False`` only for files you trust
        :param kwargs: extra arguments to change the model when loading
        :return: new model instance with loaded parameters
        """
        stored = read_checkpoint_json(path)
        _check_saved_policy(stored, path, custom_objects, safe, cls.__name__)
        data, left_out = decode_checkpoint_data(stored, path, custom_objects, safe=safe)
        if "policy_kwargs" in left_out:
            data.update(unpickle_entries(stored, ["policy_kwargs"]))
        kwargs = with_values_of_older_archives(data, kwargs, ADDED_ARGUMENTS)
        data["policy_kwargs"] = _policy_kwargs_to_load(data, kwargs, path)
        # Every decoded entry is handed to SB3's load, which then unpickles only what a trusting caller left out;
        # lr_schedule is rebuilt from learning_rate by _setup_model
        return super().load(
            path,
            env=env,
            device=device,
            custom_objects={**data, **dict.fromkeys(REBUILT_ENTRIES)},
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )

    def load_replay_buffer(
        self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True, safe: bool = True
    ) -> None:
        """
        Load a replay buffer from a pickle file (see ``OffPolicyAlgorithm.load_replay_buffer``). By default
        (``safe=True``) no code from the file runs: it is read by the allow-listed unpickler of
        ``sb3_qsm.common.safe_pickle``, plain or gzip-compressed (as the benchmark runner keeps its checkpoints'
        buffers), and a truncated or corrupt file is refused with an error naming it. ``safe=False`` unpickles it as
        SB3 does, which runs any code it holds (only for files you trust) and reads plain pickles only.

        :param path: Path to the pickled replay buffer
        :param truncate_last_traj: With a ``HerReplayBuffer``: whether the last trajectory in the buffer was finished
            (and is truncated), or continues
        :param safe: Run no code from the file
        """
        if not safe:
            super().load_replay_buffer(path, truncate_last_traj)
            return
        buffer = read_pickle_file(path, "replay buffer")
        if not isinstance(buffer, ReplayBuffer):
            raise ValueError(f"{path} does not hold a Stable-Baselines3 ReplayBuffer (got {type(buffer).__name__})")
        if isinstance(buffer, HerReplayBuffer):
            if self.env is None:
                raise ValueError(f"Cannot load the HerReplayBuffer {path} without an environment: pass env to load first")
            buffer.set_env(self.env)
            if truncate_last_traj:
                buffer.truncate_last_trajectory()
        # The device of this model, not the one the buffer was saved from (SB3 GH#1561)
        buffer.device = self.device
        self.replay_buffer = buffer

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """
        Save the model to a zip file; ``load`` rebuilds the policy from ``policy_kwargs``, which therefore first
        records any sampler setting (``sampler_temperature``, ``sampler``, ``clip_sampler``) changed on the actor since
        it was built.
        A path is written atomically: to a temporary file in the same folder, renamed into place once complete, so a
        process killed during the save leaves the previous file whole.

        :param path: path to the file where the rl agent should be saved
        :param exclude: name of parameters that should be excluded in addition to the default ones
        :param include: name of parameters that might be excluded but should be included anyway
        """
        for name in SAMPLER_SETTINGS:
            value = getattr(self.actor, name)
            if value != self.policy_kwargs.get(name, self.policy.actor_kwargs[name]):
                self.policy_kwargs[name] = value
        if isinstance(path, io.BufferedIOBase):
            super().save(path, exclude, include)
            return
        with atomic_file(path, suffix="zip") as file:
            super().save(file, exclude, include)

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """
        Save the replay buffer as a pickle file (as SB3 does), written to a temporary file and renamed into place, so
        that a process killed during the save leaves the previous file whole.

        :param path: Path to the file where the replay buffer should be saved (``.pkl`` is added if it has no suffix)
        """
        if isinstance(path, io.BufferedIOBase):
            super().save_replay_buffer(path)
            return
        with atomic_file(path, suffix="pkl") as file:
            super().save_replay_buffer(file)

    def _excluded_save_params(self) -> list[str]:
        # The diffusion settings live in the actor (and policy_kwargs); archives of sb3-qsm 0.1 also stored them
        # at the top level, which load puts back into __dict__, where they must not be saved again
        # compile is a way to run the model, like device, not a property of it: a loaded model runs eagerly unless
        # load is given compile=True
        return [
            *super()._excluded_save_params(),
            "actor",
            "critic",
            "critic_target",
            *DIFFUSION_POLICY_ARGS,
            "compile",
            "_colored_noise",
            "compile_kwargs",
            "_critic_loss_fn",
            "_actor_loss_fn",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "actor.optimizer", "critic.optimizer"]
        return state_dicts, []


def _check_saved_policy(
    stored: dict[str, Any], path: Any, custom_objects: dict[str, Any] | None, safe: bool, algo_name: str
) -> None:
    """
    Refuse a checkpoint of another algorithm before anything else of it is decoded. Its policy class is read without
    running code; one outside the allow-list (a user's own class) is refused with ``safe``, and left to the check of
    SB3's load otherwise.

    :param stored: The checkpoint's ``data`` entry, parsed
    :raises ValueError: naming the file and the policy it holds
    """
    if custom_objects is not None and "policy_class" in custom_objects:
        policy_class = custom_objects["policy_class"]
    else:
        try:
            policy_class = decode_checkpoint_entry(stored, "policy_class", path)
        except ValueError:
            if safe:
                raise
            return
    check_policy_class({"policy_class": policy_class}, DiffusionActorPolicy, algo_name, path)


def _policy_kwargs_to_load(data: dict[str, Any], kwargs: dict[str, Any], path: Any) -> dict[str, Any]:
    """
    Take the diffusion settings out of ``load``'s extra arguments, where ``BaseAlgorithm.load`` would set them as
    attributes that the actor never reads, and give an archive saved before ``sampler`` existed the sampler it
    trained with (every later archive records it in ``policy_kwargs``).

    :param data: Decoded ``data`` entry of the checkpoint
    :param kwargs: ``load``'s extra arguments; the diffusion settings are removed from it
    :param path: The checkpoint, for the messages
    :return: The ``policy_kwargs`` to build the policy from: the saved ones, with the given ``sampler_temperature``
        and ``sampler``
    :raises ValueError: for a ``n_diffusion_steps`` or ``beta_schedule`` other than the saved one, or an unusable
        ``sampler_temperature`` or ``sampler``
    """
    saved = dict(data.get("policy_kwargs") or {})
    for name in FIXED_DIFFUSION_ARGS:
        if name not in kwargs:
            continue
        value = kwargs.pop(name)
        if value != saved.get(name):
            raise ValueError(
                f"Cannot load {path} with {name}={value!r}: its denoiser was trained with {name}={saved.get(name)!r}, "
                "which a loaded model keeps. Train a new model (or convert this one) to use another value."
            )
    saved = {**ARGUMENTS_OF_OLDER_FILES, **saved}
    if "sampler_temperature" in kwargs:
        check_sampler_temperature(kwargs["sampler_temperature"])
        saved["sampler_temperature"] = kwargs.pop("sampler_temperature")
    if "sampler" in kwargs:
        check_sampler(kwargs["sampler"])
        saved["sampler"] = kwargs.pop("sampler")
    return saved

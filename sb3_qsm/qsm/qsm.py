"""Q-Score Matching (QSM) as a Stable-Baselines3 off-policy algorithm."""

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from pink import ColoredNoiseProcess
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import get_parameters_by_name

from sb3_qsm.common.compilation import check_compile_args
from sb3_qsm.common.schedules import check_diffusion_args
from sb3_qsm.common.utils import check_bool
from sb3_qsm.qsm.arguments import (
    DEFAULT_TOP_QUANTILES_TO_DROP,
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
    check_top_quantiles_to_drop,
    resolve_n_quantiles,
    time_limit,
    without_own_n_step_replay,
)
from sb3_qsm.qsm.exploration import ColoredSamplerNoise
from sb3_qsm.qsm.persistence import QSMCheckpoints
from sb3_qsm.qsm.policies import CnnPolicy, DiffusionActorPolicy, MlpPolicy, MultiInputPolicy
from sb3_qsm.qsm.presets import PAPER_HYPERPARAMS, PAPER_NOISE_STD
from sb3_qsm.qsm.training import QSMTrainingStep

SelfQSM = TypeVar("SelfQSM", bound="QSM")

# Exploration defaults, measured on the screen and in probes (docs: guide/parameters): pink sampler noise, and a floor
# of 0.6 under the posterior target's spread. With TQC's critics the floor of 0.3 let the four-peak bandit's policy
# settle on one peak (seed 0); 0.6 keeps its four modes on seeds 0-4 and finds MountainCarContinuous-v0's goal within
# 21k steps on 5 of 5 seeds (benchmarks/probes)
DEFAULT_SAMPLER_NOISE_COLOR = 1.0
DEFAULT_Q_SPREAD_FLOOR = 0.6
# The actor is updated every second critic update, as TD3's and SDAC's are: the step then costs 1.6x SAC's rather than
# 2x with TQC's critics (the default critics, see DiffusionActorPolicy). Its returns on seed 0 with TQC's critics
# (benchmarks/probes): HalfCheetah-v5 5123 with the delay, 4977 without; Hopper-v5 1365 and 2941, a seed that stood at
# 2508 at 80k with the delay: single seeds of a task whose seeds spread as much
DEFAULT_POLICY_DELAY = 2


class QSM(QSMCheckpoints, ColoredSamplerNoise, QSMTrainingStep):
    """
    Q-Score Matching (QSM): a diffusion-model policy trained by matching its score to one built from the critics.

    Paper: "Learning a Diffusion Model Policy from Rewards via Q-Score Matching", Psenka, Escontrela, Abbeel, Ma,
    ICML 2024, https://arxiv.org/abs/2312.11752.
    Original implementation: https://github.com/Alescontrela/score_matching_rl

    Each gradient step updates the critics with a TD target built from a fresh diffusion sample at the next
    observation (plus Gaussian target noise; by default TQC's truncated quantile critics, or the min over the target
    critics with plain ones), and every ``policy_delay`` steps regresses the denoiser
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
    :param policy_delay: The actor is updated once every ``policy_delay`` critic updates (paper: 1; TD3 and SDAC: 2).
        The target critics are updated at every critic update, as in the paper. Default 2 (archives saved before
        keep the 1 they were trained with)
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
        a critic forward pass over ``batch_size * (n_score_samples + 1)`` actions instead of a backward pass. Up to
        the spread, it is the estimator of SDAC (Ma et al., ICML 2025, "reverse sampling score matching") and of
        MaxEntDP's Q-weighted noise estimation (Dong et al., ICML 2025), which weight by ``exp(Q / temperature)``.
    :param n_score_samples: Candidate actions per sample of the ``"posterior"`` target (at least 2). Its cost grows
        linearly with them; 8 keep the bandit's peaks (docs: guide/multimodal)
    :param score_proposal: Where the ``"posterior"`` target draws its candidates. ``"forward"`` (the default): all
        from the forward process's posterior ``q(a_0 | a_t)``, nearly uniform on the box at the noisy steps.
        ``"policy"``: half of them around the actor's own estimate of the clean action (from the noise it predicts
        at ``a_t``), weighted against the mixture of the two proposals, so that the target stays the same while the
        candidates follow the policy (see ``DiffusionSchedule.posterior_mean``)
    :param score_actions: Which clean actions the actor loss noises into ``a_t`` (and, with the ``"posterior"``
        target, keeps as the extra candidate). ``"mixed"`` (the default): the policy's own samples for the rows
        noised to the clean half of the steps (``t < T // 2``), which place the action, and the replay actions for
        the others, which choose among the policy's modes and are drawn back by the replay to the modes the policy
        once found. ``"replay"`` (the paper's): the replay actions at every step, so the posterior target leans
        towards the data's actions, which at the noisy steps outweigh the nearly uniform candidates (on HalfCheetah
        they carry more than half of the weight): the policy then becomes a Q-weighted copy of its replay, older
        behaviour included. ``"policy"``: the policy's samples at every step, so that the target's fixed point is
        the policy ``exp(score_scale * Q / spread)`` itself, but a policy anchored on itself alone can drift away
        from a mode it found (the four-peak bandit settles on one peak on one seed of three). The policy's samples
        are those the critic target drew at the batch's next observations, so they cost no extra chain (with
        ``deterministic_target``, whose chain is noise-free, a chain is drawn at the observations); ``bc_coef``'s
        term keeps the replay actions either way
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
        Default 0.6 (archives saved before keep theirs: 0 before the argument existed)
    :param sampler_noise_color: Exponent ``beta`` of the power spectrum ``1 / f^beta`` of the sampler's noise over
        the steps of an environment while collecting data (the chain's start and injected noise, drawn by
        pink-noise-rl's ``ColoredNoiseProcess``, one series per environment and noise coordinate, as long as an
        episode): 0, white noise, independent at every step; 1, pink noise; 2, red noise. Every action is still a
        sample of the policy, but successive ones are correlated, so exploration pushes in one direction for a while
        (Eberhard et al., "Pink Noise Is All You Need", ICLR 2023). Used where the policy acts with the sampler alone
        (``best_of_n = 1`` or ``selection_temperature = math.inf``); ``predict`` itself always draws white noise.
        Default 1 (0 in archives saved before the argument existed)
    :param top_quantiles_to_drop_per_net: With TQC's critics (the default, see ``DiffusionActorPolicy``'s
        ``n_quantiles``), how many of the largest target quantiles of each network the TD target leaves out of the
        pooled quantiles (TQC's truncation, which controls overestimation as the minimum of two critics does); TQC's
        default, 2
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
        policy_delay: int = DEFAULT_POLICY_DELAY,
        actor_lr_decay_steps: int | None = None,
        bc_coef: float = 0.0,
        score_target: str = "posterior",
        n_score_samples: int = 8,
        score_proposal: str = "forward",
        score_actions: str = "mixed",
        target_diffusion_steps: int | str | None = "auto",
        q_spread_floor: float = DEFAULT_Q_SPREAD_FLOOR,
        sampler_noise_color: float = DEFAULT_SAMPLER_NOISE_COLOR,
        top_quantiles_to_drop_per_net: int = DEFAULT_TOP_QUANTILES_TO_DROP,
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
        # Every model records its critics' quantiles, so that an archive without them is one of plain critics
        policy_kwargs["n_quantiles"] = resolve_n_quantiles(
            policy_kwargs.get("n_quantiles", "auto"), policy_kwargs.get("critic_batch_norm", False)
        )
        check_top_quantiles_to_drop(top_quantiles_to_drop_per_net, policy_kwargs["n_quantiles"])
        check_target_diffusion_steps(target_diffusion_steps, n_diffusion_steps)
        check_off_policy_args(buffer_size, learning_starts, batch_size, tau, gamma, n_steps)
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
            n_steps=int(n_steps),
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
        self.top_quantiles_to_drop_per_net = int(top_quantiles_to_drop_per_net)
        self._colored_noise: ColoredNoiseProcess | None = None
        self.compile = compile
        self.compile_kwargs = compile_kwargs

        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        check_action_space(self.action_space)
        flattens = not issubclass(self.policy_class, CnnPolicy | MultiInputPolicy)
        check_image_policy(self.observation_space, flattens, self.policy_kwargs)
        self.replay_buffer_class, self.replay_buffer_kwargs = without_own_n_step_replay(
            self.replay_buffer_class, self.replay_buffer_kwargs, self.n_steps, self.gamma
        )
        super()._setup_model()
        self._create_aliases()
        # Running mean and running var of batch norm layers, copied to the target (SB3 GH#996)
        self.critic_batch_norm_stats = get_parameters_by_name(self.critic, ["running_"])
        self.critic_batch_norm_stats_target = (
            [] if self.critic_target is None else get_parameters_by_name(self.critic_target, ["running_"])
        )
        self._setup_losses()

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

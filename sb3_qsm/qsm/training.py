"""
The training step of QSM: per gradient step, the critics' TD update (``sb3_qsm.qsm.critic_update``), the actor's
score-matching update (every ``policy_delay`` steps, here) and the target critics' Polyak update.
``QSMTrainingStep`` holds it for ``QSM``, which adds what the algorithm is built from, how it acts and how it is
saved (``sb3_qsm.qsm.qsm``, ``sb3_qsm.qsm.persistence``).
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.utils import update_learning_rate
from torch.nn import functional as F

from sb3_qsm.common.compilation import check_compile_args, compile_options
from sb3_qsm.common.critics import MIN_Q_SPREAD, candidate_q_values, q_values
from sb3_qsm.common.utils import where_rows
from sb3_qsm.qsm.arguments import target_chain_steps
from sb3_qsm.qsm.critic_update import CriticUpdate


class QSMTrainingStep(CriticUpdate):
    """
    The gradient step of Q-Score Matching, with the settings it reads (set by ``QSM.__init__``, documented there).
    Not an algorithm of its own: ``QSM`` is.
    """

    score_scale: float
    policy_delay: int
    actor_lr_decay_steps: int | None
    bc_coef: float
    score_target: str
    n_score_samples: int
    score_proposal: str
    score_actions: str
    q_spread_floor: float
    compile: bool
    compile_kwargs: dict[str, Any] | None

    def _setup_losses(self) -> None:
        """
        Choose the loss functions of the training step: the methods themselves, or their ``torch.compile``d versions
        (and the actor's compiled sampler) with ``compile=True``. ``load`` sets ``compile`` anew (it is not saved), so
        the check runs here too.
        """
        check_compile_args(self.compile, self.compile_kwargs)
        self._critic_loss_fn: Callable[..., tuple[th.Tensor, th.Tensor]] = self._critic_loss
        self._actor_loss_fn: Callable[..., tuple[th.Tensor, th.Tensor]] = self._actor_loss
        if self.compile:
            options = compile_options(self.device, self.compile_kwargs)
            self.actor.compile_sampler(**options)
            self._critic_loss_fn = th.compile(self._critic_loss, **options)
            self._actor_loss_fn = th.compile(self._actor_loss, **options)

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])

        actor_losses, critic_losses = [], []
        diagnostics: dict[str, list[float]] = {}
        critic_parameters: list[th.Tensor] = list(self.critic.parameters())
        target_parameters: list[th.Tensor] = [] if self.critic_target is None else list(self.critic_target.parameters())
        for _ in range(gradient_steps):
            self._n_updates += 1
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            critic_loss, next_samples = self._update_critic(replay_data)
            critic_losses.append(critic_loss)

            if self._n_updates % self.policy_delay == 0:
                actor_loss, target_stats = self._update_actor(replay_data, next_samples)
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

    def _update_actor(
        self, replay_data: ReplayBufferSamples, next_samples: th.Tensor | None = None
    ) -> tuple[float, dict[str, float]]:
        """
        One actor step on ``_actor_loss`` (compiled when ``compile`` is set).

        :param replay_data: A batch from the replay buffer
        :param next_samples: The policy's samples at its next observations that the critic update drew, if any
        :return: The actor loss, and a statistic of the target to log: the mean L2 norm of the critic's action
            gradient (``q_grad_norm``) or the critic's spread over the candidates (``q_spread``, see
            ``posterior_noise``)
        """
        actor_loss, target_statistic = self._actor_loss_fn(
            replay_data.observations, replay_data.actions, replay_data.next_observations, next_samples
        )
        if self.actor_lr_decay_steps is not None:
            update_learning_rate(self.actor.optimizer, self._actor_learning_rate())
        loss_value = actor_loss.item()
        self._check_finite("actor_loss", loss_value)
        self.actor.optimizer.zero_grad()
        actor_loss.backward()
        self.actor.optimizer.step()
        statistic_name = "q_spread" if self.score_target == "posterior" else "q_grad_norm"
        return loss_value, {statistic_name: target_statistic.item()}

    def _actor_loss(
        self,
        observations: Any,
        actions: th.Tensor,
        next_observations: Any = None,
        next_samples: th.Tensor | None = None,
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        The Q-score matching loss (paper section 4, reference ``update_actor``): noise the replay action (or a fresh
        sample of the policy, see ``score_actions``), ``a_t = sqrt(alpha_bar_t) a + sqrt(1 - alpha_bar_t) eps`` with
        ``t ~ U{0..T-1}``, and regress
        ``eps_theta(s, a_t, t)`` onto ``-score_scale * grad_{a_t} mean_i Q_i(s, a_t)`` (or onto ``posterior_noise``,
        see ``score_target``), plus ``bc_coef`` times the denoising loss on the replay action.

        :param observations: Observations of a replay batch
        :param actions: Their actions, in ``[-1, 1]``
        :param next_observations: Their next observations, or None
        :param next_samples: The policy's samples at the next observations that the critic target drew, or None
        :return: The loss, and the critic's spread over the candidates (posterior target) or the mean L2 norm of
            its action gradient (gradient target)
        """
        timesteps = self.actor.schedule.sample_timesteps(actions.shape[0], actions.device)
        score_observations, clean = self._score_batch(observations, actions, next_observations, next_samples, timesteps)
        noisy_actions, timesteps, noise = self.actor.schedule.sample_noisy_actions(clean, timesteps)
        eps_pred = self.actor.predict_noise(score_observations, noisy_actions, timesteps)
        if self.score_target == "posterior":
            target, target_statistic = self._posterior_target(score_observations, noisy_actions, timesteps, clean, eps_pred)
        else:
            q_grad = self.q_score(score_observations, noisy_actions)
            target, target_statistic = -self.score_scale * q_grad, q_grad.norm(dim=1).mean()
        actor_loss = F.mse_loss(eps_pred, target)
        if self.bc_coef > 0:
            actor_loss = actor_loss + self.bc_coef * self._denoising_loss(observations, actions, eps_pred, noise)
        return actor_loss, target_statistic

    def _score_batch(
        self,
        observations: Any,
        actions: th.Tensor,
        next_observations: Any,
        next_samples: th.Tensor | None,
        timesteps: th.Tensor,
    ) -> tuple[Any, th.Tensor]:
        """
        The observations and clean actions the actor loss noises (see ``score_actions``). Fresh samples of the policy
        are those the critic target drew at the next observations, which cost nothing more; where it drew none
        (``deterministic_target``, or a caller without them) they are drawn at the observations, on the critic
        target's chain (no gradient).

        :param observations: Observations of a replay batch
        :param actions: Their actions, in ``[-1, 1]``
        :param next_observations: Their next observations, or None
        :param next_samples: The policy's samples at the next observations that the critic target drew, or None
        :param timesteps: The diffusion step each row will be noised to
        :return: The replay batch (``"replay"``); fresh samples of the policy and their observations (``"policy"``);
            or those for the rows noised to the clean half of the steps (``t < T // 2``) and the replay batch for the
            others (``"mixed"``)
        """
        if self.score_actions == "replay":
            return observations, actions
        if next_samples is not None and next_observations is not None and not self.deterministic_target:
            policy_observations, samples = next_observations, next_samples
        else:
            with th.no_grad():
                n_steps = target_chain_steps(self.target_diffusion_steps, self.actor.n_diffusion_steps)
                policy_observations, samples = observations, self.actor.sample(observations, n_steps=n_steps)
        if self.score_actions == "policy":
            return policy_observations, samples
        on_policy = timesteps < self.actor.n_diffusion_steps // 2
        return where_rows(on_policy, policy_observations, observations), where_rows(on_policy, samples, actions)

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

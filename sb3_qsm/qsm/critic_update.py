"""
The critics' side of QSM's training step: the TD update of the critics (SB3's ``ContinuousCritic`` with the minimum
of two target values, CrossQ's critics without target networks, or TQC's quantile critics), the next actions their
target is built from, and the target critics' Polyak update. ``sb3_qsm.qsm.training`` adds the actor's update and
the loop over gradient steps.
"""

import math
from collections.abc import Callable
from typing import Any

import torch as th
from sb3_contrib.crossq.policies import CrossQCritic
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from sb3_qsm.common.critics import LayeredCritic, QuantileCritic, q_values
from sb3_qsm.common.quantile_loss import quantile_huber_loss
from sb3_qsm.common.utils import cat_rows
from sb3_qsm.qsm.actor import DiffusionActor
from sb3_qsm.qsm.arguments import target_chain_steps
from sb3_qsm.qsm.policies import DiffusionActorPolicy


class CriticUpdate(OffPolicyAlgorithm):
    """
    The critics' update of Q-Score Matching, with the settings it reads (set by ``QSM.__init__``, documented there).
    Not an algorithm of its own: ``QSM`` is.
    """

    policy: DiffusionActorPolicy
    actor: DiffusionActor
    critic: LayeredCritic
    critic_target: LayeredCritic | None
    critic_batch_norm_stats: list[th.Tensor]
    critic_batch_norm_stats_target: list[th.Tensor]
    top_quantiles_to_drop_per_net: int
    target_policy_noise: float
    target_noise_clip: float | None
    deterministic_target: bool
    target_diffusion_steps: int | str | None
    _critic_loss_fn: Callable[..., tuple[th.Tensor, th.Tensor]]

    def _update_target_critic(self, critic_parameters: list[th.Tensor], target_parameters: list[th.Tensor]) -> None:
        """
        The Polyak update of all target parameters at once, ``target + tau * (online - target)``, and a copy of the
        batch norm running statistics (see SB3 issue #996).

        :param critic_parameters: ``list(self.critic.parameters())``, made once per ``train`` call
        :param target_parameters: ``list(self.critic_target.parameters())``, likewise (critics without target
            networks, ``critic_batch_norm=True``, have nothing to update)
        """
        if self.critic_target is None:
            return
        with th.no_grad():
            th._foreach_lerp_(target_parameters, critic_parameters, self.tau)
        polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)

    def _update_critic(
        self, replay_data: ReplayBufferSamples, regularizer: Callable[[ReplayBufferSamples], th.Tensor] | None = None
    ) -> tuple[float, th.Tensor]:
        """
        One critic step on ``_critic_loss`` (compiled when ``compile`` is set).

        :param replay_data: A batch from the replay buffer
        :param regularizer: A term added to the loss, computed from the same batch (pretraining's conservative
            penalty, ``sb3_qsm.convert.pretrain``); none in QSM's own training
        :return: The critic loss (the regularizer included), and the policy's samples at the next observations that
            its target was built from (see ``_critic_target``)
        """
        # For n-step replay, discount factor is gamma**n_steps (when no early termination)
        discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
        critic_loss, next_samples = self._critic_loss_fn(
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
        return loss_value, next_samples

    def _critic_loss(
        self,
        observations: Any,
        actions: th.Tensor,
        next_observations: Any,
        rewards: th.Tensor,
        dones: th.Tensor,
        discounts: th.Tensor | float,
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        The critic loss: every critic regressed onto ``r + discount (1 - d) min_i Q'_i(s', a')``, with ``a'`` from
        ``_target_actions``. ``Q'`` are the target networks, or, for critics without them (``critic_batch_norm``),
        the critics themselves in the same pass as ``Q(s, a)``, as CrossQ does: the batch renormalisation layers see
        the replay and the policy's actions together, and the values at ``(s', a')`` get no gradient. TQC's critics
        (``n_quantiles``) take the quantile Huber loss of every network's quantiles at ``(s, a)`` against the
        truncated pooled quantiles of ``_quantile_target``, as TQC does.

        :param observations: Observations of a replay batch
        :param actions: Their actions, in ``[-1, 1]``
        :param next_observations: The next observations
        :param rewards: The rewards, shape ``(batch, 1)``
        :param dones: Whether the episode terminated, shape ``(batch, 1)``
        :param discounts: The discount of each transition (``gamma ** n`` with n-step returns), or ``gamma``
        :return: The mean over critics of the squared TD errors (the quantile Huber loss for TQC's critics), and the
            policy's samples at the next observations (see ``_critic_target``)
        """
        if isinstance(self.critic, QuantileCritic):
            target_quantiles, next_samples = self._quantile_target(next_observations, rewards, dones, discounts)
            current_quantiles = self.critic(observations, actions)
            loss = quantile_huber_loss(current_quantiles, target_quantiles)
            return loss, next_samples
        if self.critic_target is None:
            current_q_values, next_q_values, next_samples = self._joint_critic_values(observations, actions, next_observations)
            target_q_values = rewards + (1 - dones) * discounts * next_q_values
        else:
            target_q_values, next_samples = self._critic_target(next_observations, rewards, dones, discounts)
            current_q_values = q_values(self.critic, observations, actions)
        # Mean over critics, as the reference (SAC uses 0.5 * sum, TD3 the sum: only a scale for Adam)
        return F.mse_loss(current_q_values, target_q_values.expand_as(current_q_values)), next_samples

    def _quantile_target(
        self, next_observations: Any, rewards: th.Tensor, dones: th.Tensor, discounts: th.Tensor | float
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        TQC's TD target (Kuznetsov et al., ICML 2020): ``r + discount (1 - d) z'``, ``z'`` being the target networks'
        quantiles at ``(s', a')`` pooled and sorted, less the ``top_quantiles_to_drop_per_net`` largest per network.

        :return: The target quantiles, shape ``(batch, n_kept)`` (no gradient), and the policy's samples that ``a'``
            was made from (see ``_critic_target``)
        """
        assert self.critic_target is not None
        with th.no_grad():
            next_samples, next_actions = self._target_actions(next_observations)
            next_quantiles = self.critic_target(next_observations, next_actions)
            n_critics, n_quantiles = next_quantiles.shape[1:]
            n_kept = n_critics * (n_quantiles - self.top_quantiles_to_drop_per_net)
            pooled = th.sort(next_quantiles.reshape(next_quantiles.shape[0], -1)).values[:, :n_kept]
            return rewards + (1 - dones) * discounts * pooled, next_samples

    def _critic_target(
        self, next_observations: Any, rewards: th.Tensor, dones: th.Tensor, discounts: th.Tensor | float
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        :return: The TD target ``r + discount (1 - d) min_i Q'_i(s', a')``, with ``a'`` from ``_target_actions``
            (no gradient), and the policy's samples that ``a'`` was made from, which the actor update reuses as
            fresh samples of the policy (``score_actions``)
        """
        assert self.critic_target is not None
        with th.no_grad():
            next_samples, next_actions = self._target_actions(next_observations)
            next_q_values = q_values(self.critic_target, next_observations, next_actions)
            next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
            return rewards + (1 - dones) * discounts * next_q_values, next_samples

    def _joint_critic_values(
        self, observations: Any, actions: th.Tensor, next_observations: Any
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        The critics without target networks (``critic_batch_norm``), in one pass over the replay batch and the next
        observations with ``a'`` (see ``_critic_loss``), their batch renormalisation in training mode.

        :return: Every critic's ``Q(s, a)``; ``min_i Q_i(s', a')``, without gradient; and the policy's samples that
            ``a'`` was made from
        """
        assert isinstance(self.critic, CrossQCritic)
        with th.no_grad():
            next_samples, next_actions = self._target_actions(next_observations)
        self.critic.set_bn_training_mode(True)
        values = q_values(self.critic, cat_rows(observations, next_observations), th.cat([actions, next_actions]))
        self.critic.set_bn_training_mode(False)
        current_q_values, next_q_values = th.split(values, actions.shape[0])
        return current_q_values, next_q_values.detach().min(dim=1, keepdim=True).values, next_samples

    def _target_actions(self, next_observations: Any) -> tuple[th.Tensor, th.Tensor]:
        """
        The next actions of the critic target: a fresh sample of the current diffusion policy (the reference has no
        target actor), plus Gaussian noise of std ``target_policy_noise`` clipped to ``+-target_noise_clip`` (when
        set), the sum clipped to ``[-1, 1]``.

        :param next_observations: A batch of next observations
        :return: The policy's samples (its noise-free chain with ``deterministic_target``) and the actions made from
            them, each of shape ``(batch, action_dim)``, in ``[-1, 1]``
        """
        samples = next_actions = self.actor.sample(
            next_observations,
            deterministic=self.deterministic_target,
            n_steps=target_chain_steps(self.target_diffusion_steps, self.actor.n_diffusion_steps),
        )
        if self.target_policy_noise > 0:
            noise = th.randn_like(next_actions) * self.target_policy_noise
            if self.target_noise_clip is not None:
                noise = noise.clamp(-self.target_noise_clip, self.target_noise_clip)
            next_actions = (next_actions + noise).clamp(-1.0, 1.0)
        return samples, next_actions

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

"""
Q-values of SB3's ``ContinuousCritic`` as the training step needs them: every critic's value in one tensor, and the
values of several candidate actions per observation with the observation's share of the first layer computed once.

The parameters stay those of ``ContinuousCritic`` (``qf0``, ``qf1``, ..., each an MLP on ``[features, action]``), so
saving, loading and the conversion from SAC or TD3 see the same modules; only the arithmetic is arranged differently
(and its large products run through ``sb3_qsm.common.linear``). A critic of another class, or a subclass with a
``forward`` of its own, is evaluated by calling it.
"""

from typing import Any, TypeGuard, cast

import torch as th
from stable_baselines3.common.policies import ContinuousCritic
from torch import nn

from sb3_qsm.common.linear import apply_mlp, linear, skip_first
from sb3_qsm.common.utils import repeat_rows

# Floor of the critics' spread over candidate actions wherever values are divided by it (a flat critic then gives
# uniform weights rather than a division by zero)
MIN_Q_SPREAD = 1e-6


def has_standard_layout(critic: nn.Module) -> TypeGuard[ContinuousCritic]:
    """
    :param critic: A critic module
    :return: Whether it computes its values as SB3's ``ContinuousCritic`` does (its class or a subclass that keeps
        its ``forward``), so that the values can be computed from its layers here
    """
    return isinstance(critic, ContinuousCritic) and type(critic).forward is ContinuousCritic.forward


def critic_features(critic: ContinuousCritic, observations: Any) -> th.Tensor:
    """
    The critic's observation features. As in ``ContinuousCritic.forward``, a features extractor shared with the
    actor gets no gradient from the critic.

    :param critic: The critic
    :param observations: A batch of observations (tensors, or a dict of them)
    :return: Features, shape ``(batch, features_dim)``
    """
    with th.set_grad_enabled(th.is_grad_enabled() and not critic.share_features_extractor):
        return critic.extract_features(observations, critic.features_extractor)


def q_values(critic: nn.Module, observations: Any, actions: th.Tensor) -> th.Tensor:
    """
    Every critic's ``Q(s, a)``: ``th.cat(critic(observations, actions), dim=1)``.

    :param critic: The critic (a ``ContinuousCritic``, or any module with its call signature)
    :param observations: A batch of observations
    :param actions: Actions in ``[-1, 1]``, shape ``(batch, action_dim)``
    :return: Q-values, shape ``(batch, n_critics)``
    """
    if not has_standard_layout(critic):
        return th.cat(critic(observations, actions), dim=1)
    inputs = th.cat([critic_features(critic, observations), actions], dim=1)
    return th.cat([apply_mlp(q_net, inputs) for q_net in _q_networks(critic)], dim=1)


def candidate_q_values(critic: nn.Module, observations: Any, candidates: th.Tensor) -> th.Tensor:
    """
    Every critic's ``Q(s, a)`` for several candidate actions per observation. For a ``ContinuousCritic``, the first
    layer's pre-activation ``W_s features + W_a a + b`` is split: its observation part is computed once per
    observation and added to the action part of each of its candidates, rather than repeating the observation for
    every candidate.

    :param critic: The critic (a ``ContinuousCritic``, or any module with its call signature)
    :param observations: A batch of observations
    :param candidates: Candidate actions in ``[-1, 1]``, shape ``(batch, n_candidates, action_dim)``
    :return: Q-values, shape ``(batch, n_candidates, n_critics)``
    """
    batch, n_candidates, action_dim = candidates.shape
    if not has_standard_layout(critic):
        flat = q_values(critic, repeat_rows(observations, n_candidates), candidates.reshape(-1, action_dim))
        return flat.view(batch, n_candidates, -1)
    features = critic_features(critic, observations)
    features_dim = features.shape[1]
    per_critic = []
    for q_net in _q_networks(critic):
        first = q_net[0]
        assert isinstance(first, nn.Linear)
        observation_part = linear(features, first.weight[:, :features_dim], first.bias).unsqueeze(1)
        action_part = linear(candidates, first.weight[:, features_dim:])
        # Without autograd, the sum is written into the action part: one pass less over the largest tensors
        pre_activation = action_part + observation_part if th.is_grad_enabled() else action_part.add_(observation_part)
        per_critic.append(apply_mlp(skip_first(q_net), pre_activation))
    return th.cat(per_critic, dim=-1)


def _q_networks(critic: ContinuousCritic) -> list[nn.Sequential]:
    """:return: The critic's Q-networks, the ``nn.Sequential`` of ``create_mlp`` that ``ContinuousCritic`` builds"""
    return cast(list[nn.Sequential], critic.q_networks)

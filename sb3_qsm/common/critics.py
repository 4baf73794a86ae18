"""
Q-values of SB3's ``ContinuousCritic`` and of sb3-contrib's ``CrossQCritic`` and TQC ``Critic`` as the training step
needs them: every critic's value in one tensor, and the values of several candidate actions per observation with the
observation's share of the first layer computed once.

The parameters stay those of the critic classes (``qf0``, ``qf1``, ..., each an MLP on ``[features, action]``), so
saving, loading and the conversion from SAC or TD3 see the same modules; only the arithmetic is arranged differently
(and its large products run through ``sb3_qsm.common.linear``). The batch renormalisation layers of a ``CrossQCritic``
are, outside their training mode, an affine map of each feature (by their running statistics), which is folded into
the linear layer that follows them. A critic of another class, or a subclass with a ``forward`` of its own, is
evaluated by calling it. A TQC critic's networks output quantiles of the return; its value is their mean, a linear
function of the last hidden layer, so the mean is folded into the output layer (one output instead of
``n_quantiles``).
"""

import functools
from typing import Any, TypeAlias, TypeGuard, cast

import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm1d
from sb3_contrib.crossq.policies import CrossQCritic
from sb3_contrib.tqc.policies import Critic as QuantileCritic
from stable_baselines3.common.policies import ContinuousCritic
from torch import nn

from sb3_qsm.common.linear import Layer, apply_mlp, linear, linear_parameters
from sb3_qsm.common.utils import repeat_rows

# Floor of the critics' spread over candidate actions wherever values are divided by it (a flat critic then gives
# uniform weights rather than a division by zero)
MIN_Q_SPREAD = 1e-6

# The critic classes whose values are computed from their layers here
LayeredCritic: TypeAlias = ContinuousCritic | CrossQCritic | QuantileCritic
LAYERED_CRITICS = (ContinuousCritic, CrossQCritic, QuantileCritic)


def has_standard_layout(critic: nn.Module) -> TypeGuard[LayeredCritic]:
    """
    :param critic: A critic module
    :return: Whether it computes its values as SB3's ``ContinuousCritic``, sb3-contrib's ``CrossQCritic`` or TQC's
        ``Critic`` does (their class or a subclass that keeps its ``forward``), so that the values can be computed
        from its layers here
    """
    return any(isinstance(critic, kind) and type(critic).forward is kind.forward for kind in LAYERED_CRITICS)


def critic_features(critic: LayeredCritic, observations: Any) -> th.Tensor:
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
    Every critic's ``Q(s, a)``: ``th.cat(critic(observations, actions), dim=1)``; for a TQC critic, the mean of each
    network's quantiles.

    :param critic: The critic (a ``ContinuousCritic``, a TQC critic, or any module with the former's call signature)
    :param observations: A batch of observations
    :param actions: Actions in ``[-1, 1]``, shape ``(batch, action_dim)``
    :return: Q-values, shape ``(batch, n_critics)``
    """
    if not has_standard_layout(critic):
        return th.cat(critic(observations, actions), dim=1)
    inputs = th.cat([critic_features(critic, observations), actions], dim=1)
    if _renormalises_batches(critic):
        # Training mode: the layers normalise by this batch's statistics (and update their running statistics)
        return th.cat([apply_mlp(_with_renormalise(q_net), inputs) for q_net in _q_networks(critic)], dim=1)
    return th.cat([apply_mlp(value_layers(critic, q_net), inputs) for q_net in _q_networks(critic)], dim=1)


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
    if not has_standard_layout(critic) or _renormalises_batches(critic):
        # Batch statistics over the candidates would change every value: such a critic is evaluated as it is
        flat = q_values(critic, repeat_rows(observations, n_candidates), candidates.reshape(-1, action_dim))
        return flat.view(batch, n_candidates, -1)
    features = critic_features(critic, observations)
    features_dim = features.shape[1]
    per_critic = []
    for q_net in _q_networks(critic):
        first, *following = value_layers(critic, q_net)
        weight, bias = linear_parameters(first)
        observation_part = linear(features, weight[:, :features_dim], bias).unsqueeze(1)
        action_part = linear(candidates, weight[:, features_dim:])
        # Without autograd, the sum is written into the action part: one pass less over the largest tensors
        pre_activation = action_part + observation_part if th.is_grad_enabled() else action_part.add_(observation_part)
        per_critic.append(apply_mlp(following, pre_activation))
    return th.cat(per_critic, dim=-1)


def value_layers(critic: LayeredCritic, q_net: nn.Sequential) -> list[Layer]:
    """
    :param critic: The critic that ``q_net`` belongs to
    :param q_net: One of its Q-networks
    :return: The layers that compute the network's value outside batch renormalisation's training mode: its
        layers with batch renormalisation folded in (``fold_batch_norm``), and for a TQC critic the output layer
        replaced by the mean of its rows, whose output is the mean of the network's quantiles
    """
    layers = fold_batch_norm(q_net)
    if isinstance(critic, QuantileCritic):
        weight, bias = linear_parameters(layers[-1])
        layers[-1] = (weight.mean(dim=0, keepdim=True), None if bias is None else bias.mean(dim=0, keepdim=True))
    return layers


def fold_batch_norm(q_net: nn.Sequential) -> list[Layer]:
    """
    A Q-network's layers with its batch renormalisation layers folded into the linear layers after them. Outside
    its training mode such a layer maps each feature ``x`` to ``scale (x - mean) / sqrt(var + eps) + bias`` by its
    running statistics: an affine map, which becomes a scaling of the next weight's columns and a shift of its bias.
    The activations then go through the products alone, without an elementwise pass per layer, and the first
    layer's weight can still be split between the features and the action (``candidate_q_values``).

    :param q_net: An MLP of ``create_mlp`` (batch renormalisation layers, if any, before linear layers)
    :return: Its modules, where each folded pair is a linear layer given as ``(weight, bias)`` (see ``apply_mlp``);
        the modules themselves for a network without batch renormalisation
    """
    layers: list[Layer] = []
    folded: tuple[th.Tensor, th.Tensor] | None = None
    for module in q_net:
        if isinstance(module, BatchRenorm1d):
            assert not module.training, "in training mode, batch renormalisation normalises by batch statistics"
            folded = _affine_map(module, cast(th.Tensor, module.ra_mean), cast(th.Tensor, module.ra_var))
        elif folded is not None:
            assert isinstance(module, nn.Linear), "create_mlp puts batch renormalisation before linear layers"
            scale, shift = folded
            shifted = module.weight @ shift
            layers.append((module.weight * scale, shifted if module.bias is None else module.bias + shifted))
            folded = None
        else:
            layers.append(module)
    return layers


def renormalise(layer: BatchRenorm1d, input: th.Tensor) -> th.Tensor:
    """
    ``BatchRenorm1d.forward`` in training mode: the same values, gradients and running statistics, in fewer passes
    over the batch. The variance is the mean of the squared deviations, which on CPU takes a tenth of the time of
    PyTorch's ``var`` over the rows of a row-major batch, and the normalisation and the affine map are one
    ``input * scale + shift``, their per-feature factors computed first.

    :param layer: A batch renormalisation layer in training mode
    :param input: Its input, shape ``(batch, num_features)``
    :return: Its output
    """
    batch_mean = input.mean(dim=0)
    deviations = input - batch_mean
    batch_var = (deviations * deviations).sum(dim=0) / (input.shape[0] - 1)
    mean, var = batch_mean, batch_var
    running_mean, running_var = cast(th.Tensor, layer.ra_mean), cast(th.Tensor, layer.ra_var)
    if layer.steps > layer.warmup_steps:  # type: ignore[operator]
        # Renormalisation: the batch statistics moved towards the running ones, within rmax and dmax
        running_std = (running_var + layer.eps).sqrt()
        ratio = ((batch_var + layer.eps).sqrt() / running_std).detach().clamp(1 / layer.rmax, layer.rmax)
        offset = ((batch_mean - running_mean) / running_std).detach().clamp(-layer.dmax, layer.dmax)
        mean, var = batch_mean - offset * batch_var.sqrt() / ratio, batch_var / ratio**2
    with th.no_grad():
        running_mean.lerp_(batch_mean, layer.momentum)
        running_var.lerp_(batch_var, layer.momentum)
        cast(th.Tensor, layer.steps).add_(1)
    scale, shift = _affine_map(layer, mean, var)
    return th.addcmul(shift, input, scale)


def _affine_map(layer: BatchRenorm1d, mean: th.Tensor, var: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """
    :param layer: A batch renormalisation layer
    :param mean: The mean it normalises by
    :param var: The variance it normalises by
    :return: ``(scale, shift)``, per feature, such that the layer maps ``x`` to ``x * scale + shift``:
        ``(x - mean) / sqrt(var + eps)``, then its own affine map when it has one
    """
    scale = th.rsqrt(var + layer.eps)
    shift = -mean * scale
    if layer.affine:
        return layer.scale * scale, layer.scale * shift + layer.bias
    return scale, shift


def _with_renormalise(q_net: nn.Sequential) -> list[Layer]:
    """:return: The Q-network's layers, each batch renormalisation layer (in training mode) run by ``renormalise``"""
    return [functools.partial(renormalise, module) if isinstance(module, BatchRenorm1d) else module for module in q_net]


def _renormalises_batches(critic: LayeredCritic) -> bool:
    """:return: Whether the critic has batch renormalisation layers in training mode"""
    return isinstance(critic, CrossQCritic) and any(
        isinstance(module, BatchRenorm1d) and module.training for module in critic.modules()
    )


def _q_networks(critic: LayeredCritic) -> list[nn.Sequential]:
    """:return: The critic's Q-networks, the ``nn.Sequential`` of ``create_mlp`` that the critic classes build"""
    return cast(list[nn.Sequential], critic.q_networks)

"""
Warm-start a QSM model's critics from an SB3 SAC or TD3 agent into a QSM model with ``n_quantiles=None`` (both use
SB3's ``ContinuousCritic``), from an sb3-contrib CrossQ agent into a QSM model with ``critic_batch_norm=True`` (the
same ``CrossQCritic``), or from an sb3-contrib TQC agent into a QSM model with its ``n_quantiles`` (the same TQC
``Critic``; QSM's default critics have TQC's 25).
"""

import io
import pathlib

import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm1d
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file

from sb3_qsm.common.checkpoint import decode_checkpoint_entry, read_checkpoint_json
from sb3_qsm.qsm.qsm import QSM


def _source_state(source: str | pathlib.Path | io.BufferedIOBase | BaseAlgorithm) -> tuple[dict[str, th.Tensor], object]:
    """
    :param source: A checkpoint or a loaded model
    :return: The source policy's ``state_dict`` and its critic activation function (``None`` if unknown)
    """
    if isinstance(source, BaseAlgorithm):
        critic = getattr(source.policy, "critic", None)
        activation_fn = _activation_of(critic) if isinstance(critic, th.nn.Module) and hasattr(critic, "q_networks") else None
        return source.policy.state_dict(), activation_fn
    policy_kwargs = decode_checkpoint_entry(read_checkpoint_json(source), "policy_kwargs", source)
    activation_fn = (policy_kwargs or {}).get("activation_fn", th.nn.ReLU)
    _, params, _ = load_from_zip_file(source, load_data=False, device="cpu")
    if "policy" not in params:
        raise ValueError(f"Cannot warm-start from {source}: the checkpoint has no policy weights")
    return dict(params["policy"]), activation_fn


def _activation_of(critic: th.nn.Module) -> type[th.nn.Module] | None:
    """
    :param critic: A ``ContinuousCritic``, a ``CrossQCritic`` or a TQC ``Critic``
    :return: The class of the first activation layer of its first Q-network, past its linear and batch
        renormalisation layers (``None`` if it has none)
    """
    for module in critic.q_networks[0]:  # type: ignore[union-attr, index]
        if not isinstance(module, (th.nn.Linear, BatchRenorm1d)):
            return type(module)
    return None


def load_critic_from_checkpoint(
    model: QSM, source: str | pathlib.Path | io.BufferedIOBase | BaseAlgorithm, include_target: bool = True
) -> None:
    """
    Copy the critic weights (and the target critic's) of an SB3 SAC or TD3 agent into a QSM model with plain critics
    (``policy_kwargs=dict(n_quantiles=None)``), in place; or those of an sb3-contrib CrossQ agent into a QSM model
    with ``critic_batch_norm=True`` (running statistics included), or of an sb3-contrib TQC agent into a QSM model
    with the same ``n_quantiles``.
    The actor is left untouched. The critics must have the same architecture: observation and action sizes,
    ``net_arch`` of the Q-networks, ``n_critics`` and activation function; otherwise a ``ValueError`` names the
    first mismatch, and the model is not modified.

    :param model: The QSM model to warm-start
    :param source: A SAC, TD3, CrossQ or TQC checkpoint (path or file object) or a loaded SB3 model
    :param include_target: Also copy the target critic (otherwise it is set equal to the copied critic); critics
        without target networks (``critic_batch_norm=True``) have none to copy
    """
    state, activation_fn = _source_state(source)
    critic_state = _critic_part(state, "critic.", source)
    new_critic = _matching_state(critic_state, model.critic.state_dict(), source)
    new_target = None
    if model.critic_target is not None:
        target_state = _critic_part(state, "critic_target.", source) if include_target else critic_state
        new_target = _matching_state(target_state, model.critic_target.state_dict(), source)
    expected_activation = _activation_of(model.critic)
    if activation_fn is not None and activation_fn is not expected_activation:
        raise ValueError(
            f"Cannot warm-start from {source}: its critics use {getattr(activation_fn, '__name__', activation_fn)}, the "
            f"QSM model's use {getattr(expected_activation, '__name__', None)}; pass policy_kwargs=dict(activation_fn=...) "
            "to match"
        )
    model.critic.load_state_dict(new_critic)
    if model.critic_target is not None and new_target is not None:
        model.critic_target.load_state_dict(new_target)


def _critic_part(state: dict[str, th.Tensor], prefix: str, source: object) -> dict[str, th.Tensor]:
    """
    :param state: A policy ``state_dict``
    :param prefix: ``"critic."`` or ``"critic_target."``
    :param source: The source, for the message
    :return: The entries under ``prefix``, with the prefix removed
    :raises ValueError: if there are no Q-networks under ``prefix``
    """
    part = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    if not any(key.startswith("qf") for key in part):
        raise ValueError(
            f"Cannot warm-start from {source}: it has no '{prefix[:-1]}' Q-networks (an SB3 ContinuousCritic, as in "
            "SAC or TD3); on-policy or discrete-action agents (PPO, A2C, DQN, ...) cannot be carried over"
        )
    return part


def _matching_state(source_part: dict[str, th.Tensor], expected: dict[str, th.Tensor], source: object) -> dict[str, th.Tensor]:
    """
    :param source_part: The source critic's weights, keys relative to the critic
    :param expected: The QSM critic's ``state_dict``
    :param source: The source, for the messages
    :return: The source weights, cast to the QSM critic's devices and dtypes
    :raises ValueError: naming the first missing, extra or differently shaped tensor
    """
    missing = sorted(set(expected) - set(source_part))
    extra = sorted(set(source_part) - set(expected))
    if missing or extra:
        raise ValueError(
            f"Cannot warm-start from {source}: the critics differ in architecture (net_arch, n_critics, "
            "critic_batch_norm or n_quantiles: SAC's and TD3's need n_quantiles=None in QSM's policy_kwargs): "
            f"missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for key, value in expected.items():
        if source_part[key].shape != value.shape:
            raise ValueError(
                f"Cannot warm-start from {source}: critic tensor {key} has shape {tuple(source_part[key].shape)} there "
                f"but {tuple(value.shape)} in the QSM model (different net_arch, n_quantiles or observation/action sizes)"
            )
    return {key: source_part[key].to(value.device, value.dtype) for key, value in expected.items()}

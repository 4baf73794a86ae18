"""
Pretrain a QSM agent from demonstrations, then fine-tune it online: the denoiser is fitted by denoising score matching
on the demonstrated actions (behaviour cloning of the whole action distribution), the critics by TD on the
demonstrated transitions with the pretrained actor choosing the next actions (an evaluation of the cloned policy), and
the transitions seed the replay buffer, so that ``learn`` continues from the demonstrator rather than from scratch.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm, maybe_make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import GymEnv, ReplayBufferSamples

from sb3_qsm.common.critics import q_values
from sb3_qsm.common.utils import check_bool, check_real, is_int_at_least
from sb3_qsm.convert.convert import finetuning_kwargs, fit_denoiser, set_fitted_score_scale
from sb3_qsm.convert.demonstrations import Demonstrations
from sb3_qsm.qsm.presets import CRITICS_0_1_POLICY_KWARGS, PAPER_UPDATE_POLICY_KWARGS
from sb3_qsm.qsm.qsm import QSM

PRETRAIN_BATCH_SIZE = 256
PRETRAIN_LEARNING_RATE = 1e-3
# Weight of the conservative penalty on the critics' fit, measured on the shipped HalfCheetah SAC agent's rollouts
# (docs: guide/pretrain): with 5 the fitted critics' gradient fits a positive score scale and 20k fine-tuning steps
# keep 91% of the demonstrator's return; without the penalty it points away from the data and fine-tuning collapses
PRETRAIN_CONSERVATIVE_WEIGHT = 5.0


def demonstrations_buffer(model: QSM, demonstrations: Demonstrations) -> ReplayBuffer:
    """
    :param model: The QSM model (its spaces and device)
    :param demonstrations: The transitions
    :return: A replay buffer holding exactly the demonstrations, actions in ``[-1, 1]``, to sample minibatches from
    """
    return _demonstrations_buffer(model, demonstrations, _scaled_actions(model, demonstrations))


def fill_replay_buffer(model: QSM, demonstrations: Demonstrations) -> None:
    """
    Add the demonstrations to ``model``'s replay buffer, as if they had been collected by its environments: with ``n``
    environments, each gets a contiguous ``1/n`` of them (n-step returns stay within episodes), and the last
    ``len % n`` transitions are left out.

    :param model: The QSM model
    :param demonstrations: The transitions
    """
    _fill_replay_buffer(model, demonstrations, _scaled_actions(model, demonstrations))


def _scaled_actions(model: QSM, demonstrations: Demonstrations) -> np.ndarray:
    """:return: The demonstrated actions in ``[-1, 1]``, once their shapes and bounds are checked against ``model``'s"""
    demonstrations.check_spaces(model.observation_space, model.action_space)
    return model.policy.scale_action(demonstrations.actions)


def _demonstrations_buffer(model: QSM, demonstrations: Demonstrations, scaled_actions: np.ndarray) -> ReplayBuffer:
    size = len(demonstrations)
    buffer = ReplayBuffer(size, model.observation_space, model.action_space, device=model.device)
    buffer.observations[:, 0] = demonstrations.observations.reshape(buffer.observations[:, 0].shape)
    buffer.next_observations[:, 0] = demonstrations.next_observations.reshape(buffer.next_observations[:, 0].shape)
    buffer.actions[:, 0] = scaled_actions.reshape(size, -1)
    buffer.rewards[:, 0] = demonstrations.rewards
    buffer.dones[:, 0] = demonstrations.episode_ends
    buffer.timeouts[:, 0] = demonstrations.timeouts
    buffer.full = True
    return buffer


def _fill_replay_buffer(model: QSM, demonstrations: Demonstrations, scaled_actions: np.ndarray) -> None:
    assert model.replay_buffer is not None
    n_envs = model.n_envs
    per_env = len(demonstrations) // n_envs
    if per_env == 0:
        raise ValueError(f"{len(demonstrations)} demonstrated transitions cannot fill {n_envs} environments' replay columns")

    def columns(values: np.ndarray, step: int) -> np.ndarray:
        # Row `step` of every environment's contiguous share
        return values[step : per_env * n_envs : per_env]

    for step in range(per_env):
        model.replay_buffer.add(
            columns(demonstrations.observations, step),
            columns(demonstrations.next_observations, step),
            columns(scaled_actions, step),
            columns(demonstrations.rewards, step),
            columns(demonstrations.episode_ends, step),
            [{"TimeLimit.truncated": bool(timeout)} for timeout in columns(demonstrations.timeouts, step)],
        )


def conservative_penalty(model: QSM, weight: float) -> Callable[[ReplayBufferSamples], th.Tensor]:
    """
    The conservative penalty of CQL (Kumar et al., 2020; the form that samples actions uniformly): ``weight`` times
    the critics' mean value at uniformly drawn actions minus their mean value at the demonstrated actions. TD alone
    fits the critics at the demonstrated actions only and leaves them free elsewhere, where they often rise: their
    action gradient then points away from the demonstrations, and QSM's update follows it. The penalty lowers the
    values away from the data, so that the gradient points back to it.

    :param model: The QSM model
    :param weight: The penalty's weight
    :return: The penalty of a batch
    """

    def penalty(batch: ReplayBufferSamples) -> th.Tensor:
        uniform = th.rand_like(batch.actions) * 2.0 - 1.0
        away = q_values(model.critic, batch.observations, uniform)
        at_data = q_values(model.critic, batch.observations, batch.actions)
        return weight * (away.mean() - at_data.mean())

    return penalty


def fit_critics(
    model: QSM,
    buffer: ReplayBuffer,
    gradient_steps: int,
    batch_size: int = PRETRAIN_BATCH_SIZE,
    conservative_weight: float = 0.0,
) -> float:
    """
    Fit ``model``'s critics by TD on the transitions of ``buffer``, the model's own update with its actor choosing
    the next actions and its target critics moving by Polyak averaging: with an actor that imitates the data, the
    critics learn the value of the demonstrated behaviour.

    :param model: The QSM model, with its pretrained actor
    :param buffer: The transitions to fit on
    :param gradient_steps: Number of critic updates
    :param batch_size: Minibatch size
    :param conservative_weight: Weight of :func:`conservative_penalty` (0: plain TD)
    :return: The mean critic loss over the last 100 updates (the penalty included)
    """
    model.policy.set_training_mode(True)
    critic_parameters: list[th.Tensor] = list(model.critic.parameters())
    target_parameters: list[th.Tensor] = [] if model.critic_target is None else list(model.critic_target.parameters())
    regularizer = conservative_penalty(model, conservative_weight) if conservative_weight > 0 else None
    losses = []
    for _ in range(gradient_steps):
        loss, _ = model._update_critic(buffer.sample(batch_size, env=model._vec_normalize_env), regularizer)
        losses.append(loss)
        model._update_target_critic(critic_parameters, target_parameters)
    model.policy.set_training_mode(False)
    return float(np.mean(losses[-100:]))


def pretrain(
    model: QSM,
    demonstrations: Demonstrations,
    actor_steps: int = 20_000,
    critic_steps: int = 20_000,
    batch_size: int = PRETRAIN_BATCH_SIZE,
    learning_rate: float = PRETRAIN_LEARNING_RATE,
    add_to_replay_buffer: bool = True,
    conservative_weight: float = PRETRAIN_CONSERVATIVE_WEIGHT,
) -> dict[str, float]:
    """
    Pretrain a QSM model on demonstrations, in place: fit the denoiser on the demonstrated actions (denoising score
    matching), then the critics on the transitions (:func:`fit_critics`), then add the transitions to the replay
    buffer. With ``VecNormalize``, observations are normalised with the wrapper's statistics of the time.

    :param model: The QSM model
    :param demonstrations: The transitions (:class:`Demonstrations`)
    :param actor_steps: Gradient steps of the denoiser's fit (0: leave the actor as it is)
    :param critic_steps: Critic updates (0: leave the critics as they are)
    :param batch_size: Minibatch size of both fits
    :param learning_rate: Adam learning rate of the denoiser's fit (a fresh optimizer; the critics use their own)
    :param add_to_replay_buffer: Add the transitions to the replay buffer (see :func:`fill_replay_buffer`)
    :param conservative_weight: Weight of the critics' :func:`conservative_penalty` (0: plain TD; see
        ``PRETRAIN_CONSERVATIVE_WEIGHT``)
    :return: The final losses: ``actor_loss`` (denoising) and ``critic_loss`` (TD), for the fits that ran
    """
    _check_pretrain_args(actor_steps, critic_steps, batch_size, learning_rate, add_to_replay_buffer, conservative_weight)
    scaled_actions = _scaled_actions(model, demonstrations)
    buffer = _demonstrations_buffer(model, demonstrations, scaled_actions)
    losses = {}
    if actor_steps > 0:

        def sample_batch() -> tuple[Any, th.Tensor]:
            batch = buffer.sample(batch_size, env=model._vec_normalize_env)
            return batch.observations, batch.actions

        losses["actor_loss"] = fit_denoiser(model, sample_batch, actor_steps, learning_rate)
    if critic_steps > 0:
        losses["critic_loss"] = fit_critics(model, buffer, critic_steps, batch_size, conservative_weight)
    if add_to_replay_buffer:
        _fill_replay_buffer(model, demonstrations, scaled_actions)
    return losses


def pretrain_qsm(
    demonstrations: Demonstrations,
    env: GymEnv | str,
    actor_steps: int = 20_000,
    critic_steps: int = 20_000,
    batch_size: int = PRETRAIN_BATCH_SIZE,
    learning_rate: float = PRETRAIN_LEARNING_RATE,
    score_scale: float | str = "auto",
    add_to_replay_buffer: bool = True,
    conservative_weight: float = PRETRAIN_CONSERVATIVE_WEIGHT,
    device: th.device | str = "auto",
    **qsm_kwargs: Any,
) -> QSM:
    """
    Make a QSM agent for ``env`` that starts from demonstrations (:func:`pretrain`), ready for ``learn``.

    Fine-tuning starts from a policy that imitates the demonstrator, as after ``convert_to_qsm``, and uses the same
    defaults, measured there: the paper's ``score_target="gradient"`` with ``n_diffusion_steps=5`` and the ``"vp"``
    schedule, plain critics with an actor update at every critic update, ``bc_coef=3``, ``sampler_temperature=0.1``
    and Gaussian ``action_noise`` of std 0.1. With
    ``score_scale="auto"`` the scale is fitted so that the critics' action gradient matches the pretrained denoiser.

    :param demonstrations: The transitions (``Demonstrations.from_minari``, ``.from_replay_buffer``, ...)
    :param env: The environment (id, gym env or VecEnv)
    :param actor_steps: Gradient steps of the denoiser's fit
    :param critic_steps: Critic updates on the demonstrations
    :param batch_size: Minibatch size of both fits
    :param learning_rate: Adam learning rate of the denoiser's fit
    :param score_scale: ``"auto"`` (fitted, see above) or a number
    :param add_to_replay_buffer: Seed the replay buffer with the demonstrations (``learning_starts`` defaults to 0 then)
    :param conservative_weight: Weight of the critics' :func:`conservative_penalty` (0: plain TD)
    :param device: Device of the model
    :param qsm_kwargs: Other ``QSM`` arguments; they override the fine-tuning defaults above
    :return: The QSM agent
    """
    _check_pretrain_args(actor_steps, critic_steps, batch_size, learning_rate, add_to_replay_buffer, conservative_weight)
    if score_scale == "auto" and critic_steps == 0:
        raise ValueError("score_scale='auto' fits the scale to the fitted critics: with critic_steps=0 pass a number")
    vec_env = BaseAlgorithm._wrap_env(maybe_make_env(env, 0), verbose=0)
    demonstrations.check_spaces(vec_env.observation_space, vec_env.action_space)
    kwargs = finetuning_kwargs(qsm_kwargs, vec_env, score_scale, has_data=add_to_replay_buffer)
    policy_kwargs = {**PAPER_UPDATE_POLICY_KWARGS, **CRITICS_0_1_POLICY_KWARGS, **(kwargs.pop("policy_kwargs", None) or {})}
    model = QSM("MlpPolicy", vec_env, policy_kwargs=policy_kwargs, device=device, **kwargs)
    pretrain(
        model, demonstrations, actor_steps, critic_steps, batch_size, learning_rate, add_to_replay_buffer, conservative_weight
    )
    if score_scale == "auto":
        observations = demonstrations.observations
        if model._vec_normalize_env is not None:
            observations = model._vec_normalize_env.normalize_obs(observations)  # type: ignore[assignment]
        set_fitted_score_scale(model, observations, "fitted")
    return model


def _check_pretrain_args(
    actor_steps: int,
    critic_steps: int,
    batch_size: int,
    learning_rate: float,
    add_to_replay_buffer: bool,
    conservative_weight: float,
) -> None:
    """Raise a ``ValueError`` naming the first unusable pretraining argument."""
    for name, value, minimum in (
        ("actor_steps", actor_steps, 0),
        ("critic_steps", critic_steps, 0),
        ("batch_size", batch_size, 1),
    ):
        if not is_int_at_least(value, minimum):
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    check_real("learning_rate", learning_rate, 0.0, low_open=True)
    check_bool("add_to_replay_buffer", add_to_replay_buffer)
    check_real("conservative_weight", conservative_weight, 0.0)

"""
Carry an existing SB3 SAC or TD3 agent (the source agent) over to QSM: same critics, a diffusion actor distilled from
the source's actor.

The critic and target critic weights are copied (``sb3_qsm.convert.warm_start``). The denoiser is trained by denoising
score matching on the old policy's actions, at observations gathered by running the old policy in the environment;
the transitions of that run can seed QSM's replay buffer, so fine-tuning starts from the old policy's data.
"""

import io
import pathlib
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm, maybe_make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from sb3_qsm.common.checkpoint import read_pickle_file
from sb3_qsm.common.utils import check_real, is_int_at_least, is_real, map_observations, n_observations
from sb3_qsm.convert.sources import load_sb3_agent
from sb3_qsm.convert.warm_start import load_critic_from_checkpoint
from sb3_qsm.qsm.presets import (
    CRITICS_0_1,
    CRITICS_0_1_POLICY_KWARGS,
    EXPLORATION_0_1,
    PAPER_UPDATE,
    PAPER_UPDATE_POLICY_KWARGS,
)
from sb3_qsm.qsm.qsm import QSM

SourceAgent = str | pathlib.Path | io.BufferedIOBase | SAC | TD3
# Fine-tuning defaults of a converted agent, measured on the published HalfCheetah SAC agent (docs/guide/convert.md).
# The replay-action denoising term (QSM's bc_coef): without it, the first thousand QSM updates pull the distilled
# policy towards the old critic's action gradient far from the data, where that critic was never trained (9300 -> 300).
CONVERTED_BC_COEF = 3.0
# Sampler temperature: the distilled policy is nearly deterministic, and at temperature 1 the sampler's noise spreads
# its actions far wider than the old policy's, which the bc term then teaches it (about 80% of the return after 20k
# steps, against about 93% at 0.1). Exploration comes from Gaussian action noise instead, as for TD3.
CONVERTED_SAMPLER_TEMPERATURE = 0.1
CONVERTED_NOISE_STD = 0.1
# These were measured with the paper's update (sb3_qsm.qsm.presets.PAPER_UPDATE): the gradient target, whose scale
# score_scale="auto" fits to the distilled denoiser, T=5 with the vp schedule, and Xavier's initialisation of the
# denoiser that is distilled


def _qsm_policy_kwargs(source: SAC | TD3) -> dict[str, Any]:
    """
    :param source: The SAC or TD3 agent
    :return: QSM policy arguments with the source's network sizes, activation, critics (plain ones, which the
        source's weights are copied into) and features extractor
    """
    policy = source.policy
    return dict(
        **CRITICS_0_1_POLICY_KWARGS,
        net_arch=dict(pi=list(source.actor.net_arch), qf=list(policy.critic_kwargs["net_arch"])),  # type: ignore[call-overload]
        activation_fn=policy.critic_kwargs["activation_fn"],
        n_critics=policy.critic_kwargs["n_critics"],
        share_features_extractor=policy.share_features_extractor,
        features_extractor_class=policy.features_extractor_class,
        features_extractor_kwargs=policy.features_extractor_kwargs,
        normalize_images=policy.normalize_images,
    )


def collect_source_data(
    model: QSM, source: SAC | TD3, n_collect_steps: int, noise_std: float, fill_replay_buffer: bool
) -> np.ndarray | dict[str, np.ndarray]:
    """
    Run the source agent in ``model.env`` and record the observations it sees (and, optionally, the transitions in
    ``model``'s replay buffer). Gaussian noise of std ``noise_std`` (in the [-1, 1] action scale) is added to the
    source's actions, so that the data covers states around the source's trajectories.

    :param model: The QSM model (its environment and replay buffer)
    :param source: The SAC or TD3 agent
    :param n_collect_steps: Number of environment steps (per environment)
    :param noise_std: Std of the action noise
    :param fill_replay_buffer: Whether to store the transitions in ``model.replay_buffer``
    :return: The observations, stacked (a dict of arrays for Dict observation spaces)
    """
    env = model.env
    assert env is not None and model.replay_buffer is not None
    model._last_obs = env.reset()  # type: ignore[assignment]
    if model._vec_normalize_env is not None:
        model._last_original_obs = model._vec_normalize_env.get_original_obs()
    observations: list[Any] = []
    for _ in range(n_collect_steps):
        obs: Any = model._last_obs
        observations.append(obs)
        with th.no_grad():
            scaled = source.policy._predict(obs_as_tensor(obs, source.device), deterministic=True).cpu().numpy()
        scaled = np.clip(scaled + noise_std * np.random.randn(*scaled.shape), -1.0, 1.0)
        new_obs: Any
        new_obs, rewards, dones, infos = env.step(model.policy.unscale_action(scaled))
        if fill_replay_buffer:
            model._store_transition(model.replay_buffer, scaled, new_obs, rewards, dones, infos)
        model._last_obs = new_obs  # type: ignore[assignment]
    if isinstance(observations[0], dict):
        return {key: np.concatenate([obs[key] for obs in observations]) for key in observations[0]}
    return np.concatenate(observations)


def _rows(observations: np.ndarray | dict[str, np.ndarray], rows: Any) -> np.ndarray | dict[str, np.ndarray]:
    """:return: The given rows (an index array or a slice) of a batch of observations"""
    return map_observations(lambda values: values[rows], observations)


def _source_actions(
    source: SAC | TD3,
    observations: np.ndarray | dict[str, np.ndarray],
    device: th.device,
    deterministic: bool = True,
    chunk_size: int = 4096,
) -> th.Tensor:
    """
    :param source: The SAC or TD3 agent
    :param observations: Observations (as the policies see them)
    :param device: Device of the returned tensor
    :param deterministic: The source's deterministic action, or a sample of its policy
    :param chunk_size: Observations per forward pass
    :return: The source's actions in the [-1, 1] scale
    """
    with th.no_grad():
        chunks = [
            source.policy._predict(
                obs_as_tensor(_rows(observations, slice(start, start + chunk_size)), source.device), deterministic
            )
            for start in range(0, n_observations(observations), chunk_size)
        ]
    return th.cat(chunks).to(device)


def fit_denoiser(
    model: QSM,
    sample_batch: Callable[[], tuple[Any, th.Tensor]],
    gradient_steps: int,
    learning_rate: float,
) -> float:
    """
    Train ``model``'s denoiser by denoising score matching on given actions: ``eps_theta(s, sqrt(alpha_bar_t) a +
    sqrt(1 - alpha_bar_t) eps, t)`` regressed onto ``eps``, so that the sampler reproduces the actions' distribution.

    :param model: The QSM model whose actor is trained, in place
    :param sample_batch: Returns a minibatch: observations (as the policy sees them, on the model's device) and their
        actions in ``[-1, 1]``
    :param gradient_steps: Number of gradient steps
    :param learning_rate: Adam learning rate (a fresh optimizer; the model's own is left as it was)
    :return: The mean loss over the last 100 steps
    """
    actor = model.actor
    actor.set_training_mode(True)
    optimizer = th.optim.Adam(actor.parameters(), lr=learning_rate)
    losses = []
    for _ in range(gradient_steps):
        observations, actions = sample_batch()
        noisy_actions, timesteps, noise = actor.schedule.sample_noisy_actions(actions)
        loss = F.mse_loss(actor.predict_noise(observations, noisy_actions, timesteps), noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    actor.set_training_mode(False)
    return float(np.mean(losses[-100:]))


def distill_actor(
    model: QSM,
    source: SAC | TD3,
    observations: np.ndarray | dict[str, np.ndarray],
    gradient_steps: int = 20_000,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    deterministic_source: bool = True,
) -> float:
    """
    Train ``model``'s denoiser on the source agent's actions at ``observations`` (:func:`fit_denoiser`), with ``a``
    the source's action (its mean action, or a fresh sample of its policy if ``deterministic_source`` is False).

    :param model: The QSM model whose actor is trained, in place
    :param source: The SAC or TD3 agent
    :param observations: Observations (as the policies see them)
    :param gradient_steps: Number of gradient steps
    :param batch_size: Minibatch size
    :param learning_rate: Adam learning rate (a fresh optimizer; the model's own is left as it was)
    :param deterministic_source: Distill the source's deterministic action (True) or its stochastic policy
    :return: The mean loss over the last 100 steps
    """
    size = n_observations(observations)
    # The deterministic source's actions do not change between steps: label every observation once
    labels = _source_actions(source, observations, model.device) if deterministic_source else None

    def sample_batch() -> tuple[Any, th.Tensor]:
        indices = np.random.randint(size, size=batch_size)
        batch_obs = _rows(observations, indices)
        if labels is not None:
            actions = labels[th.as_tensor(indices, device=model.device)]
        else:
            actions = _source_actions(source, batch_obs, model.device, deterministic=False)
        return obs_as_tensor(batch_obs, model.device), actions

    return fit_denoiser(model, sample_batch, gradient_steps, learning_rate)


def fit_score_scale(model: QSM, observations: np.ndarray | dict[str, np.ndarray], n_samples: int = 4096) -> float | None:
    """
    The score scale under which the critics' action gradient best matches the distilled denoiser: the least-squares
    ``alpha`` in ``eps_theta(s, a_t, t) ~ -alpha grad_a Q(s, a_t)``, with ``a_t`` noised samples of the policy.
    Fine-tuning with it starts from a small actor loss instead of pulling the denoiser towards a target of another
    scale (the Q-gradient's size grows with the reward scale, so the paper's 50 only suits rewards of order 1).

    :param model: The QSM model, with its copied critics and distilled actor
    :param observations: Observations to fit on
    :param n_samples: Number of observations used
    :return: The fitted scale, or ``None`` if the critics' gradient does not point the way the policy does
    """
    indices = np.random.randint(n_observations(observations), size=n_samples)
    batch = obs_as_tensor(_rows(observations, indices), model.device)
    actor = model.actor
    with th.no_grad():
        actions = actor.sample(batch, deterministic=False)
    noisy_actions, timesteps, _ = actor.schedule.sample_noisy_actions(actions)
    q_grad = model.q_score(batch, noisy_actions)
    with th.no_grad():
        eps_pred = actor.predict_noise(batch, noisy_actions, timesteps)
    scale = -(eps_pred * q_grad).sum().item() / max((q_grad * q_grad).sum().item(), 1e-12)
    return scale if scale > 0 else None


def convert_to_qsm(
    source: SourceAgent,
    env: GymEnv | str,
    n_collect_steps: int = 10_000,
    noise_std: float = 0.1,
    distill_steps: int = 20_000,
    distill_batch_size: int = 256,
    distill_learning_rate: float = 1e-3,
    deterministic_source: bool = True,
    score_scale: float | str = "auto",
    fill_replay_buffer: bool = True,
    replay_buffer: str | pathlib.Path | ReplayBuffer | None = None,
    device: th.device | str = "auto",
    **qsm_kwargs: Any,
) -> QSM:
    """
    Turn an SB3 SAC or TD3 agent into a QSM agent for the same environment.

    1. The critics and target critics are copied (same ``net_arch``, ``n_critics`` and activation required;
       otherwise a ``ValueError`` names the mismatch). QSM's denoiser gets the old actor's hidden layer sizes.
    2. The old policy runs for ``n_collect_steps`` steps (with Gaussian action noise of std ``noise_std``), and its
       transitions seed QSM's replay buffer (``fill_replay_buffer``), so fine-tuning can start at once
       (``learning_starts`` defaults to 0 then).
    3. The denoiser is distilled from the old actor by denoising score matching at the observations of that run.
    4. With ``score_scale="auto"``, the score scale is fitted so that ``-score_scale * grad_a Q`` matches the distilled
       denoiser (:func:`fit_score_scale`); QSM's update then continues the old policy instead of replacing it.

    A SAC critic is a soft Q-function (its entropy bonus is folded into its targets): QSM's critic updates turn it
    into a plain one during fine-tuning.

    :param source: A SAC or TD3 checkpoint (``.zip`` path or file object; older zoo checkpoints pickled with the
        retired ``gym`` package are read too) or a loaded SAC/TD3 model
    :param env: The environment (id, gym env or VecEnv; wrap it in the same VecNormalize as the old agent's, if any)
    :param n_collect_steps: Steps of the old policy to record (per environment)
    :param noise_std: Std of the Gaussian noise added to the old policy's actions while recording
    :param distill_steps: Gradient steps of distillation
    :param distill_batch_size: Minibatch size of distillation
    :param distill_learning_rate: Adam learning rate of distillation
    :param deterministic_source: Distill the old policy's deterministic action (True) or its stochastic policy
    :param score_scale: ``"auto"`` (fitted, see above) or a number
    :param fill_replay_buffer: Store the recorded transitions in QSM's replay buffer
    :param replay_buffer: An old replay buffer to use (a ``.pkl`` saved by ``save_replay_buffer`` or the zoo's
        ``--save-replay-buffer``, or a ``ReplayBuffer``); recorded transitions are added after its contents
    :param device: Device of the QSM model (and of the old agent while converting)
    :param qsm_kwargs: Other ``QSM`` arguments (``gamma`` defaults to the old agent's; ``policy_kwargs`` entries
        override the ones taken from the old agent). Fine-tuning defaults differ from QSM's: the paper's
        ``score_target="gradient"`` with ``n_diffusion_steps=5`` and the ``"vp"`` schedule, plain critics (the old
        agent's) with an actor update at every critic update (``policy_delay=1``), ``bc_coef=3``,
        ``sampler_temperature=0.1`` and Gaussian ``action_noise`` of std 0.1, which kept the converted HalfCheetah
        agent's return (see the module's constants)
    :return: The QSM agent, ready for ``learn``
    """
    _check_convert_args(n_collect_steps, noise_std, distill_steps, distill_batch_size, score_scale)
    vec_env = BaseAlgorithm._wrap_env(maybe_make_env(env, 0), verbose=0)
    qsm_kwargs = finetuning_kwargs(qsm_kwargs, vec_env, score_scale, has_data=fill_replay_buffer or replay_buffer is not None)
    agent = source if isinstance(source, BaseAlgorithm) else load_sb3_agent(source, vec_env, device=device)
    _check_source(agent, vec_env)
    user_policy_kwargs = qsm_kwargs.pop("policy_kwargs", None) or {}
    policy_kwargs = {**PAPER_UPDATE_POLICY_KWARGS, **_qsm_policy_kwargs(agent), **user_policy_kwargs}
    qsm_kwargs.setdefault("gamma", agent.gamma)
    model = QSM(
        "MlpPolicy",
        vec_env,
        policy_kwargs=policy_kwargs,
        device=device,
        **qsm_kwargs,
    )
    load_critic_from_checkpoint(model, agent)
    if replay_buffer is not None:
        model.replay_buffer = _checked_replay_buffer(replay_buffer, model)
    observations = collect_source_data(model, agent, n_collect_steps, noise_std, fill_replay_buffer)
    distill_actor(model, agent, observations, distill_steps, distill_batch_size, distill_learning_rate, deterministic_source)
    if score_scale == "auto":
        set_fitted_score_scale(model, observations, "copied")
    return model


def finetuning_kwargs(qsm_kwargs: dict[str, Any], env: VecEnv, score_scale: float | str, has_data: bool) -> dict[str, Any]:
    """
    The QSM arguments for fine-tuning an actor that imitates a given policy (converted or pretrained): the user's,
    completed by the settings measured for that case (the module's constants): the paper's update with the
    exploration and the actor delay of sb3-qsm 0.1 (white sampler noise, an actor update at every critic update),
    ``bc_coef``, a low sampler temperature and Gaussian action noise.

    :param qsm_kwargs: The user's ``QSM`` arguments (not modified)
    :param env: The environment
    :param score_scale: ``"auto"`` (the paper's scale until :func:`set_fitted_score_scale`) or a number
    :param has_data: Whether the replay buffer is filled before learning (``learning_starts`` then defaults to 0)
    :return: The arguments
    :raises ValueError: for ``score_scale="auto"`` with another score target than the gradient
    """
    if score_scale == "auto" and qsm_kwargs.get("score_target", "gradient") != "gradient":
        raise ValueError(
            f"score_scale='auto' fits the scale of the gradient score target; with score_target="
            f"{qsm_kwargs['score_target']!r} pass score_scale as a number"
        )
    kwargs = {**PAPER_UPDATE, **EXPLORATION_0_1, **CRITICS_0_1, **qsm_kwargs}
    if score_scale != "auto":
        kwargs["score_scale"] = score_scale
    kwargs.setdefault("bc_coef", CONVERTED_BC_COEF)
    kwargs.setdefault("sampler_temperature", CONVERTED_SAMPLER_TEMPERATURE)
    if "action_noise" not in kwargs:
        n_actions = int(np.prod(env.action_space.shape))  # type: ignore[arg-type]
        kwargs["action_noise"] = NormalActionNoise(np.zeros(n_actions), CONVERTED_NOISE_STD * np.ones(n_actions))
    kwargs.setdefault("learning_starts", 0 if has_data else 100)
    return kwargs


def set_fitted_score_scale(model: QSM, observations: np.ndarray | dict[str, np.ndarray], critics: str) -> None:
    """
    Set ``model.score_scale`` to :func:`fit_score_scale`'s, or warn and keep it if the critics disagree with the actor.

    :param model: The QSM model
    :param observations: Observations to fit on (as the policy sees them)
    :param critics: How the critics were made, for the warning ("copied", "fitted")
    """
    fitted = fit_score_scale(model, observations)
    if fitted is None:
        warnings.warn(
            f"The {critics} critics' action gradient does not point the way the actor does; keeping "
            f"score_scale={model.score_scale}. Fine-tuning may move the policy away from the one it imitates.",
            stacklevel=3,
        )
    else:
        model.score_scale = fitted


def _check_convert_args(
    n_collect_steps: int, noise_std: float, distill_steps: int, distill_batch_size: int, score_scale: float | str
) -> None:
    """Raise a ``ValueError`` naming the first unusable conversion argument."""
    for name, value in (
        ("n_collect_steps", n_collect_steps),
        ("distill_steps", distill_steps),
        ("distill_batch_size", distill_batch_size),
    ):
        if not is_int_at_least(value, 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    check_real("noise_std", noise_std, 0.0)
    if score_scale != "auto" and not (is_real(score_scale) and float(score_scale) > 0):
        raise ValueError(f"score_scale must be 'auto' or a finite number > 0, got {score_scale!r}")


def _check_source(source: BaseAlgorithm, env: VecEnv) -> None:
    """
    :param source: The loaded agent
    :param env: The environment
    :raises ValueError: if it is not SAC or TD3, or its spaces differ from the environment's
    """
    if not isinstance(source, SAC | TD3):
        raise ValueError(
            f"Cannot convert a {type(source).__name__} model to QSM: only Stable-Baselines3 SAC and TD3 agents "
            "(continuous actions, ContinuousCritic) can be carried over"
        )
    for kind, saved, current in (
        ("observation", source.observation_space, env.observation_space),
        ("action", source.action_space, env.action_space),
    ):
        if saved != current:
            raise ValueError(
                f"Cannot convert the {type(source).__name__} agent: its {kind} space {saved} differs from the "
                f"environment's {current}"
            )


def _checked_replay_buffer(replay_buffer: str | pathlib.Path | ReplayBuffer, model: QSM) -> ReplayBuffer:
    """
    :param replay_buffer: A pickled replay buffer or a ``ReplayBuffer``
    :param model: The QSM model
    :return: The buffer, once checked against the model's spaces
    :raises ValueError: if it is not a replay buffer or holds observations or actions of other shapes
    """
    buffer = replay_buffer if isinstance(replay_buffer, ReplayBuffer) else read_pickle_file(replay_buffer, "replay buffer")
    if not isinstance(buffer, ReplayBuffer):
        raise ValueError(f"{replay_buffer} does not hold a Stable-Baselines3 ReplayBuffer (got {type(buffer).__name__})")
    assert model.replay_buffer is not None
    if buffer.obs_shape != model.replay_buffer.obs_shape or buffer.action_dim != model.replay_buffer.action_dim:
        raise ValueError(
            f"The replay buffer {replay_buffer} holds observations of shape {buffer.obs_shape} and actions of size "
            f"{buffer.action_dim}; the environment's are {model.replay_buffer.obs_shape} and {model.replay_buffer.action_dim}"
        )
    buffer.device = model.device
    return buffer

"""Checks of QSM's constructor arguments: each raises a ``ValueError`` that names the argument, before any work."""

import math
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import NStepReplayBuffer
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.type_aliases import GymEnv
from stable_baselines3.common.vec_env import VecEnv

from sb3_qsm.common.utils import check_bool, check_real, is_int_at_least, is_real

# Policy keyword arguments of SAC's Gaussian actor that mean nothing for a diffusion actor
SAC_ONLY_POLICY_KWARGS = ("use_sde", "log_std_init", "use_expln", "clip_mean", "full_std")
# QSM constructor arguments that are forwarded to the policy; once it is built, its actor owns them
DIFFUSION_POLICY_ARGS = ("n_diffusion_steps", "beta_schedule", "sampler_temperature", "sampler")
# Of these, the ones the denoiser is trained for, which a loaded model keeps
FIXED_DIFFUSION_ARGS = ("n_diffusion_steps", "beta_schedule")
# Actor settings that only change how actions are sampled, and may be changed on a built model
SAMPLER_SETTINGS = ("sampler_temperature", "sampler", "clip_sampler")
# What the denoiser can be regressed onto (``QSM(score_target=...)``)
SCORE_TARGETS = ("gradient", "posterior")
# Where the "posterior" target draws its candidates (``QSM(score_proposal=...)``)
SCORE_PROPOSALS = ("forward", "policy")
# Which clean actions the actor loss noises (``QSM(score_actions=...)``)
SCORE_ACTIONS = ("replay", "policy", "mixed")
# learning_starts="auto": a warm-up of uniformly random actions as long as this many episodes of the environment's time
# limit (the RL Zoo's 10,000 steps on MuJoCo's 1,000-step tasks), or SB3's 100 steps where it has none
WARMUP_EPISODES = 10
WARMUP_WITHOUT_TIME_LIMIT = 100
# Largest target quantiles of each TQC critic network left out of the TD target (TQC's default)
DEFAULT_TOP_QUANTILES_TO_DROP = 2
# Quantiles per critic network of the default critics, TQC's (TQC's default); n_quantiles="auto" means these unless the
# critics are CrossQ's (critic_batch_norm=True), which have one output per network
DEFAULT_N_QUANTILES = 25


def check_score_target(
    score_target: str,
    n_score_samples: int,
    score_proposal: str = "forward",
    q_spread_floor: float = 0.0,
    score_actions: str = "mixed",
) -> None:
    """Raise a ``ValueError`` naming the argument when the score target settings are not usable."""
    check_real("q_spread_floor", q_spread_floor, 0.0)
    if score_actions not in SCORE_ACTIONS:
        raise ValueError(f"score_actions must be one of {SCORE_ACTIONS}, got {score_actions!r}")
    if score_target not in SCORE_TARGETS:
        raise ValueError(f"score_target must be one of {SCORE_TARGETS}, got {score_target!r}")
    if not is_int_at_least(n_score_samples, 2):
        raise ValueError(f"n_score_samples must be an integer >= 2, got {n_score_samples!r}")
    if score_proposal not in SCORE_PROPOSALS:
        raise ValueError(f"score_proposal must be one of {SCORE_PROPOSALS}, got {score_proposal!r}")


def check_policy_kwargs(policy_kwargs: dict[str, Any]) -> None:
    """
    Refuse policy keyword arguments that belong to SAC's Gaussian actor or to the QSM constructor.

    :param policy_kwargs: The user's policy keyword arguments
    """
    sac_only = [key for key in SAC_ONLY_POLICY_KWARGS if key in policy_kwargs]
    if sac_only:
        raise ValueError(
            f"policy_kwargs {sac_only} only apply to SAC's Gaussian actor (gSDE / log-std settings); QSM's diffusion "
            "actor has no such parameter. Remove them from policy_kwargs."
        )
    duplicated = [key for key in DIFFUSION_POLICY_ARGS if key in policy_kwargs]
    if duplicated:
        raise ValueError(f"Pass {duplicated} to the QSM constructor, not in policy_kwargs.")
    check_best_of_n(policy_kwargs.get("best_of_n", 1), policy_kwargs.get("selection_temperature", 0.0))
    check_quantiles(policy_kwargs.get("n_quantiles", "auto"), policy_kwargs.get("critic_batch_norm", False))


def check_best_of_n(best_of_n: int, selection_temperature: float = 0.0) -> None:
    """
    :raises ValueError: unless ``best_of_n`` (a policy argument) is an integer >= 1 and ``selection_temperature``
        a number >= 0 (``math.inf`` included)
    """
    if not is_int_at_least(best_of_n, 1):
        raise ValueError(f"best_of_n must be an integer >= 1 (1: the noise-free chain), got {best_of_n!r}")
    if not (selection_temperature == math.inf or (is_real(selection_temperature) and selection_temperature >= 0)):
        raise ValueError(
            "selection_temperature must be a number >= 0 (0: the best of n, math.inf: the sampler alone), "
            f"got {selection_temperature!r}"
        )


def check_batch_norm(critic_batch_norm: bool, momentum: float, eps: float, renorm_warmup_steps: int) -> None:
    """
    :raises ValueError: unless ``critic_batch_norm`` (a policy argument) is a bool, ``batch_norm_momentum`` a number
        in ``(0, 1]``, ``batch_norm_eps`` a number > 0 and ``renorm_warmup_steps`` an integer >= 0
    """
    check_bool("critic_batch_norm", critic_batch_norm)
    check_real("batch_norm_momentum", momentum, 0.0, 1.0, low_open=True)
    check_real("batch_norm_eps", eps, 0.0, low_open=True)
    if not is_int_at_least(renorm_warmup_steps, 0):
        raise ValueError(f"renorm_warmup_steps must be an integer >= 0, got {renorm_warmup_steps!r}")


def check_quantiles(n_quantiles: int | str | None, critic_batch_norm: bool) -> None:
    """
    :raises ValueError: unless ``n_quantiles`` (a policy argument) is ``"auto"``, None or an integer >= 1, and an
        integer only without ``critic_batch_norm=True`` (CrossQ's critics have one output per network)
    """
    if n_quantiles is None or n_quantiles == "auto":
        return
    if not is_int_at_least(n_quantiles, 1):
        raise ValueError(f"n_quantiles must be 'auto', None (plain critics) or an integer >= 1, got {n_quantiles!r}")
    if critic_batch_norm:
        raise ValueError(f"n_quantiles={n_quantiles!r} (TQC's critics) cannot be combined with critic_batch_norm=True")


def resolve_n_quantiles(n_quantiles: int | str | None, critic_batch_norm: bool) -> int | None:
    """
    :param n_quantiles: The policy's ``n_quantiles`` (checked by ``check_quantiles``)
    :param critic_batch_norm: The policy's ``critic_batch_norm``
    :return: The quantiles per critic network it stands for: ``"auto"`` is ``DEFAULT_N_QUANTILES`` (TQC's critics),
        or None (one value per network) with CrossQ's critics
    """
    if n_quantiles == "auto":
        return None if critic_batch_norm else DEFAULT_N_QUANTILES
    return None if n_quantiles is None else int(n_quantiles)


def check_top_quantiles_to_drop(top_quantiles_to_drop_per_net: int, n_quantiles: int | None) -> None:
    """
    :raises ValueError: unless ``top_quantiles_to_drop_per_net`` is an integer in ``[0, n_quantiles)`` with TQC's
        critics, and TQC's default (2) without them, where it would have no effect
    """
    if n_quantiles is None:
        if top_quantiles_to_drop_per_net != DEFAULT_TOP_QUANTILES_TO_DROP:
            raise ValueError(
                f"top_quantiles_to_drop_per_net={top_quantiles_to_drop_per_net!r} only applies to TQC's critics, which "
                "the policy's critics are not (policy_kwargs with n_quantiles=None or critic_batch_norm=True)"
            )
        return
    if not is_int_at_least(top_quantiles_to_drop_per_net, 0) or top_quantiles_to_drop_per_net >= n_quantiles:
        raise ValueError(
            f"top_quantiles_to_drop_per_net must be an integer in [0, n_quantiles={n_quantiles}), "
            f"got {top_quantiles_to_drop_per_net!r}"
        )


def check_qsm_args(
    score_scale: float,
    policy_delay: int,
    target_policy_noise: float,
    target_noise_clip: float | None,
    actor_lr_decay_steps: int | None,
    bc_coef: float,
) -> None:
    """
    Raise a ``ValueError`` naming the argument when a QSM hyperparameter is not usable.

    :param score_scale: Q-score scale (finite, > 0)
    :param policy_delay: Actor update period (integer >= 1)
    :param target_policy_noise: Target noise standard deviation (finite, >= 0)
    :param target_noise_clip: Target noise limit (None or finite, > 0)
    :param actor_lr_decay_steps: Length of the actor's cosine decay (None or integer >= 1)
    :param bc_coef: Weight of the replay-action denoising term (finite, >= 0)
    """
    check_real("score_scale", score_scale, 0.0, low_open=True)
    if not is_int_at_least(policy_delay, 1):
        raise ValueError(f"policy_delay must be an integer >= 1, got {policy_delay!r}")
    check_real("target_policy_noise", target_policy_noise, 0.0)
    if target_noise_clip is not None:
        check_real("target_noise_clip", target_noise_clip, 0.0, low_open=True)
    if actor_lr_decay_steps is not None and not is_int_at_least(actor_lr_decay_steps, 1):
        raise ValueError(f"actor_lr_decay_steps must be None or an integer >= 1, got {actor_lr_decay_steps!r}")
    check_real("bc_coef", bc_coef, 0.0)


def check_sampler_noise_color(sampler_noise_color: float) -> None:
    """Raise a ``ValueError`` naming the argument unless the noise's spectral exponent is a number in ``[0, 2]``."""
    check_real("sampler_noise_color", sampler_noise_color, 0.0, 2.0)


def time_limit(env: GymEnv) -> int | None:
    """
    :param env: An environment, vectorized or not (the first one of a ``VecEnv``)
    :return: Its episode length limit (the spec's ``max_episode_steps``), or None if it has none
    """
    spec = env.get_attr("spec", [0])[0] if isinstance(env, VecEnv) else env.spec
    limit = getattr(spec, "max_episode_steps", None)
    return int(limit) if limit else None


def auto_learning_starts(max_episode_steps: int | None) -> int:
    """
    :param max_episode_steps: The environment's episode length limit, or None
    :return: The warm-up of ``learning_starts="auto"``: ``WARMUP_EPISODES`` episodes of that limit, or
        ``WARMUP_WITHOUT_TIME_LIMIT`` steps without one
    """
    return WARMUP_EPISODES * max_episode_steps if max_episode_steps else WARMUP_WITHOUT_TIME_LIMIT


def without_own_n_step_replay(
    replay_buffer_class: type | None, replay_buffer_kwargs: dict[str, Any], n_steps: int, gamma: float
) -> tuple[type | None, dict[str, Any]]:
    """
    SB3 records the ``NStepReplayBuffer`` it sets up for ``n_steps > 1`` as the model's ``replay_buffer_class`` (with
    ``n_steps`` and ``gamma`` in ``replay_buffer_kwargs``), so a saved model comes back with a buffer class that looks
    like the user's, and SB3 warns on ``load`` that a custom buffer class ignores ``n_steps``. Given back as SB3
    chose it, SB3 sets up the same buffer again, without the warning.

    :param replay_buffer_class: The model's replay buffer class
    :param replay_buffer_kwargs: Its keyword arguments
    :param n_steps: The model's ``n_steps``
    :param gamma: The model's ``gamma``
    :return: The class and keyword arguments to set up the buffer from: ``None`` and the keyword arguments without
        ``n_steps`` and ``gamma`` for the n-step buffer SB3 chose itself, the given ones otherwise
    """
    own = {"n_steps": n_steps, "gamma": gamma}
    chosen_by_sb3 = all(replay_buffer_kwargs.get(key) == value for key, value in own.items())
    if replay_buffer_class is not NStepReplayBuffer or not chosen_by_sb3:
        return replay_buffer_class, replay_buffer_kwargs
    return None, {key: value for key, value in replay_buffer_kwargs.items() if key not in own}


def check_off_policy_args(
    buffer_size: int, learning_starts: int | str, batch_size: int, tau: float, gamma: float, n_steps: int
) -> None:
    """
    Raise a ``ValueError`` naming the argument when a setting of SB3's off-policy loop is not usable (SB3 itself
    accepts them, and fails later, or trains on nonsense).

    :param buffer_size: Replay buffer size (integer >= 1)
    :param learning_starts: Steps before learning starts (integer >= 0, or ``"auto"``)
    :param batch_size: Minibatch size (integer from 1 to ``buffer_size``)
    :param tau: Soft update coefficient (in ``(0, 1]``)
    :param gamma: Discount factor (in ``[0, 1]``)
    :param n_steps: Rewards summed by the critics' TD target before it bootstraps (integer >= 1)
    """
    if not is_int_at_least(buffer_size, 1):
        raise ValueError(f"buffer_size must be an integer >= 1, got {buffer_size!r}")
    if learning_starts != "auto" and not is_int_at_least(learning_starts, 0):
        raise ValueError(f"learning_starts must be an integer >= 0 or 'auto', got {learning_starts!r}")
    if not is_int_at_least(batch_size, 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if batch_size > buffer_size:
        raise ValueError(
            f"batch_size={batch_size!r} is larger than buffer_size={buffer_size!r}: every batch would repeat "
            "transitions; lower batch_size or raise buffer_size (a model loaded only to predict can take "
            "buffer_size=1 in load)"
        )
    check_real("tau", tau, 0.0, 1.0, low_open=True)
    check_real("gamma", gamma, 0.0, 1.0)
    if not is_int_at_least(n_steps, 1):
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")


def check_target_diffusion_steps(target_diffusion_steps: int | str | None, n_diffusion_steps: int) -> None:
    """
    :param target_diffusion_steps: Reverse steps of the critic target's sample (``"auto"``: half of ``T``; None: all)
    :param n_diffusion_steps: Number of diffusion steps ``T``
    :raises ValueError: naming the argument, unless it is ``"auto"``, None or an integer from 1 to
        ``n_diffusion_steps``
    """
    if target_diffusion_steps is None or (isinstance(target_diffusion_steps, str) and target_diffusion_steps == "auto"):
        return
    if not (is_int_at_least(target_diffusion_steps, 1) and int(target_diffusion_steps) <= n_diffusion_steps):
        raise ValueError(
            f"target_diffusion_steps must be 'auto', None or an integer from 1 to n_diffusion_steps={n_diffusion_steps}, "
            f"got {target_diffusion_steps!r}"
        )


def target_chain_steps(target_diffusion_steps: int | str | None, n_diffusion_steps: int) -> int | None:
    """
    :param target_diffusion_steps: The checked argument (see ``check_target_diffusion_steps``)
    :param n_diffusion_steps: Number of diffusion steps ``T``
    :return: The reverse steps of the critic target's sample: half of ``T`` rounded up for ``"auto"``, None for all
    """
    if isinstance(target_diffusion_steps, str):
        return -(-n_diffusion_steps // 2)
    return target_diffusion_steps


def check_action_space(action_space: spaces.Space) -> None:
    """
    Refuse action spaces a diffusion policy cannot act in.

    :param action_space: The environment's action space
    :raises ValueError: for an action space other than a ``Box``, or one with ``low >= high`` on a dimension (the
        policy works in ``[-1, 1]`` scaled to the bounds; SB3 itself refuses infinite bounds)
    """
    if not isinstance(action_space, spaces.Box):
        raise ValueError(
            f"QSM needs a continuous (Box) action space, got {action_space}: a diffusion policy over "
            "Discrete, MultiDiscrete or MultiBinary actions is not defined."
        )
    empty = np.flatnonzero(np.asarray(action_space.low >= action_space.high).reshape(-1))
    if empty.size > 0:
        raise ValueError(
            f"QSM needs an action space with low < high on every dimension, got {action_space}, whose dimensions "
            f"{empty.tolist()} have low >= high (a single allowed value): remove them from the action space."
        )


def check_image_policy(observation_space: spaces.Space, flattens: bool, policy_kwargs: dict[str, Any]) -> None:
    """
    Refuse image observations that an MLP would get flattened into a vector (``MlpPolicy`` on an image space) unless
    asked for: it trains, but poorly, and is most often the wrong policy name.

    :param observation_space: The environment's observation space
    :param flattens: Whether the policy class flattens observations by default (``MlpPolicy``)
    :param policy_kwargs: The user's policy keyword arguments; an explicit ``features_extractor_class`` is respected
    :raises ValueError: naming the space and the fix
    """
    if flattens and is_image_space(observation_space) and "features_extractor_class" not in policy_kwargs:
        raise ValueError(
            f"The observations {observation_space} are images, which MlpPolicy would flatten into a vector for an "
            "MLP: use 'CnnPolicy' to train a convolutional network on them, or pass "
            "policy_kwargs=dict(features_extractor_class=FlattenExtractor) to flatten them on purpose."
        )

"""Checks of QSM's constructor arguments: each raises a ``ValueError`` that names the argument, before any work."""

import math
from typing import Any

from sb3_qsm.common.utils import is_int_at_least

# Policy keyword arguments of SAC's Gaussian actor that mean nothing for a diffusion actor
SAC_ONLY_POLICY_KWARGS = ("use_sde", "log_std_init", "use_expln", "clip_mean", "full_std")
# QSM constructor arguments that are forwarded to the policy; once it is built, its actor owns them
DIFFUSION_POLICY_ARGS = ("n_diffusion_steps", "beta_schedule", "sampler_temperature")
# Of these, the ones the denoiser is trained for, which a loaded model keeps
FIXED_DIFFUSION_ARGS = ("n_diffusion_steps", "beta_schedule")
# Actor settings that only change how actions are sampled, and may be changed on a built model
SAMPLER_SETTINGS = ("sampler_temperature", "clip_sampler")
# What the denoiser can be regressed onto (``QSM(score_target=...)``)
SCORE_TARGETS = ("gradient", "posterior")


def check_score_target(score_target: str, n_score_samples: int) -> None:
    """Raise a ``ValueError`` naming the argument when the score target settings are not usable."""
    if score_target not in SCORE_TARGETS:
        raise ValueError(f"score_target must be one of {SCORE_TARGETS}, got {score_target!r}")
    if not is_int_at_least(n_score_samples, 2):
        raise ValueError(f"n_score_samples must be an integer >= 2, got {n_score_samples!r}")


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
    if not isinstance(score_scale, int | float) or not math.isfinite(score_scale) or score_scale <= 0:
        raise ValueError(f"score_scale must be a finite number > 0, got {score_scale!r}")
    if not is_int_at_least(policy_delay, 1):
        raise ValueError(f"policy_delay must be an integer >= 1, got {policy_delay!r}")
    if not math.isfinite(target_policy_noise) or target_policy_noise < 0:
        raise ValueError(f"target_policy_noise must be finite and >= 0, got {target_policy_noise!r}")
    if target_noise_clip is not None and (not math.isfinite(target_noise_clip) or target_noise_clip <= 0):
        raise ValueError(f"target_noise_clip must be None or a finite number > 0, got {target_noise_clip!r}")
    if actor_lr_decay_steps is not None and not is_int_at_least(actor_lr_decay_steps, 1):
        raise ValueError(f"actor_lr_decay_steps must be None or an integer >= 1, got {actor_lr_decay_steps!r}")
    if not isinstance(bc_coef, int | float) or not math.isfinite(bc_coef) or bc_coef < 0:
        raise ValueError(f"bc_coef must be a finite number >= 0, got {bc_coef!r}")


def check_target_diffusion_steps(target_diffusion_steps: int | None, n_diffusion_steps: int) -> None:
    """
    :param target_diffusion_steps: Reverse steps of the critic target's sample (None: all)
    :param n_diffusion_steps: Number of diffusion steps ``T``
    :raises ValueError: naming the argument, unless it is None or an integer from 1 to ``n_diffusion_steps``
    """
    if target_diffusion_steps is None:
        return
    if not is_int_at_least(target_diffusion_steps, 1) or target_diffusion_steps > n_diffusion_steps:
        raise ValueError(
            f"target_diffusion_steps must be None or an integer from 1 to n_diffusion_steps={n_diffusion_steps}, "
            f"got {target_diffusion_steps!r}"
        )

"""
Noise schedules of the discrete DDPM QSM trains (``beta_t`` for ``t = 1..T``), the reverse samplers' names, and the
checks the algorithm runs on these settings before any work.
"""

import math
from collections.abc import Callable

import torch as th

from sb3_qsm.common.utils import check_real, is_int_at_least

BETA_SCHEDULES = ("vp", "linear", "cosine")
# How a reverse step moves and what noise it injects (see ``DiffusionSchedule.sample``)
SAMPLERS = ("posterior", "reference")


def vp_beta_schedule(n_diffusion_steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> th.Tensor:
    """
    Variance-preserving schedule of the QSM reference implementation (a discretised VP-SDE):
    ``alpha_t = exp(-beta_min / T - 0.5 (beta_max - beta_min) (2t - 1) / T^2)`` for ``t = 1..T``.

    :param n_diffusion_steps: Number of diffusion steps ``T``
    :param beta_min: Lower end of the continuous-time noise rate
    :param beta_max: Upper end of the continuous-time noise rate
    :return: ``beta_t`` for ``t = 1..T``, shape ``(T,)``, float64
    """
    t = th.arange(1, n_diffusion_steps + 1, dtype=th.float64)
    alphas = th.exp(-beta_min / n_diffusion_steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / n_diffusion_steps**2)
    return 1.0 - alphas


def linear_beta_schedule(n_diffusion_steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> th.Tensor:
    """
    Linear schedule of Ho et al. (2020), as in the QSM reference.

    :param n_diffusion_steps: Number of diffusion steps ``T``
    :param beta_start: ``beta_1``
    :param beta_end: ``beta_T``
    :return: ``beta_t`` for ``t = 1..T``, shape ``(T,)``, float64
    """
    return th.linspace(beta_start, beta_end, n_diffusion_steps, dtype=th.float64)


def cosine_beta_schedule(n_diffusion_steps: int, offset: float = 0.008) -> th.Tensor:
    """
    Cosine schedule of Nichol & Dhariwal (2021), as in the QSM reference (betas clipped to 0.999).

    :param n_diffusion_steps: Number of diffusion steps ``T``
    :param offset: Small offset ``s`` that keeps ``beta_1`` away from zero
    :return: ``beta_t`` for ``t = 1..T``, shape ``(T,)``, float64
    """
    t = th.linspace(0, n_diffusion_steps, n_diffusion_steps + 1, dtype=th.float64) / n_diffusion_steps
    alpha_bars = th.cos((t + offset) / (1 + offset) * math.pi * 0.5) ** 2
    alpha_bars = alpha_bars / alpha_bars[0]
    return th.clamp(1.0 - alpha_bars[1:] / alpha_bars[:-1], 0.0, 0.999)


def check_n_diffusion_steps(n_diffusion_steps: int) -> None:
    """
    :param n_diffusion_steps: Number of diffusion steps ``T``
    :raises ValueError: naming the argument, unless it is an integer >= 1
    """
    if not is_int_at_least(n_diffusion_steps, 1):
        raise ValueError(f"n_diffusion_steps must be an integer >= 1, got {n_diffusion_steps!r}")


def check_beta_schedule(beta_schedule: str) -> None:
    """
    :param beta_schedule: Name of a noise schedule
    :raises ValueError: naming the argument, unless it is one of ``BETA_SCHEDULES``
    """
    if beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"Unknown beta_schedule {beta_schedule!r}: expected one of {', '.join(BETA_SCHEDULES)}")


def check_sampler_temperature(sampler_temperature: float) -> None:
    """
    :param sampler_temperature: Scale of the noise injected by the reverse sampler
    :raises ValueError: naming the argument, unless it is a finite number >= 0
    """
    check_real("sampler_temperature", sampler_temperature, 0.0)


def check_sampler(sampler: str) -> None:
    """
    :param sampler: Name of the reverse sampler
    :raises ValueError: naming the argument, unless it is one of ``SAMPLERS``
    """
    if not (isinstance(sampler, str) and sampler in SAMPLERS):
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


def check_diffusion_args(n_diffusion_steps: int, beta_schedule: str, sampler_temperature: float, sampler: str) -> None:
    """
    Raise a ``ValueError`` naming the argument when a diffusion setting is not usable: the check an algorithm runs
    on its arguments before any work (the schedule and the actor check their own again when they are built).

    :param n_diffusion_steps: Number of diffusion steps ``T`` (an integer >= 1)
    :param beta_schedule: Name of the noise schedule (one of ``BETA_SCHEDULES``)
    :param sampler_temperature: Scale of the noise injected by the reverse sampler (finite, >= 0)
    :param sampler: Name of the reverse sampler (one of ``SAMPLERS``)
    """
    check_n_diffusion_steps(n_diffusion_steps)
    check_beta_schedule(beta_schedule)
    check_sampler_temperature(sampler_temperature)
    check_sampler(sampler)


def make_beta_schedule(beta_schedule: str, n_diffusion_steps: int) -> th.Tensor:
    """
    Build a noise schedule by name.

    :param beta_schedule: ``"vp"`` (the QSM reference's), ``"linear"`` or ``"cosine"``
    :param n_diffusion_steps: Number of diffusion steps ``T``
    :return: ``beta_t`` for ``t = 1..T``, shape ``(T,)``, float64
    :raises ValueError: naming the argument that is not usable
    """
    check_n_diffusion_steps(n_diffusion_steps)
    check_beta_schedule(beta_schedule)
    schedules: dict[str, Callable[[int], th.Tensor]] = {
        "vp": vp_beta_schedule,
        "linear": linear_beta_schedule,
        "cosine": cosine_beta_schedule,
    }
    return schedules[beta_schedule](n_diffusion_steps)

"""
Discrete DDPM math used by QSM: the forward (noising) process and the reverse sampler, over the noise schedules of
``sb3_qsm.common.schedules``.

Everything here works in the normalised action box ``[-1, 1]`` and is independent of the networks:
the sampler takes the denoiser as a callable.
Time indices are 0-based: ``t = 0`` is the least noisy step, ``t = T - 1`` the noisiest.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import torch as th
from torch import nn

from sb3_qsm.common.schedules import check_sampler, make_beta_schedule


def truncated_normal(mean: th.Tensor, std: th.Tensor, low: float = -1.0, high: float = 1.0) -> th.Tensor:
    """
    Draw from ``N(mean, std^2)`` truncated to ``[low, high]``, element-wise, by inverting the normal CDF in the dtype
    of ``mean``, on the lower tail when both bounds lie in the upper one (the normal CDF keeps its relative precision
    in the lower tail only). Where the whole interval lies further out than the dtype's CDF reaches (beyond about 13
    standard deviations in float32), the sample is the bound nearest the mean.
    ``torch.nn.init.trunc_normal_`` takes one mean and one standard deviation per tensor; this takes one per element.

    :param mean: Means, any shape
    :param std: Standard deviations (> 0), same shape
    :param low: Lower bound
    :param high: Upper bound
    :return: Samples, same shape and dtype as ``mean``, in ``[low, high]``
    """
    lower, upper = (low - mean) / std, (high - mean) / std
    mirror = lower > 0
    lower, upper = th.where(mirror, -upper, lower), th.where(mirror, -lower, upper)
    cdf_lower, cdf_upper = th.special.ndtr(lower), th.special.ndtr(upper)
    uniform = cdf_lower + (cdf_upper - cdf_lower) * th.rand_like(cdf_lower)
    finfo = th.finfo(mean.dtype)
    standard = th.special.ndtri(uniform.clamp(finfo.tiny, 1.0 - finfo.eps))
    standard = th.where(mirror, -standard, standard)
    return (mean + std * standard).clamp(low, high)


def truncated_normal_log_prob(
    value: th.Tensor, mean: th.Tensor, std: th.Tensor, low: float = -1.0, high: float = 1.0
) -> th.Tensor:
    """
    Log density of ``N(mean, std^2)`` truncated to ``[low, high]^d`` at ``value`` (inside the box), summed over the
    last dimension. The box's mass is taken on the lower tail, as in ``truncated_normal``, so that it keeps its
    relative precision when the whole interval lies far in one tail.

    :param value: Points inside the box, shape ``(..., d)``
    :param mean: Means, broadcastable to ``value``
    :param std: Standard deviations (> 0), broadcastable to ``value``
    :param low: Lower bound
    :param high: Upper bound
    :return: The log densities, shape ``value.shape[:-1]``
    """
    standard = (value - mean) / std
    lower, upper = (low - mean) / std, (high - mean) / std
    mirror = lower > 0
    lower, upper = th.where(mirror, -upper, lower), th.where(mirror, -lower, upper)
    log_upper, log_lower = th.special.log_ndtr(upper), th.special.log_ndtr(lower)
    log_mass = log_upper + th.log(-th.expm1((log_lower - log_upper).clamp(max=-th.finfo(value.dtype).eps)))
    log_prob = -0.5 * standard.square() - 0.5 * math.log(2 * math.pi) - th.log(std) - log_mass
    return log_prob.sum(dim=-1)


class ReverseStep(NamedTuple):
    """
    The constants of one reverse step, from index ``t`` down to the previous kept index ``s`` (``alpha_bar_s = 1``
    past the last step), with ``alpha_t = alpha_bar_t / alpha_bar_s`` and ``beta_t = 1 - alpha_t``.
    """

    t: int
    # beta_t / sqrt(1 - alpha_bar_t) and 1 / sqrt(alpha_t): the step's mean in its noise form
    eps_coef: float
    inv_sqrt_alpha: float
    # 1 / sqrt(alpha_bar_t) and sqrt(1 / alpha_bar_t - 1): the estimate of a_0 from a_t and the predicted noise
    clean_scale: float
    clean_noise_scale: float
    # beta_t sqrt(alpha_bar_s) / (1 - alpha_bar_t) and (1 - alpha_bar_s) sqrt(alpha_t) / (1 - alpha_bar_t): the mean of
    # q(a_s | a_t, a_0) as a weighted sum of a_0 and a_t
    clean_coef: float
    noisy_coef: float
    # sqrt(beta_t), the reference's noise, and sqrt(beta_t (1 - alpha_bar_s) / (1 - alpha_bar_t)), that of q(a_s | a_t, a_0)
    sigma: float
    posterior_sigma: float


def _reverse_step(t: int, alpha_bar: float, alpha_bar_next: float) -> ReverseStep:
    """
    :param t: Time index of the step
    :param alpha_bar: ``alpha_bar_t``
    :param alpha_bar_next: ``alpha_bar_s`` of the index the step goes to (1 past the last step)
    :return: The step's constants (float64 arithmetic)
    """
    alpha = alpha_bar / alpha_bar_next
    beta = 1.0 - alpha
    return ReverseStep(
        t=t,
        eps_coef=beta / math.sqrt(1.0 - alpha_bar),
        inv_sqrt_alpha=1.0 / math.sqrt(alpha),
        clean_scale=1.0 / math.sqrt(alpha_bar),
        clean_noise_scale=math.sqrt(1.0 / alpha_bar - 1.0),
        clean_coef=beta * math.sqrt(alpha_bar_next) / (1.0 - alpha_bar),
        noisy_coef=(1.0 - alpha_bar_next) * math.sqrt(alpha) / (1.0 - alpha_bar),
        sigma=math.sqrt(beta),
        posterior_sigma=math.sqrt(beta * (1.0 - alpha_bar_next) / (1.0 - alpha_bar)),
    )


class DiffusionSchedule(nn.Module):
    """
    The constants of a discrete DDPM, held as non-persistent float32 buffers so that they follow
    ``.to(device)`` but never enter a ``state_dict`` (they are a pure function of the constructor arguments).

    :param n_diffusion_steps: Number of diffusion steps ``T``
    :param beta_schedule: Name of the noise schedule (``"vp"``, ``"linear"`` or ``"cosine"``)
    """

    betas: th.Tensor
    alphas: th.Tensor
    alpha_bars: th.Tensor

    def __init__(self, n_diffusion_steps: int, beta_schedule: str):
        super().__init__()
        betas = make_beta_schedule(beta_schedule, n_diffusion_steps)
        self.n_diffusion_steps = n_diffusion_steps
        self.beta_schedule = beta_schedule
        alphas = 1.0 - betas
        # Computed in float64, stored in float32
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alphas", alphas.float(), persistent=False)
        alpha_bars = th.cumprod(alphas, dim=0)
        self.register_buffer("alpha_bars", alpha_bars.float(), persistent=False)
        self._alpha_bars64: list[float] = alpha_bars.tolist()
        # Per-step constants of the reverse process as Python floats, per number of steps (made once): each sampler
        # step then costs a few tensor operations instead of a dozen small ones (this matters for single-observation
        # predict)
        self._chains: dict[int, list[ReverseStep]] = {}

    def strided_steps(self, n_steps: int) -> list[int]:
        """
        :param n_steps: Number of reverse steps, from 1 to ``T``
        :return: That many time indices spread evenly over ``0..T-1`` (the noisiest one always among them, and the
            cleanest one unless ``n_steps`` is 1), in increasing order; all of them for ``n_steps = T``
        """
        last = self.n_diffusion_steps - 1
        if not 1 <= n_steps <= self.n_diffusion_steps:
            raise ValueError(f"n_steps must be between 1 and n_diffusion_steps={self.n_diffusion_steps}, got {n_steps!r}")
        if n_steps == 1:
            return [last]
        return sorted({round(i * last / (n_steps - 1)) for i in range(n_steps)})

    def _reverse_steps(self, n_steps: int | None) -> list[ReverseStep]:
        """
        The reverse process's steps, noisiest first. With fewer steps than ``T``, the chain is respaced (Nichol &
        Dhariwal, 2021): between two kept indices ``s < t``, ``alpha_t`` becomes ``alpha_bar_t / alpha_bar_s``, and the
        denoiser still sees the original index ``t``.
        """
        n_steps = self.n_diffusion_steps if n_steps is None else n_steps
        chain = self._chains.get(n_steps)
        if chain is None:
            steps, alpha_bars = self.strided_steps(n_steps), self._alpha_bars64
            chain = [
                _reverse_step(t, alpha_bars[t], alpha_bars[steps[index - 1]] if index > 0 else 1.0)
                for index, t in enumerate(steps)
            ][::-1]
            self._chains[n_steps] = chain
        return chain

    def add_noise(self, actions: th.Tensor, noise: th.Tensor, timesteps: th.Tensor) -> th.Tensor:
        """
        Forward process ``q(a_t | a_0)``: ``a_t = sqrt(alpha_bar_t) a_0 + sqrt(1 - alpha_bar_t) eps``.

        :param actions: Clean actions ``a_0``, shape ``(batch, action_dim)``
        :param noise: Gaussian noise ``eps``, same shape
        :param timesteps: 0-based time index per sample, shape ``(batch,)``, integer
        :return: Noisy actions ``a_t``
        """
        alpha_bars = self.alpha_bars[timesteps].unsqueeze(-1)
        return alpha_bars.sqrt() * actions + (1.0 - alpha_bars).sqrt() * noise

    def sample_timesteps(self, n: int, device: th.device | str) -> th.Tensor:
        """
        :param n: Number of time indices
        :param device: Their device
        :return: ``n`` time indices ``t ~ U{0..T-1}``, as denoising score matching trains on, shape ``(n,)``
        """
        return th.randint(0, self.n_diffusion_steps, (n,), device=device)

    def sample_noisy_actions(
        self, actions: th.Tensor, timesteps: th.Tensor | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        Noise clean actions at one random step each, as denoising score matching trains on: draw ``t ~ U{0..T-1}``
        (unless given) and ``eps ~ N(0, I)``, then apply the forward process (``add_noise``).

        :param actions: Clean actions ``a_0``, shape ``(batch, action_dim)``
        :param timesteps: Their time indices, if already drawn (``sample_timesteps``)
        :return: The noisy actions ``a_t``, their time indices ``t`` (shape ``(batch,)``) and the noise ``eps``
        """
        if timesteps is None:
            timesteps = self.sample_timesteps(actions.shape[0], actions.device)
        noise = th.randn_like(actions)
        return self.add_noise(actions, noise, timesteps), timesteps, noise

    def noise_from_clean(self, noisy: th.Tensor, clean: th.Tensor, timesteps: th.Tensor) -> th.Tensor:
        """
        The noise that takes ``clean`` to ``noisy`` at the given steps:
        ``(a_t - sqrt(alpha_bar_t) a_0) / sqrt(1 - alpha_bar_t)``.

        :param noisy: Noisy actions ``a_t``, shape ``(batch, action_dim)``
        :param clean: Clean actions ``a_0`` (or an estimate of them), same shape
        :param timesteps: 0-based time index per sample, shape ``(batch,)``
        :return: The noise, same shape
        """
        alpha_bars = self.alpha_bars[timesteps].unsqueeze(-1)
        return (noisy - alpha_bars.sqrt() * clean) / (1.0 - alpha_bars).sqrt()

    def clean_from_noise(self, noisy: th.Tensor, noise: th.Tensor, timesteps: th.Tensor) -> th.Tensor:
        """
        The clean actions that ``noise`` takes to ``noisy`` at the given steps (the inverse of ``noise_from_clean``):
        ``(a_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)``, Tweedie's estimate of ``a_0`` from a predicted noise.

        :param noisy: Noisy actions ``a_t``, shape ``(batch, action_dim)``
        :param noise: The noise, same shape
        :param timesteps: 0-based time index per sample, shape ``(batch,)``
        :return: The clean actions, same shape (not clipped to the box)
        """
        alpha_bars = self.alpha_bars[timesteps].unsqueeze(-1)
        return (noisy - (1.0 - alpha_bars).sqrt() * noise) / alpha_bars.sqrt()

    def posterior_mean(
        self,
        noisy: th.Tensor,
        timesteps: th.Tensor,
        log_density: Callable[[th.Tensor], th.Tensor],
        n_samples: int,
        anchor: th.Tensor | None = None,
        guide: th.Tensor | None = None,
        guide_std: float = 0.2,
    ) -> th.Tensor:
        """
        Estimate ``E[a_0 | a_t]`` when ``a_0`` has the density ``p(a_0) ~ exp(log_density(a_0))`` on ``[-1, 1]^d``
        (Tweedie's formula then gives the score of the noised density), by self-normalised importance sampling.

        The candidates come from the forward process's own posterior ``q(a_0 | a_t)``,
        ``N(a_t / sqrt(alpha_bar_t), (1 - alpha_bar_t) / alpha_bar_t)``, truncated to the box, so that every candidate
        lies in the box and its weight is the density alone: ``softmax(log_density)``. The proposal is wide (nearly
        uniform on the box) at the noisy steps and narrow around ``a_t / sqrt(alpha_bar_t)`` at the clean ones.

        With ``guide`` (a guess of ``E[a_0 | a_t]``, such as the policy's own), half of the candidates are drawn
        around it instead, from ``N(guide, s^2)`` truncated to the box with ``s = min(guide_std, the forward
        posterior's std)``, and every weight is the target over the mixture of the two proposals (defensive
        importance sampling): the estimate keeps the same target, with candidates where the policy already puts its
        mass rather than spread over the whole box at the noisy steps.

        With ``anchor``, this is conditional importance sampling: the anchor (the clean action that was noised into
        ``a_t``) is one more candidate, weighted the same way. When the anchor is itself a sample of ``p(a_0 | a_t)``,
        the estimate is unbiased for any number of candidates; otherwise it leans towards the anchor, the less so the
        more candidates there are.

        :param noisy: Noisy actions ``a_t``, shape ``(batch, action_dim)``
        :param timesteps: 0-based time index per sample, shape ``(batch,)``
        :param log_density: Unnormalised log density of ``a_0``: candidates ``(batch, n, action_dim)`` -> ``(batch, n)``
        :param n_samples: Number of candidates drawn per sample (at least 1; at least 2 with ``guide``)
        :param anchor: Optional clean actions, shape ``(batch, action_dim)``, inside the box
        :param guide: Optional centres of half of the candidates, shape ``(batch, action_dim)``, inside the box
        :param guide_std: Standard deviation of the candidates around ``guide`` (at most the forward posterior's)
        :return: The estimate, shape ``(batch, action_dim)``, inside the box
        """
        batch, dim = noisy.shape
        alpha_bars = self.alpha_bars[timesteps].view(batch, 1, 1)
        mean = noisy.unsqueeze(1) / alpha_bars.sqrt()
        std = ((1.0 - alpha_bars) / alpha_bars).sqrt()
        n_guided = 0 if guide is None else n_samples // 2
        candidates = truncated_normal(
            mean.expand(batch, n_samples - n_guided, dim), std.expand(batch, n_samples - n_guided, dim)
        )
        if guide is not None:
            guide_stds = std.clamp(max=guide_std)
            guided = truncated_normal(guide.unsqueeze(1).expand(batch, n_guided, dim), guide_stds.expand(batch, n_guided, dim))
            candidates = th.cat([candidates, guided], dim=1)
        if anchor is not None:
            candidates = th.cat([anchor.unsqueeze(1), candidates], dim=1)
        log_weights = log_density(candidates)
        if guide is not None:
            forward = truncated_normal_log_prob(candidates, mean, std)
            mixture = th.logaddexp(
                forward + math.log((n_samples - n_guided) / n_samples),
                truncated_normal_log_prob(candidates, guide.unsqueeze(1), guide_stds) + math.log(n_guided / n_samples),
            )
            log_weights = log_weights + forward - mixture
        weights = th.softmax(log_weights, dim=1)
        return (weights.unsqueeze(-1) * candidates).sum(dim=1)

    def reverse_step(self, x: th.Tensor, eps_pred: th.Tensor, t: int) -> th.Tensor:
        """
        Mean of the DDPM reverse step ``p(x_{t-1} | x_t)``:
        ``(x - beta_t / sqrt(1 - alpha_bar_t) * eps_pred) / sqrt(alpha_t)``.

        :param x: Current sample ``x_t``
        :param eps_pred: Denoiser output at ``(x_t, t)``
        :param t: 0-based time index
        :return: The posterior mean
        """
        step = self._reverse_steps(None)[self.n_diffusion_steps - 1 - t]
        return _reverse_mean(x, eps_pred, step.eps_coef, step.inv_sqrt_alpha)

    def sample(
        self,
        denoise_fn: Callable[[th.Tensor, int], th.Tensor],
        x: th.Tensor,
        temperature: float = 1.0,
        clip: bool = True,
        deterministic: bool = False,
        trajectory: list[th.Tensor] | None = None,
        n_steps: int | None = None,
        step_noise: th.Tensor | None = None,
        sampler: str = "reference",
    ) -> th.Tensor:
        """
        Run the reverse process from ``x_T = x`` down to ``x_0``. Each step but the last adds noise scaled by
        ``temperature`` (none with ``deterministic``); how a step moves depends on ``sampler``:

        - ``"reference"``, as the QSM reference does: the DDPM mean ``(x_t - beta_t / sqrt(1 - alpha_bar_t) eps) /
          sqrt(alpha_t)``, then noise of std ``sqrt(beta_t)``, and, with ``clip``, the sample clipped to ``[-1, 1]``
          after every step.
        - ``"posterior"``, as Diffusion-QL and IDQL do: the step estimates the clean action
          ``a_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)``, clips that estimate to ``[-1, 1]`` (with
          ``clip``), and draws from the forward process's posterior ``q(x_{t-1} | x_t, a_0)``: its mean, and its std
          ``sqrt(beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t))``, below ``sqrt(beta_t)``. The noisy samples are
          left unclipped, as the forward process makes them, so the denoiser sees the inputs it was trained on.

        Without a clip the two give the same mean. The last sample is always clipped, so the result lies in
        ``[-1, 1]``. With ``n_steps`` below ``T``, the chain runs on a strided subset of the time indices
        (``strided_steps``), respaced.

        :param denoise_fn: ``(x_t, t) -> eps_pred``; ``t`` is a Python int
        :param x: Starting point ``x_T``, shape ``(batch, action_dim)``
        :param temperature: Scale of the injected noise (0 gives a deterministic chain)
        :param clip: Whether to keep the chain in ``[-1, 1]``: the sample after every step (``"reference"``: with a
            large score scale a single step can move far outside the box) or the estimate of the clean action
            (``"posterior"``)
        :param deterministic: Skip the injected noise, so no random number is drawn
        :param trajectory: If given, ``x_T`` and every following sample are appended to it (``T + 1`` tensors, the
            last one the returned actions), for inspection
        :param n_steps: Number of reverse steps (None: all ``T``)
        :param step_noise: The standard normal noise to inject, shape ``(batch, n_steps - 1, action_dim)``, one
            vector per step but the last, in the order of the steps; None draws it from PyTorch's generator. Given,
            the chain is a function of its inputs (what an exported sampler takes as an input)
        :param sampler: ``"reference"`` or ``"posterior"`` (see above)
        :return: Actions ``x_0`` in ``[-1, 1]``
        """
        check_sampler(sampler)
        if trajectory is not None:
            trajectory.append(x)
        steps = self._reverse_steps(n_steps)
        posterior = sampler == "posterior"
        for index, step in enumerate(steps):
            last = index == len(steps) - 1
            if posterior:
                x = _posterior_mean(x, denoise_fn(x, step.t), step, clip)
            else:
                x = _reverse_mean(x, denoise_fn(x, step.t), step.eps_coef, step.inv_sqrt_alpha)
            # x is a new tensor of this step: the noise and the clip may write into it, in fewer operations, except
            # where autograd needs the values a clip overwrites
            if not last and not deterministic and temperature > 0:
                noise = th.randn_like(x) if step_noise is None else step_noise[:, index]
                x = x.add_(noise, alpha=(step.posterior_sigma if posterior else step.sigma) * temperature)
            if (clip and not posterior) or last:
                x = x.clamp(-1.0, 1.0) if x.requires_grad else x.clamp_(-1.0, 1.0)
            if trajectory is not None:
                trajectory.append(x)
        return x


def _posterior_mean(x: th.Tensor, eps_pred: th.Tensor, step: ReverseStep, clip: bool) -> th.Tensor:
    """:return: The mean of ``q(x_{t-1} | x_t, a_0)`` at the clean action estimated from ``eps_pred``, clipped if asked"""
    clean = th.add(x.mul(step.clean_scale), eps_pred, alpha=-step.clean_noise_scale)
    if clip:
        clean = clean.clamp(-1.0, 1.0)
    return th.add(clean.mul_(step.clean_coef), x, alpha=step.noisy_coef)


def _reverse_mean(x: th.Tensor, eps_pred: th.Tensor, eps_coef: float, inv_sqrt_alpha: float) -> th.Tensor:
    """:return: The mean of a reverse step, ``(x - beta_t / sqrt(1 - alpha_bar_t) * eps_pred) / sqrt(alpha_t)``"""
    return th.add(x, eps_pred, alpha=-eps_coef).mul_(inv_sqrt_alpha)

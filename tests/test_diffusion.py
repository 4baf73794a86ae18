"""The diffusion math: schedules, forward noising and the reverse sampler."""

import math

import numpy as np
import pytest
import torch as th

from sb3_qsm.common.diffusion import DiffusionSchedule, truncated_normal, truncated_normal_log_prob
from sb3_qsm.common.schedules import (
    check_diffusion_args,
    cosine_beta_schedule,
    linear_beta_schedule,
    make_beta_schedule,
    vp_beta_schedule,
)


def test_vp_schedule_matches_reference_values():
    # QSM_SPEC: T = 5 vp schedule of the reference implementation
    schedule = DiffusionSchedule(5, "vp")
    expected_betas = th.tensor([0.1959, 0.4588, 0.6358, 0.7549, 0.8350])
    expected_alpha_bars = th.tensor([0.8041, 0.4352, 0.1585, 0.0389, 0.0064])
    assert th.allclose(schedule.betas, expected_betas, atol=1e-4)
    assert th.allclose(schedule.alpha_bars, expected_alpha_bars, atol=1e-4)
    # Closed form of the first step: alpha_1 = exp(-0.1 / 5 - 0.5 * 9.9 / 25)
    assert schedule.alphas[0].item() == pytest.approx(math.exp(-0.1 / 5 - 0.5 * 9.9 / 25), rel=1e-6)


def test_linear_and_cosine_schedules():
    linear = linear_beta_schedule(10)
    assert linear[0].item() == pytest.approx(1e-4)
    assert linear[-1].item() == pytest.approx(2e-2)
    cosine = cosine_beta_schedule(10)
    assert cosine.shape == (10,)
    assert th.all(cosine > 0) and th.all(cosine <= 0.999)
    # The product of alphas equals the cosine curve at the end points
    alpha_bar_T = th.prod(1 - cosine).item()
    s = 0.008
    expected = math.cos((1 + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    assert alpha_bar_T == pytest.approx(max(expected, 0.0), abs=1e-3)
    for name in ("vp", "linear", "cosine"):
        betas = make_beta_schedule(name, 7)
        assert betas.shape == (7,)
        # Noise increases with t, and alpha_bar decreases
        assert th.all(betas[1:] >= betas[:-1])
        alpha_bars = DiffusionSchedule(7, name).alpha_bars
        assert th.all(alpha_bars[1:] < alpha_bars[:-1])


def test_vp_schedule_single_step():
    betas = vp_beta_schedule(1)
    assert betas.item() == pytest.approx(1 - math.exp(-0.1 - 0.5 * 9.9))


def test_schedule_not_in_state_dict():
    assert len(DiffusionSchedule(5, "vp").state_dict()) == 0


def test_forward_noising_formula():
    schedule = DiffusionSchedule(5, "vp")
    actions = th.tensor([[0.5, -0.25], [1.0, 0.0], [-1.0, 0.3]])
    noise = th.tensor([[1.0, 2.0], [-1.0, 0.5], [0.0, -2.0]])
    timesteps = th.tensor([0, 2, 4])
    noisy = schedule.add_noise(actions, noise, timesteps)
    alpha_bars = [0.8041, 0.1585, 0.0064]
    for i, alpha_bar in enumerate(alpha_bars):
        expected = math.sqrt(alpha_bar) * actions[i] + math.sqrt(1 - alpha_bar) * noise[i]
        assert th.allclose(noisy[i], expected, atol=1e-4)


def test_reverse_step_inverts_exact_noise_prediction():
    # If eps_pred is the true noise, one reverse step from a_1 is the posterior mean, which for t = 0 gives
    # (a_1 - beta_1 / sqrt(1 - alpha_bar_1) eps) / sqrt(alpha_1) = a_0 exactly (alpha_bar_1 = alpha_1)
    schedule = DiffusionSchedule(5, "vp")
    a0 = th.tensor([[0.3, -0.6]])
    eps = th.tensor([[0.7, 0.1]])
    a1 = schedule.add_noise(a0, eps, th.tensor([0]))
    assert th.allclose(schedule.reverse_step(a1, eps, 0), a0, atol=1e-5)


@pytest.mark.parametrize("deterministic", [True, False])
def test_sampler_output_in_box(deterministic):
    schedule = DiffusionSchedule(5, "vp")
    th.manual_seed(0)
    x = th.randn(512, 3) * 10

    def wild_denoiser(x_t, t):
        return 1000.0 * th.sin(x_t * 7 + t)

    for clip in (True, False):
        out = schedule.sample(wild_denoiser, x, temperature=2.0, clip=clip, deterministic=deterministic)
        assert out.shape == (512, 3)
        assert th.all(out >= -1) and th.all(out <= 1)


def test_deterministic_sampling_draws_no_random_numbers():
    schedule = DiffusionSchedule(5, "vp")
    th.manual_seed(1)
    state = th.get_rng_state()
    schedule.sample(lambda x_t, t: x_t * 0.1, th.zeros(4, 2), deterministic=True)
    assert th.equal(state, th.get_rng_state())


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, "vp", 1.0, "posterior"), "n_diffusion_steps must be an integer >= 1"),
        ((2.5, "vp", 1.0, "posterior"), "n_diffusion_steps must be an integer >= 1"),
        ((5, "quadratic", 1.0, "posterior"), "Unknown beta_schedule 'quadratic'"),
        ((5, "vp", -0.1, "posterior"), "sampler_temperature must be a finite number >= 0"),
        ((5, "vp", float("nan"), "posterior"), "sampler_temperature must be a finite number >= 0"),
    ],
)
def test_bad_diffusion_args(args, message):
    with pytest.raises(ValueError, match=message):
        check_diffusion_args(*args)


@pytest.mark.parametrize("net_arch", [[16, 16], []])
def test_denoiser_by_parts_equals_its_network_on_the_concatenated_input(net_arch):
    """The first layer applied by parts (per time index in training, precomputed in the sampler) gives the noise
    prediction of the network on [a_t, features, code_t]."""
    from sb3_qsm.common.torch_layers import Denoiser

    th.manual_seed(0)
    denoiser = Denoiser(
        features_dim=5,
        action_dim=2,
        net_arch=net_arch,
        activation_fn=th.nn.SiLU,
        time_embed_dim=8,
        time_net_arch=[8],
        action_fan_in_init=True,
    )
    features, actions = th.randn(7, 5), th.randn(7, 2)
    condition = denoiser.condition(features, 4)
    codes = denoiser.time_codes(4)
    assert condition.shape == (4, 7, net_arch[0] if net_arch else 2)
    for t in range(4):
        expected = denoiser.net(th.cat([actions, features, codes[t].expand(7, -1)], dim=1))
        assert th.allclose(denoiser.forward_conditioned(actions, condition[t]), expected, atol=1e-5)
        assert th.allclose(denoiser(features, actions, th.full((7,), t), 4), expected, atol=1e-5)


def test_noise_from_clean_inverts_the_forward_process():
    schedule = DiffusionSchedule(5, "vp")
    th.manual_seed(0)
    clean, noise = th.rand(64, 3) * 2 - 1, th.randn(64, 3)
    timesteps = th.randint(0, 5, (64,))
    noisy = schedule.add_noise(clean, noise, timesteps)
    assert th.allclose(schedule.noise_from_clean(noisy, clean, timesteps), noise, atol=1e-5)


def _truncated_normal_moments(mean: float, std: float) -> tuple[float, float]:
    """Mean and standard deviation of N(mean, std^2) truncated to [-1, 1], in closed form."""
    normal = th.distributions.Normal(th.tensor(0.0, dtype=th.float64), 1.0)
    lower = th.tensor((-1.0 - mean) / std, dtype=th.float64)
    upper = th.tensor((1.0 - mean) / std, dtype=th.float64)
    mass = normal.cdf(upper) - normal.cdf(lower)
    pdf_lower, pdf_upper = normal.log_prob(lower).exp(), normal.log_prob(upper).exp()
    shift = (pdf_lower - pdf_upper) / mass
    variance = 1.0 + (lower * pdf_lower - upper * pdf_upper) / mass - shift**2
    return float(mean + std * shift), float(std * variance.sqrt())


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (0.3, 0.05), (2.5, 1.0), (-6.0, 2.0), (40.0, 12.5), (0.0, 1e4)])
def test_truncated_normal_matches_its_moments(mean, std):
    """Samples stay in the box and have the truncated normal's mean and spread, even for means far outside the
    box (the noisiest diffusion steps put a_t / sqrt(alpha_bar_t) there)."""
    th.manual_seed(0)
    samples = truncated_normal(th.full((100_000,), mean), th.full((100_000,), std))
    assert samples.dtype == th.float32 and samples.abs().max() <= 1.0
    expected_mean, expected_std = _truncated_normal_moments(mean, std)
    assert float(samples.mean()) == pytest.approx(expected_mean, abs=0.01)
    assert float(samples.std()) == pytest.approx(expected_std, rel=0.02, abs=1e-3)


@pytest.mark.parametrize("mean, std", [(0.0, 1.0), (0.3, 0.05), (2.5, 1.0), (-6.0, 2.0), (40.0, 12.5), (9.0, 0.5)])
def test_truncated_normal_log_prob_is_a_density_on_the_box(mean, std):
    """The log density integrates to one over the box, and is the normal's minus the log of the box's mass, even
    where the box lies far in a tail (mean 9, std 0.5: the box is 16 standard deviations out)."""
    grid = th.linspace(-1.0, 1.0, 200_001, dtype=th.float64).unsqueeze(-1)
    log_prob = truncated_normal_log_prob(grid, th.tensor(mean, dtype=th.float64), th.tensor(std, dtype=th.float64))
    assert float(th.trapezoid(log_prob.exp(), grid[:, 0])) == pytest.approx(1.0, rel=1e-4)
    two = th.tensor([[0.25, -0.5]])
    joint = truncated_normal_log_prob(two, th.tensor(mean), th.tensor(std))
    each = sum(truncated_normal_log_prob(two[:, i : i + 1], th.tensor(mean), th.tensor(std)) for i in range(2))
    assert th.allclose(joint, each)
    if abs(mean) < 5:
        normal = th.distributions.Normal(mean, std)
        mass = normal.cdf(th.tensor(1.0)) - normal.cdf(th.tensor(-1.0))
        assert float(joint) == pytest.approx(float(normal.log_prob(two).sum() - 2 * mass.log()), rel=1e-4)


def test_clean_from_noise_inverts_noise_from_clean():
    schedule = DiffusionSchedule(10, "cosine")
    th.manual_seed(0)
    clean, noise, timesteps = th.rand(64, 3) * 2 - 1, th.randn(64, 3), th.randint(0, 10, (64,))
    noisy = schedule.add_noise(clean, noise, timesteps)
    assert th.allclose(schedule.clean_from_noise(noisy, noise, timesteps), clean, atol=1e-4)


def test_posterior_mean_with_a_guide_keeps_the_target_and_sharpens_the_estimate():
    """
    Half of the candidates around a guide, weighted against the mixture of the two proposals: with many candidates
    the estimate is the same as without a guide, even for a guide far from the density's peak (the target is
    unchanged); with 8 candidates in 6 dimensions and a guide near the peak, the estimate is far closer to the
    reference than the forward proposal's alone (nearly uniform on the box at the noisy steps).
    """
    schedule = DiffusionSchedule(10, "cosine")
    th.manual_seed(0)
    peak = th.tensor([0.5, -0.4, 0.2, 0.6, -0.1, -0.7])

    def log_density(candidates):
        return -30.0 * ((candidates - peak) ** 2).sum(-1)

    n = 1000
    noisy, timesteps = th.randn(1, 6).expand(n, 6), th.full((n,), 7)
    reference = schedule.posterior_mean(noisy[:100], timesteps[:100], log_density, 20_000).mean(0)
    off_guide = th.zeros(n, 6)
    many = schedule.posterior_mean(noisy[:100], timesteps[:100], log_density, 20_000, guide=off_guide[:100]).mean(0)
    assert th.allclose(many, reference, atol=0.02)
    good_guide = (peak + 0.1 * th.randn(n, 6)).clamp(-1, 1)
    guided = schedule.posterior_mean(noisy, timesteps, log_density, 8, guide=good_guide)
    alone = schedule.posterior_mean(noisy, timesteps, log_density, 8)
    guided_error, alone_error = (guided - reference).norm(dim=1).mean(), (alone - reference).norm(dim=1).mean()
    assert guided.abs().max() <= 1.0
    assert guided_error < 0.5 * alone_error


def test_posterior_mean_of_a_sharp_density_is_its_peak():
    """For actions of a density concentrated at c, noised to any step, E[a_0 | a_t] is c."""
    schedule = DiffusionSchedule(5, "cosine")
    th.manual_seed(0)
    peak = th.tensor([0.5, -0.3])

    def log_density(candidates):
        return -((candidates - peak) ** 2).sum(-1) / (2 * 0.05**2)

    timesteps = th.arange(5).repeat(100)
    noisy = schedule.add_noise(peak.expand(500, 2), th.randn(500, 2), timesteps)
    estimate = schedule.posterior_mean(noisy, timesteps, log_density, n_samples=512)
    assert estimate.abs().max() <= 1.0
    for t in range(5):
        assert th.median((estimate[timesteps == t] - peak).norm(dim=1)) < 0.05, t


def test_posterior_mean_with_an_anchor_is_unbiased_for_any_number_of_candidates():
    """
    Conditional importance sampling: when the anchor is the clean action a_0 ~ p that was noised into a_t, the
    estimate has the regression properties of E[a_0 | a_t] itself, E[estimate f(a_t)] = E[a_0 f(a_t)], with a single
    drawn candidate. Without the anchor, that candidate alone comes from the proposal, not from p, and the identity
    fails.
    """
    schedule = DiffusionSchedule(5, "vp")
    th.manual_seed(0)
    n, slope = 400_000, 4.0  # p(a_0) ~ exp(4 a_0) on [-1, 1]: most of its mass near 1
    clean = 1.0 + th.log1p(-th.rand(n, 1) * (1 - math.exp(-2 * slope))) / slope  # inverse CDF
    timesteps = th.full((n,), 1)
    noisy = schedule.add_noise(clean, th.randn_like(clean), timesteps)

    def log_density(candidates):
        return slope * candidates.sum(-1)

    anchored = schedule.posterior_mean(noisy, timesteps, log_density, n_samples=1, anchor=clean)
    alone = schedule.posterior_mean(noisy, timesteps, log_density, n_samples=1)
    for f in (th.ones_like(noisy), noisy):
        expected = float((clean * f).mean())
        assert float((anchored * f).mean()) == pytest.approx(expected, abs=0.003)
        assert abs(float((alone * f).mean()) - expected) > 0.05


def test_posterior_mean_of_a_flat_density_at_low_noise_is_the_rescaled_action():
    """With no preference inside the box, E[a_0 | a_t] is a_t / sqrt(alpha_bar_t) away from the bounds."""
    schedule = DiffusionSchedule(10, "cosine")
    th.manual_seed(0)
    clean = th.full((512, 1), 0.2)
    timesteps = th.zeros(512, dtype=th.long)
    noisy = schedule.add_noise(clean, th.randn_like(clean), timesteps)
    estimate = schedule.posterior_mean(noisy, timesteps, lambda c: th.zeros(c.shape[:2]), n_samples=256)
    expected = noisy / schedule.alpha_bars[0].sqrt()
    # A Monte Carlo estimate: close on average, with no systematic pull towards 0 or the bounds
    assert (estimate - expected).abs().mean() < 0.02
    assert abs(float((estimate - expected).mean())) < 0.005


@pytest.mark.parametrize("n_diffusion_steps", [1, 5, 10])
def test_strided_steps_spread_over_the_chain(n_diffusion_steps):
    schedule = DiffusionSchedule(n_diffusion_steps, "cosine")
    assert schedule.strided_steps(n_diffusion_steps) == list(range(n_diffusion_steps))
    assert schedule.strided_steps(1) == [n_diffusion_steps - 1]
    for n_steps in range(2, n_diffusion_steps + 1):
        steps = schedule.strided_steps(n_steps)
        assert len(steps) == n_steps and steps[0] == 0 and steps[-1] == n_diffusion_steps - 1
    with pytest.raises(ValueError, match="n_steps must be between 1 and n_diffusion_steps"):
        schedule.strided_steps(n_diffusion_steps + 1)


@pytest.mark.parametrize("n_steps", [1, 3, 7])
def test_respaced_chain_keeps_the_noise_of_the_schedule(n_steps):
    """Respacing: the kept steps' alphas multiply to the schedule's alpha_bar at the noisiest step, so the chain
    undoes exactly the noise the forward process put in; each step's constants are those of DDPM between its two
    indices (the posterior's variance beta_t (1 - alpha_bar_s) / (1 - alpha_bar_t)); with all T steps they are the
    schedule's own."""
    schedule = DiffusionSchedule(10, "cosine")
    alpha_bars = schedule.alpha_bars.double().tolist()
    steps = schedule._reverse_steps(n_steps)
    kept = schedule.strided_steps(n_steps)
    assert [step.t for step in steps] == kept[::-1]
    alphas = [1.0 / step.inv_sqrt_alpha**2 for step in steps]
    assert math.prod(alphas) == pytest.approx(alpha_bars[-1], rel=1e-5)
    for step in steps:
        index = kept.index(step.t)
        alpha_bar, alpha_bar_next = alpha_bars[step.t], alpha_bars[kept[index - 1]] if index > 0 else 1.0
        beta = 1.0 - alpha_bar / alpha_bar_next
        assert step.sigma == pytest.approx(math.sqrt(beta), rel=1e-5)
        assert step.posterior_sigma == pytest.approx(math.sqrt(beta * (1 - alpha_bar_next) / (1 - alpha_bar)), rel=1e-5)
        assert step.eps_coef == pytest.approx(beta / math.sqrt(1 - alpha_bar), rel=1e-5)
    assert steps[-1].posterior_sigma == 0.0
    full = schedule._reverse_steps(None)
    assert full == schedule._reverse_steps(10) and [step.t for step in full] == list(range(9, -1, -1))
    assert [step.sigma**2 for step in full] == pytest.approx(schedule.betas.double().flip(0).tolist(), rel=1e-5)


def test_the_two_samplers_take_the_same_mean_without_a_clip():
    """Without a clip, the posterior's mean at the clean action estimated from the noise is DDPM's mean in its noise
    form: the noise-free chains of the two samplers agree, here on an arbitrary denoiser."""
    schedule = DiffusionSchedule(10, "cosine")
    x = th.randn(64, 3, generator=th.Generator().manual_seed(0))

    def denoise(x_t: th.Tensor, t: int) -> th.Tensor:
        return th.sin(3 * x_t + t)

    for n_steps in (None, 5):
        chains = [
            schedule.sample(denoise, x, clip=False, deterministic=True, n_steps=n_steps, sampler=sampler)
            for sampler in ("reference", "posterior")
        ]
        assert th.allclose(chains[0], chains[1], atol=1e-5)


def test_posterior_sampler_clips_the_clean_estimate_and_leaves_the_noisy_samples_alone():
    """The posterior sampler keeps the chain in the box through its estimate of the clean action: with the exact
    denoiser of a point outside the box, its samples end exactly on the boundary, while the noisy samples on the way
    leave the box as the forward process's do; the reference sampler clips every sample instead."""
    schedule = DiffusionSchedule(10, "cosine")
    target = 3.0

    def exact(x_t: th.Tensor, t: int) -> th.Tensor:
        alpha_bar = float(schedule.alpha_bars[t])
        return (x_t - math.sqrt(alpha_bar) * target) / math.sqrt(1 - alpha_bar)

    th.manual_seed(0)
    trajectory: list[th.Tensor] = []
    actions = schedule.sample(exact, th.randn(256, 1), trajectory=trajectory, sampler="posterior")
    assert th.equal(actions, th.ones_like(actions))
    assert max(float(x.abs().max()) for x in trajectory[1:-1]) > 1.0
    trajectory = []
    schedule.sample(exact, th.randn(256, 1), trajectory=trajectory, sampler="reference")
    assert max(float(x.abs().max()) for x in trajectory[1:]) <= 1.0


def test_sampler_is_checked():
    schedule = DiffusionSchedule(3, "cosine")
    with pytest.raises(ValueError, match=r"sampler must be one of .* got 'ddim'"):
        schedule.sample(lambda x, t: x, th.zeros(1, 1), sampler="ddim")


@pytest.mark.parametrize(
    "n_steps, sampler", [(2, "reference"), (5, "reference"), (20, "reference"), (5, "posterior"), (20, "posterior")]
)
def test_respaced_chain_with_the_exact_denoiser_reaches_the_modes(n_steps, sampler):
    """With the exact noise prediction of a two-mode mixture, the strided chain still puts its samples on the modes,
    half on each. (With 2 steps, the posterior sampler's one noisy step draws near the mixture's mean with a small
    variance, and its samples spread between the modes: a median distance of 0.106.)"""
    from sb3_qsm.benchmarks.multimodal import exact_denoiser

    schedule = DiffusionSchedule(20, "cosine")
    modes = np.array([[-0.5], [0.5]])
    th.manual_seed(0)
    samples = schedule.sample(exact_denoiser(schedule, modes, 0.05), th.randn(4000, 1), n_steps=n_steps, sampler=sampler)
    nearest = (samples - th.as_tensor(modes.T, dtype=th.float32)).abs().min(dim=1).values
    assert th.median(nearest) < 0.1
    assert float((samples > 0).float().mean()) == pytest.approx(0.5, abs=0.05)

"""QSM's own update: the critic's action gradient and the direction of the Q-score matching step."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.envs import IdentityEnvBox
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from torch import nn

from sb3_qsm import QSM
from sb3_qsm.common.critics import q_values
from sb3_qsm.qsm.arguments import target_chain_steps

TARGET = th.tensor([0.5, -0.3])


class QuadraticCritic(nn.Module):
    """Fixed critic ``Q(s, a) = -||a - a*||^2`` (twice, as two identical critics)."""

    def forward(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        q = -((actions - TARGET) ** 2).sum(dim=1, keepdim=True)
        return q, q


def _batch(obs_dim: int, actions: th.Tensor) -> ReplayBufferSamples:
    n = actions.shape[0]
    obs = th.zeros(n, obs_dim)
    zeros = th.zeros(n, 1)
    return ReplayBufferSamples(obs, actions, obs, zeros, zeros, None)


def _box_env() -> IdentityEnvBox:
    """An env with 2-D observations and 2-D actions in [-1, 1]."""
    env = IdentityEnvBox(low=-1, high=1)
    env.action_space = spaces.Box(-1, 1, (2,), np.float32)
    env.observation_space = spaces.Box(-1, 1, (2,), np.float32)
    return env


def test_q_score_is_exact_for_quadratic_critic():
    model = QSM("MlpPolicy", _box_env(), n_diffusion_steps=2, policy_kwargs=dict(net_arch=[8]), device="cpu")
    model.critic = QuadraticCritic()
    actions = th.tensor([[0.0, 0.0], [1.0, -1.0], [0.5, -0.3]])
    grad = model.q_score(th.zeros(3, 2), actions)
    assert th.allclose(grad, th.tensor([[1.0, -0.6], [-1.0, 1.4], [0.0, 0.0]]))


def test_q_score_leaves_critic_grad_untouched():
    model = QSM("MlpPolicy", "Pendulum-v1", n_diffusion_steps=2, policy_kwargs=dict(net_arch=[8]), device="cpu")
    obs = th.randn(16, 3)
    actions = th.rand(16, 1) * 2 - 1
    for param in model.critic.parameters():
        assert param.grad is None
    model.q_score(obs, actions)
    assert all(param.grad is None for param in model.critic.parameters())
    # Existing gradients are not accumulated into either
    for param in model.critic.parameters():
        param.grad = th.ones_like(param)
    model.q_score(obs, actions)
    assert all(th.equal(param.grad, th.ones_like(param)) for param in model.critic.parameters())


def test_q_score_matches_finite_differences():
    model = QSM(
        "MlpPolicy", "Pendulum-v1", seed=0, n_diffusion_steps=2, policy_kwargs=dict(net_arch=[8], n_critics=3), device="cpu"
    )
    obs = th.randn(4, 3)
    actions = th.rand(4, 1) * 2 - 1
    grad = model.q_score(obs, actions)
    h = 1e-2
    with th.no_grad():
        q_plus = q_values(model.critic, obs, actions + h).mean(dim=1)
        q_minus = q_values(model.critic, obs, actions - h).mean(dim=1)
    assert th.allclose(grad[:, 0], (q_plus - q_minus) / (2 * h), atol=1e-3)


@pytest.mark.parametrize("score_scale", [1.0, -1.0])
def test_sign_qsm_moves_samples_to_the_argmax(score_scale):
    """
    With a fixed critic Q(s, a) = -||a - a*||^2, QSM actor updates must move both deterministic and stochastic
    samples to a*. Regressing onto +score_scale * grad Q (the sign in the paper's README) must not: it pushes
    the samples away, so the same test run with the sign flipped fails.
    """
    model = QSM(
        "MlpPolicy",
        _box_env(),
        seed=0,
        learning_rate=3e-3,
        # With Q = -||a - a*||^2 the ideal denoiser is eps = 2 score_scale (a_t - a*); at score_scale = 1 the last
        # reverse step lands near a*, while at 50 every step overshoots by ~40x and only the clip holds it
        score_scale=1.0,
        score_target="gradient",
        n_diffusion_steps=5,
        beta_schedule="vp",
        policy_kwargs=dict(net_arch=[64, 64], action_fan_in_init=False),
        device="cpu",  # the batches below are built on the CPU
    )
    model.score_scale = score_scale  # bypass the constructor check to build the wrong-sign control
    model.critic = QuadraticCritic()
    th.manual_seed(0)
    for _ in range(300):
        model._n_updates += 1
        model._update_actor(_batch(2, th.rand(256, 2) * 2 - 1))
    obs = th.zeros(1000, 2)
    with th.no_grad():
        deterministic = model.actor.sample(obs[:1], deterministic=True)[0]
        stochastic = model.actor.sample(obs, deterministic=False)
    near = (stochastic - TARGET).norm(dim=1) < 0.2
    if score_scale > 0:
        assert (deterministic - TARGET).norm() < 0.15, deterministic
        assert near.float().mean() > 0.9, stochastic.mean(dim=0)
    else:
        assert (deterministic - TARGET).norm() > 0.5
        assert near.float().mean() < 0.1


class FlatCritic(nn.Module):
    """Fixed critic with no preference between actions: ``Q(s, a) = 0`` (its action gradient is zero)."""

    def forward(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        q = 0.0 * actions.sum(dim=1, keepdim=True)
        return q, q


@pytest.mark.parametrize("bc_coef", [0.0, 1.0])
def test_bc_coef_pulls_the_policy_towards_replay_actions(bc_coef):
    """
    With a critic that prefers no action, the paper's update (bc_coef=0) regresses the denoiser onto 0 and the
    deterministic sample stays at the chain's start, 0; the replay-action term (bc_coef > 0) makes the policy
    reproduce the replay actions, all equal to a* here.
    """
    model = QSM(
        "MlpPolicy",
        _box_env(),
        seed=0,
        learning_rate=3e-3,
        bc_coef=bc_coef,
        score_target="gradient",
        n_diffusion_steps=5,
        beta_schedule="vp",
        policy_kwargs=dict(net_arch=[64, 64], action_fan_in_init=False),
        device="cpu",
    )
    model.critic = FlatCritic()
    th.manual_seed(0)
    for _ in range(300):
        model._n_updates += 1
        model._update_actor(_batch(2, TARGET.repeat(256, 1)))
    with th.no_grad():
        deterministic = model.actor.sample(th.zeros(1, 2), deterministic=True)[0]
    if bc_coef > 0:
        assert (deterministic - TARGET).norm() < 0.1, deterministic
    else:
        assert deterministic.norm() < 0.1, deterministic


class AffineCritic(nn.Module):
    """``scale * Q + offset`` of another critic."""

    def __init__(self, critic: nn.Module, scale: float, offset: float):
        super().__init__()
        self.critic, self.scale, self.offset = critic, scale, offset

    def forward(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        return tuple(self.scale * q + self.offset for q in self.critic(obs, actions))


def test_posterior_target_points_at_the_critic_peak():
    """The 'posterior' target is the noise that takes a_t back to E[a_0 | a_t] of exp(score_scale Q / spread): for a
    sharp critic peak at a*, the clean action implied for actions noised from a* is a*, at every step, from the drawn
    candidates alone (no replay action among them)."""
    model = QSM("MlpPolicy", _box_env(), n_diffusion_steps=5, score_target="posterior", n_score_samples=256, score_scale=100.0)
    model.critic = QuadraticCritic()
    th.manual_seed(0)
    timesteps = th.arange(5).repeat(40)
    noisy = model.actor.schedule.add_noise(TARGET.expand(200, 2), th.randn(200, 2), timesteps)
    target, spread = model.posterior_noise(th.zeros(200, 2), noisy, timesteps)
    alpha_bars = model.actor.schedule.alpha_bars[timesteps].unsqueeze(-1)
    implied_clean = (noisy - (1 - alpha_bars).sqrt() * target) / alpha_bars.sqrt()
    assert th.median((implied_clean - TARGET).norm(dim=1)) < 0.1
    assert spread > 0


def test_posterior_target_does_not_depend_on_the_reward_scale():
    """Q is divided by its spread over the candidates, so a critic scaled by 1000 and shifted gives the same target:
    one score_scale fits every reward scale."""
    model = QSM("MlpPolicy", _box_env(), n_diffusion_steps=5, score_target="posterior", n_score_samples=16, score_scale=5.0)
    th.manual_seed(0)
    actions = th.rand(64, 2) * 2 - 1
    timesteps = th.randint(0, 5, (64,))
    noisy = model.actor.schedule.add_noise(actions, th.randn(64, 2), timesteps)
    targets, spreads = [], []
    for scale, offset in [(1.0, 0.0), (1000.0, -250.0)]:
        model.critic = AffineCritic(QuadraticCritic(), scale, offset)
        th.manual_seed(1)
        target, spread = model.posterior_noise(th.zeros(64, 2), noisy, timesteps, actions)
        targets.append(target)
        spreads.append(spread)
    assert spreads[1] == pytest.approx(1000.0 * spreads[0], rel=1e-4)
    assert th.allclose(targets[0], targets[1], atol=1e-4)


def test_q_spread_floor_broadens_a_flat_critic_only():
    """q_spread_floor: the spread the target divides by is at least the floor. A critic whose spread is above the
    floor gives the same target as without it; the same critic scaled down below the floor gives the target of
    exp(score_scale * Q / floor), which for a critic 1e-4 of the floor is the flat density's (uniform weights)."""
    model = QSM("MlpPolicy", _box_env(), n_diffusion_steps=5, n_score_samples=16, score_scale=5.0, q_spread_floor=0.5)
    th.manual_seed(0)
    actions = th.rand(64, 2) * 2 - 1
    timesteps = th.randint(0, 5, (64,))
    noisy = model.actor.schedule.add_noise(actions, th.randn(64, 2), timesteps)

    def target(scale: float, floor: float) -> tuple[th.Tensor, float]:
        model.critic, model.q_spread_floor = AffineCritic(QuadraticCritic(), scale, 3.0), floor
        th.manual_seed(1)
        return model.posterior_noise(th.zeros(64, 2), noisy, timesteps, actions)

    unfloored, spread = target(100.0, 0.0)
    assert spread > 0.5
    floored, floored_spread = target(100.0, 0.5)
    assert th.equal(floored, unfloored) and floored_spread == spread
    flat, flat_spread = target(1e-4 * 0.5 / spread, 0.5)
    assert flat_spread == 0.5
    uniform, _ = target(0.0, 0.0)
    assert th.allclose(flat, uniform, atol=1e-3)
    assert not th.allclose(flat, unfloored, atol=1e-2)


def test_posterior_target_trains_and_logs_the_critic_spread():
    model = QSM(
        "MlpPolicy", "Pendulum-v1", learning_starts=50, score_target="posterior", n_score_samples=4, seed=0, device="cpu"
    )
    model.learn(100)
    assert "train/actor_loss" in model.logger.name_to_value and np.isfinite(model.logger.name_to_value["train/actor_loss"])
    assert model.logger.name_to_value["train/q_spread"] > 0
    assert "train/q_grad_norm" not in model.logger.name_to_value


def test_policy_proposal_centres_half_the_candidates_on_the_actor_estimate(monkeypatch, tmp_path):
    """score_proposal="policy": the guide of the posterior target is the clean action implied by the actor's own
    noise prediction at a_t (the one the loss regresses), clipped to the box; the model trains and saves it."""
    model = QSM("MlpPolicy", "Pendulum-v1", learning_starts=50, score_proposal="policy", n_score_samples=4, seed=0)
    schedule = model.actor.schedule
    guides = []
    posterior_mean = schedule.posterior_mean

    def recording(noisy, timesteps, log_density, n_samples, anchor=None, guide=None, **kwargs):
        expected = model.actor.predict_noise(observations, noisy, timesteps)
        guides.append((guide, schedule.clean_from_noise(noisy, expected, timesteps).clamp(-1, 1)))
        return posterior_mean(noisy, timesteps, log_density, n_samples, anchor=anchor, guide=guide, **kwargs)

    monkeypatch.setattr(schedule, "posterior_mean", recording)
    observations, actions = th.randn(16, 3), th.rand(16, 1) * 2 - 1
    with th.no_grad():
        model._actor_loss(observations, actions)
    ((guide, expected),) = guides
    assert th.allclose(guide, expected, atol=1e-6)
    monkeypatch.undo()
    model.learn(100)
    assert np.isfinite(model.logger.name_to_value["train/actor_loss"])
    model.save(tmp_path / "model.zip")
    assert QSM.load(tmp_path / "model.zip").score_proposal == "policy"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(score_target="tweedie"), "score_target must be one of"),
        (dict(score_proposal="prior"), "score_proposal must be one of"),
        (dict(score_actions="buffer"), "score_actions must be one of"),
        (dict(score_target="posterior", n_score_samples=1), "n_score_samples must be an integer >= 2"),
        (dict(n_score_samples=2.5), "n_score_samples must be an integer >= 2"),
    ],
)
def test_bad_score_target_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QSM("MlpPolicy", "Pendulum-v1", **kwargs)


def test_action_fan_in_init_gives_the_action_its_own_scale():
    """Under Xavier the action's first-layer weights are bounded by sqrt(6 / (fan_in + fan_out)) of the whole input;
    with action_fan_in_init (the default) by sqrt(3 / action_dim), and the other inputs keep Xavier."""
    th.manual_seed(0)
    plain = QSM("MlpPolicy", _box_env(), policy_kwargs=dict(net_arch=[256, 256], action_fan_in_init=False))
    scaled = QSM("MlpPolicy", _box_env(), policy_kwargs=dict(net_arch=[256, 256]))  # the default
    first_plain = plain.actor.denoiser.net[0].weight.detach()
    first_scaled = scaled.actor.denoiser.net[0].weight.detach()
    xavier_bound = (6 / (first_plain.shape[0] + first_plain.shape[1])) ** 0.5
    assert first_plain[:, :2].abs().max() <= xavier_bound
    own_bound = (3 / 2) ** 0.5
    assert xavier_bound < first_scaled[:, :2].abs().max() <= own_bound
    assert float(first_scaled[:, :2].std()) == pytest.approx(own_bound / 3**0.5, rel=0.1)
    assert first_scaled[:, 2:].abs().max() <= xavier_bound


@pytest.mark.parametrize(
    ("target_diffusion_steps", "n_diffusion_steps", "passes"), [(2, 6, 2), ("auto", 6, 3), ("auto", 5, 3), (None, 6, 6)]
)
def test_target_diffusion_steps_shortens_the_critic_targets_chain_only(
    small_kwargs, target_diffusion_steps, n_diffusion_steps, passes
):
    """The next action of the critic target runs target_diffusion_steps denoiser passes ("auto": half of T, rounded
    up; None: all T); acting runs all T."""
    small_kwargs["n_diffusion_steps"] = n_diffusion_steps
    model = QSM("MlpPolicy", "Pendulum-v1", target_diffusion_steps=target_diffusion_steps, **small_kwargs)
    model.learn(small_kwargs["learning_starts"] + 1)
    calls = []
    forward_conditioned = model.actor.denoiser.forward_conditioned

    def counted(*args):
        calls.append(args[0].shape[0])
        return forward_conditioned(*args)

    model.actor.denoiser.forward_conditioned = counted  # type: ignore[method-assign]
    model._target_actions(th.zeros(32, 3))
    assert calls == [32] * passes
    calls.clear()
    model.predict(model.observation_space.sample())
    assert calls == [1] * n_diffusion_steps


def test_target_diffusion_steps_defaults_to_half_the_chain():
    assert QSM("MlpPolicy", "Pendulum-v1").target_diffusion_steps == "auto"


@pytest.mark.parametrize("value", [0, 11, 2.5, "3", "half"])
def test_bad_target_diffusion_steps(value):
    with pytest.raises(
        ValueError, match=r"target_diffusion_steps must be 'auto', None or an integer from 1 to n_diffusion_steps=10"
    ):
        QSM("MlpPolicy", "Pendulum-v1", target_diffusion_steps=value)


def test_score_actions_policy_noises_fresh_policy_samples_and_keeps_replay_actions_for_bc(monkeypatch, tmp_path):
    """score_actions="policy" without the critic target's samples at hand: the actor loss noises samples of the
    policy it draws on the critic target's chain (and the posterior target keeps them as its extra candidate), while
    bc_coef's term still denoises the replay actions; the setting trains, is saved, and an archive without it loads
    as "replay"."""
    model = QSM("MlpPolicy", "Pendulum-v1", learning_starts=50, score_actions="policy", bc_coef=0.5, seed=0)
    schedule = model.actor.schedule
    sampled, noised, anchors = [], [], []
    sample, sample_noisy_actions, posterior_mean = model.actor.sample, schedule.sample_noisy_actions, schedule.posterior_mean

    def recording_sample(observations, *args, **kwargs):
        sampled.append((sample(observations, *args, **kwargs), kwargs.get("n_steps")))
        return sampled[-1][0]

    def recording_noisy(actions, timesteps=None):
        noised.append(actions)
        return sample_noisy_actions(actions, timesteps)

    def recording_posterior(noisy, timesteps, log_density, n_samples, anchor=None, **kwargs):
        anchors.append(anchor)
        return posterior_mean(noisy, timesteps, log_density, n_samples, anchor=anchor, **kwargs)

    monkeypatch.setattr(model.actor, "sample", recording_sample)
    monkeypatch.setattr(schedule, "sample_noisy_actions", recording_noisy)
    monkeypatch.setattr(schedule, "posterior_mean", recording_posterior)
    observations, actions = th.randn(16, 3), th.rand(16, 1) * 2 - 1
    model._actor_loss(observations, actions)
    ((samples, n_steps),) = sampled
    assert n_steps == target_chain_steps(model.target_diffusion_steps, model.n_diffusion_steps)
    assert not samples.requires_grad
    # First the policy's samples (the score's), then the replay actions (the denoising term's)
    assert len(noised) == 2 and noised[0] is samples and noised[1] is actions
    assert anchors[0] is samples
    monkeypatch.undo()
    model.learn(100)
    assert np.isfinite(model.logger.name_to_value["train/actor_loss"])
    model.save(tmp_path / "model.zip")
    assert QSM.load(tmp_path / "model.zip").score_actions == "policy"
    assert QSM("MlpPolicy", "Pendulum-v1").score_actions == "mixed"


def test_score_actions_replay_noises_the_replay_actions_once(monkeypatch):
    model = QSM("MlpPolicy", "Pendulum-v1", score_actions="replay", bc_coef=0.5, seed=0)
    noised = []
    sample_noisy_actions = model.actor.schedule.sample_noisy_actions
    monkeypatch.setattr(
        model.actor.schedule, "sample_noisy_actions", lambda a, t=None: noised.append(a) or sample_noisy_actions(a, t)
    )
    actions = th.rand(16, 1) * 2 - 1
    model._actor_loss(th.randn(16, 3), actions)
    assert len(noised) == 1 and noised[0] is actions


def _recorded_score_batch(model, monkeypatch):
    """Record the clean actions the actor loss noises, their steps, and the observations the denoiser sees"""
    noised, evaluated = [], []
    sample_noisy_actions, predict_noise = model.actor.schedule.sample_noisy_actions, model.actor.predict_noise

    def recording_noisy(actions, timesteps=None):
        noised.append((actions, timesteps))
        return sample_noisy_actions(actions, timesteps)

    monkeypatch.setattr(model.actor.schedule, "sample_noisy_actions", recording_noisy)
    monkeypatch.setattr(model.actor, "predict_noise", lambda obs, *args: evaluated.append(obs) or predict_noise(obs, *args))
    return noised, evaluated


@pytest.mark.parametrize("score_actions", ["policy", "mixed"])
def test_score_actions_reuse_the_critic_targets_samples(monkeypatch, score_actions):
    """With the critic target's samples at the next observations given, "policy" noises them (at the next
    observations); "mixed" does so for the rows noised to the clean half of the steps (t < T // 2) and noises the
    replay actions (at the observations) at the others; neither draws a chain of its own."""
    model = QSM("MlpPolicy", "Pendulum-v1", score_actions=score_actions, seed=0)
    noised, evaluated = _recorded_score_batch(model, monkeypatch)
    monkeypatch.setattr(model.actor, "sample", lambda *args, **kwargs: pytest.fail("drew a chain of its own"))
    observations, next_observations = th.randn(256, 3), th.randn(256, 3)
    actions, next_samples = th.rand(256, 1) * 2 - 1, th.rand(256, 1) * 2 - 1
    model._actor_loss(observations, actions, next_observations, next_samples)
    ((clean, timesteps),) = noised
    on_policy = timesteps < 5 if score_actions == "mixed" else th.ones(256, dtype=th.bool)
    assert 0 < int(on_policy.sum()) and (score_actions == "policy" or int(on_policy.sum()) < 256)
    assert th.equal(clean[on_policy], next_samples[on_policy]) and th.equal(clean[~on_policy], actions[~on_policy])
    assert th.equal(evaluated[0][on_policy], next_observations[on_policy])
    assert th.equal(evaluated[0][~on_policy], observations[~on_policy])


@pytest.mark.parametrize("score_actions", ["replay", "policy", "mixed"])
@pytest.mark.parametrize("deterministic_target", [False, True])
def test_a_training_step_draws_one_chain_unless_the_target_is_deterministic(monkeypatch, score_actions, deterministic_target):
    """The actor update's fresh samples of the policy are the critic target's: a gradient step draws one chain (the
    critic target's) with any score_actions, and a separate one only where the critic target's chain is noise-free."""
    model = QSM(
        "MlpPolicy",
        "Pendulum-v1",
        score_actions=score_actions,
        deterministic_target=deterministic_target,
        policy_delay=1,
        learning_starts=32,
        seed=0,
    )
    model.learn(32)
    sample, calls = model.actor.sample, []
    monkeypatch.setattr(model.actor, "sample", lambda *args, **kwargs: calls.append(kwargs) or sample(*args, **kwargs))
    model.train(gradient_steps=1, batch_size=16)
    assert len(calls) == (2 if deterministic_target and score_actions != "replay" else 1)


def test_n_step_returns_discount_each_transition_by_its_own_horizon(monkeypatch):
    """With SB3's n-step replay (``n_steps``), the critic target (TQC's, the default) discounts each transition by
    ``gamma ** k``, k the steps its return sums (fewer where an episode ended within n), not by ``gamma``."""
    model = QSM("MlpPolicy", "Pendulum-v1", n_steps=3, gamma=0.9, learning_starts=250, seed=0)
    assert type(model.replay_buffer).__name__ == "NStepReplayBuffer"
    seen = []
    critic_target = model._quantile_target

    def recording(next_observations, rewards, dones, discounts):
        seen.append(discounts)
        return critic_target(next_observations, rewards, dones, discounts)

    monkeypatch.setattr(model, "_quantile_target", recording)
    model.learn(260)  # the 200-step episode's end lies in the buffer: horizons cut short there
    discounts = th.cat(seen).flatten()
    assert th.all(th.isclose(discounts[:, None], th.tensor([0.9, 0.81, 0.729]), atol=1e-6).any(dim=1))
    assert th.isclose(discounts, th.tensor(0.729), atol=1e-6).float().mean() > 0.9

"""TQC's critics (the default, ``policy_kwargs=dict(n_quantiles=...)``): quantile regression onto truncated pooled
targets."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from sb3_contrib import TQC
from sb3_contrib.common.utils import quantile_huber_loss as contrib_quantile_huber_loss
from sb3_contrib.tqc.policies import Critic as QuantileCritic
from stable_baselines3 import SAC
from stable_baselines3.common.torch_layers import FlattenExtractor

from sb3_qsm import QSM
from sb3_qsm.common.critics import candidate_q_values, q_values
from sb3_qsm.common.quantile_loss import quantile_huber_loss
from sb3_qsm.convert import load_critic_from_checkpoint


def _pendulum_model(small_kwargs, n_quantiles: int = 5, **kwargs) -> QSM:
    small_kwargs["policy_kwargs"].update(n_quantiles=n_quantiles)
    return QSM("MlpPolicy", "Pendulum-v1", seed=0, **small_kwargs, **kwargs)


def _set_constant_quantiles(critic: QuantileCritic, quantiles: list[list[float]]) -> None:
    """Make every network of the critic output the given quantiles whatever its input: zero weights, those biases."""
    with th.no_grad():
        for q_net, values in zip(critic.q_networks, quantiles, strict=True):
            q_net[-1].weight.zero_()
            q_net[-1].bias.copy_(th.tensor(values))


def test_values_are_the_means_of_the_quantiles_with_their_gradients():
    """The quantile mean is folded into the output layer: the same values and action gradients as the critic's own."""
    th.manual_seed(0)
    extractor = FlattenExtractor(spaces.Box(-1, 1, (17,)))
    critic = QuantileCritic(
        spaces.Box(-1, 1, (17,)), spaces.Box(-1, 1, (6,)), [64, 64], extractor, extractor.features_dim, n_quantiles=7
    )
    observations, actions = th.randn(300, 17), (th.rand(300, 6) * 2 - 1).requires_grad_(True)
    expected = critic(observations, actions).mean(dim=2)
    values = q_values(critic, observations, actions)
    assert values.shape == (300, 2)
    assert th.allclose(values, expected, atol=1e-5)
    (expected_grad,) = th.autograd.grad(expected.sum(), actions)
    (grad,) = th.autograd.grad(values.sum(), actions)
    assert th.allclose(grad, expected_grad, atol=1e-5)
    candidates = th.rand(64, 9, 6) * 2 - 1
    with th.no_grad():
        expected = critic(observations[:64].repeat_interleave(9, dim=0), candidates.reshape(-1, 6)).mean(dim=2)
        assert th.allclose(candidate_q_values(critic, observations[:64], candidates), expected.view(64, 9, 2), atol=1e-5)


def test_critic_loss_is_the_quantile_huber_loss_on_the_truncated_pooled_targets(small_kwargs):
    """
    Target networks with quantiles (0, 1, 2) and (3, 4, 5), one dropped per network: the pooled targets keep the four
    smallest, r + discount * (0, 1, 2, 3). The loss is the quantile Huber loss (kappa 1) of the current quantiles
    against them, averaged over every (network, quantile, target) triple, as TQC takes it: written out term by term.
    """
    model = _pendulum_model(small_kwargs, n_quantiles=3, top_quantiles_to_drop_per_net=1)
    assert model.critic_target is not None
    _set_constant_quantiles(model.critic_target, [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    current = [[0.5, 1.5, 2.5], [1.0, 1.0, 4.0]]
    _set_constant_quantiles(model.critic, current)
    batch = 4
    observations, actions = th.zeros(batch, 3), th.zeros(batch, 1)
    rewards, dones = th.ones(batch, 1), th.zeros(batch, 1)
    loss, next_samples = model._critic_loss(observations, actions, th.zeros(batch, 3), rewards, dones, 0.5)
    assert next_samples.shape == (batch, 1)
    targets = [1.0 + 0.5 * value for value in (0.0, 1.0, 2.0, 3.0)]
    terms = []
    for network in current:
        for index, value in enumerate(network):
            tau = (index + 0.5) / 3
            for target in targets:
                error = target - value
                huber = 0.5 * error**2 if abs(error) <= 1 else abs(error) - 0.5
                terms.append(abs(tau - (error < 0)) * huber)
    assert loss.item() == pytest.approx(np.mean(terms), rel=1e-6)
    # A terminal transition bootstraps nothing: every target is the reward
    loss, _ = model._critic_loss(observations, actions, th.zeros(batch, 3), rewards, th.ones(batch, 1), 0.5)
    terms = []
    for network in current:
        for index, value in enumerate(network):
            error = 1.0 - value
            huber = 0.5 * error**2 if abs(error) <= 1 else abs(error) - 0.5
            terms.append(abs((index + 0.5) / 3 - (error < 0)) * huber)
    assert loss.item() == pytest.approx(np.mean(terms), rel=1e-6)


@pytest.mark.parametrize("shape", [(256, 2, 25, 46), (5, 3, 4, 7), (1, 1, 1, 1)])
def test_quantile_huber_loss_and_its_gradient_are_sb3_contribs(shape):
    """
    The loss with its gradient written out gives sb3-contrib's value and autograd's gradient, on errors on both sides
    of the Huber threshold; the target gets none.
    """
    batch, n_critics, n_quantiles, n_targets = shape
    generator = th.Generator().manual_seed(0)
    current = (3 * th.randn(batch, n_critics, n_quantiles, generator=generator)).requires_grad_(True)
    target = (3 * th.randn(batch, n_targets, generator=generator)).requires_grad_(True)
    expected = contrib_quantile_huber_loss(current, target.unsqueeze(1), sum_over_quantiles=False)
    (expected_gradient,) = th.autograd.grad(2.5 * expected, current)
    loss = quantile_huber_loss(current, target)
    gradient, target_gradient = th.autograd.grad(2.5 * loss, (current, target), allow_unused=True)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    th.testing.assert_close(gradient, expected_gradient, rtol=1e-4, atol=1e-9)
    assert target_gradient is None


def test_quantile_huber_loss_names_bad_shapes():
    with pytest.raises(ValueError, match=r"current_quantiles .*got \(4, 3\) and \(4, 6\)"):
        quantile_huber_loss(th.zeros(4, 3), th.zeros(4, 6))


def test_trains_saves_and_loads_with_its_settings(small_kwargs, tmp_path):
    model = _pendulum_model(small_kwargs, n_quantiles=5, top_quantiles_to_drop_per_net=1)
    assert isinstance(model.critic, QuantileCritic) and isinstance(model.critic_target, QuantileCritic)
    assert model.critic.n_quantiles == 5
    model.learn(64)
    assert all(th.isfinite(parameter).all() for parameter in model.critic.parameters())
    model.save(tmp_path / "model.zip")
    loaded = QSM.load(tmp_path / "model.zip")
    assert loaded.policy.n_quantiles == 5 and loaded.top_quantiles_to_drop_per_net == 1
    assert isinstance(loaded.critic, QuantileCritic)
    observations = np.random.default_rng(0).uniform(-1, 1, (8, 3)).astype(np.float32)
    assert np.allclose(loaded.predict(observations, deterministic=True)[0], model.predict(observations, deterministic=True)[0])
    for key, value in model.critic.state_dict().items():
        assert th.equal(value, loaded.critic.state_dict()[key])


def test_tqc_critics_by_default_and_plain_ones_on_request():
    """The defaults' critics are TQC's with 25 quantiles (recorded in policy_kwargs, so that the archive says so);
    CrossQ's critics and n_quantiles=None have one value per network."""
    model = QSM("MlpPolicy", "Pendulum-v1")
    assert model.policy.n_quantiles == 25 and isinstance(model.critic, QuantileCritic)
    assert model.policy_kwargs["n_quantiles"] == 25 and model.top_quantiles_to_drop_per_net == 2
    plain = QSM("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(n_quantiles=None))
    assert plain.policy.n_quantiles is None and type(plain.critic).__name__ == "ContinuousCritic"
    crossq = QSM("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(critic_batch_norm=True))
    assert crossq.policy.n_quantiles is None and crossq.policy_kwargs["n_quantiles"] is None
    assert type(crossq.critic).__name__ == "CrossQCritic"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(policy_kwargs=dict(n_quantiles=0)), "n_quantiles must be 'auto', None"),
        (dict(policy_kwargs=dict(n_quantiles="25")), "n_quantiles must be 'auto', None"),
        (dict(policy_kwargs=dict(n_quantiles=25, critic_batch_norm=True)), "critic_batch_norm"),
        (dict(policy_kwargs=dict(n_quantiles=None), top_quantiles_to_drop_per_net=5), "only applies to TQC's critics"),
        (dict(policy_kwargs=dict(critic_batch_norm=True), top_quantiles_to_drop_per_net=5), "only applies to TQC's"),
        (dict(policy_kwargs=dict(n_quantiles=3), top_quantiles_to_drop_per_net=3), "top_quantiles_to_drop_per_net"),
        (dict(policy_kwargs=dict(n_quantiles=3), top_quantiles_to_drop_per_net=-1), "top_quantiles_to_drop_per_net"),
    ],
)
def test_bad_quantile_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QSM("MlpPolicy", "Pendulum-v1", **kwargs)


@pytest.mark.parametrize("saved", [False, True])
def test_tqc_agent_warm_starts_quantile_critics(small_kwargs, tmp_path, saved):
    tqc = TQC("MlpPolicy", "Pendulum-v1", learning_starts=8, policy_kwargs=dict(net_arch=[16], n_quantiles=5), seed=0)
    tqc.learn(16)
    source = tqc
    if saved:
        tqc.save(tmp_path / "tqc.zip")
        source = tmp_path / "tqc.zip"
    model = _pendulum_model(small_kwargs, n_quantiles=5)
    load_critic_from_checkpoint(model, source)
    for own, copied in ((model.critic, tqc.critic), (model.critic_target, tqc.critic_target)):
        expected = copied.state_dict()
        assert own.state_dict().keys() == expected.keys()
        assert all(th.equal(value, expected[key]) for key, value in own.state_dict().items())


def test_sac_critics_do_not_fit_quantile_critics(small_kwargs):
    sac = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16]))
    model = _pendulum_model(small_kwargs)
    before = {key: value.clone() for key, value in model.critic.state_dict().items()}
    with pytest.raises(ValueError, match="n_quantiles"):
        load_critic_from_checkpoint(model, sac)
    assert all(th.equal(value, model.critic.state_dict()[key]) for key, value in before.items())

"""Critics as CrossQ builds them (``critic_batch_norm=True``): batch renormalisation and no target networks."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from sb3_contrib import CrossQ
from sb3_contrib.common.torch_layers import BatchRenorm1d
from sb3_contrib.crossq.policies import CrossQCritic
from stable_baselines3 import SAC
from stable_baselines3.common.torch_layers import FlattenExtractor

from sb3_qsm import QSM
from sb3_qsm.common.critics import candidate_q_values, fold_batch_norm, q_values, renormalise
from sb3_qsm.convert import load_critic_from_checkpoint


def _critic(n_critics: int = 2) -> CrossQCritic:
    """A CrossQ critic whose renormalisation layers hold running statistics and affine parameters far from 0 and 1."""
    th.manual_seed(0)
    extractor = FlattenExtractor(spaces.Box(-1, 1, (17,)))
    critic = CrossQCritic(
        spaces.Box(-1, 1, (17,)),
        spaces.Box(-1, 1, (6,)),
        net_arch=[64, 64],
        features_extractor=extractor,
        features_dim=extractor.features_dim,
        n_critics=n_critics,
    )
    for module in critic.modules():
        if isinstance(module, BatchRenorm1d):
            module.ra_mean.uniform_(-2, 2)  # type: ignore[operator]
            module.ra_var.uniform_(0.1, 4)  # type: ignore[operator]
            module.scale.data.uniform_(0.5, 2)
            module.bias.data.uniform_(-1, 1)
    critic.set_training_mode(False)
    return critic


def _pendulum_model(small_kwargs, **policy_kwargs) -> QSM:
    small_kwargs["policy_kwargs"].update(critic_batch_norm=True, **policy_kwargs)
    return QSM("MlpPolicy", "Pendulum-v1", seed=0, **small_kwargs)


def test_folded_values_are_the_critics_values_with_their_gradients():
    """Outside training mode the renormalisation is folded into the next linear layer: same values, same gradient."""
    critic = _critic()
    observations, actions = th.randn(300, 17), (th.rand(300, 6) * 2 - 1).requires_grad_(True)
    expected = th.cat(critic(observations, actions), dim=1)
    values = q_values(critic, observations, actions)
    assert th.allclose(values, expected, atol=1e-4)
    (expected_grad,) = th.autograd.grad(expected.sum(), actions)
    (grad,) = th.autograd.grad(values.sum(), actions)
    assert th.allclose(grad, expected_grad, atol=1e-4)
    candidates = th.rand(64, 9, 6) * 2 - 1
    expected = th.cat(critic(observations[:64].repeat_interleave(9, dim=0), candidates.reshape(-1, 6)), dim=1)
    with th.no_grad():
        assert th.allclose(candidate_q_values(critic, observations[:64], candidates), expected.view(64, 9, 2), atol=1e-4)


def test_folding_leaves_a_network_without_renormalisation_as_it_is():
    q_net = th.nn.Sequential(th.nn.Linear(3, 4), th.nn.ReLU(), th.nn.Linear(4, 1))
    assert all(layer is module for layer, module in zip(fold_batch_norm(q_net), q_net, strict=True))
    critic = _critic()
    folded = fold_batch_norm(critic.q_networks[0])  # type: ignore[arg-type]
    assert not any(isinstance(layer, BatchRenorm1d) for layer in folded) and len(folded) == 5  # 3 linear, 2 ReLU


def test_in_training_mode_the_values_use_the_batch_statistics():
    """The critic loss's pass: each batch is normalised by its own statistics, and the running statistics move."""
    critic = _critic()
    critic.set_bn_training_mode(True)
    reference = copy.deepcopy(critic)
    observations, actions = th.randn(32, 17), th.rand(32, 6) * 2 - 1
    assert th.allclose(q_values(critic, observations, actions), th.cat(reference(observations, actions), dim=1), atol=1e-5)
    assert th.allclose(critic.qf0[0].ra_mean, reference.qf0[0].ra_mean)
    before = _critic().qf0[0].ra_mean
    assert not th.allclose(critic.qf0[0].ra_mean, before)
    with th.no_grad():
        # The candidates of one observation would share their statistics: they are evaluated one call as a batch
        values = candidate_q_values(critic, observations[:4], actions[:12].view(4, 3, 6))
    assert values.shape == (4, 3, 2)


@pytest.mark.parametrize("renormalising", [False, True])
def test_renormalise_is_the_layers_training_pass(renormalising):
    """Values, gradients, running statistics and step count as BatchRenorm1d's own, in warm-up and after it."""
    layer = [module for module in _critic().modules() if isinstance(module, BatchRenorm1d)][1]
    layer.train(True)
    if renormalising:
        layer.steps.fill_(layer.warmup_steps + 1)  # type: ignore[operator]
    reference = copy.deepcopy(layer)
    th.manual_seed(1)
    input = (th.randn(512, 64) * 3 + 1).requires_grad_(True)
    output, expected = renormalise(layer, input), reference(input)
    assert th.allclose(output, expected, atol=1e-4)
    weights = th.randn_like(expected)
    gradients = th.autograd.grad((output * weights).sum(), [input, layer.scale, layer.bias])
    expected_gradients = th.autograd.grad((expected * weights).sum(), [input, reference.scale, reference.bias])
    for gradient, expected_gradient in zip(gradients, expected_gradients, strict=True):
        assert th.allclose(gradient, expected_gradient, atol=1e-3)
    for name, buffer in layer.named_buffers():
        assert th.allclose(buffer, reference.get_buffer(name), atol=1e-6), name


def test_the_model_has_no_target_networks_and_saves_and_loads(tmp_path, small_kwargs):
    model = _pendulum_model(small_kwargs)
    assert isinstance(model.critic, CrossQCritic) and model.critic_target is None and model.policy.critic_target is None
    assert not any(key.startswith("critic_target.") for key in model.policy.state_dict())
    model.learn(200)
    model.save(tmp_path / "model.zip")
    loaded = QSM.load(tmp_path / "model.zip", env=model.get_env())
    assert isinstance(loaded.critic, CrossQCritic) and loaded.critic_target is None
    for key, value in model.policy.state_dict().items():
        assert th.equal(value, loaded.policy.state_dict()[key]), key
    observations = np.stack([model.observation_space.sample() for _ in range(5)])
    for deterministic in (True, False):
        th.manual_seed(1)
        action, _ = model.predict(observations, deterministic=deterministic)
        th.manual_seed(1)
        loaded_action, _ = loaded.predict(observations, deterministic=deterministic)
        np.testing.assert_allclose(action, loaded_action, atol=1e-6)
    loaded.learn(100, reset_num_timesteps=False)


def test_one_pass_per_critic_update_moves_the_running_statistics(small_kwargs):
    """The score target and acting evaluate the critics by their running statistics, without changing them."""
    model = _pendulum_model(small_kwargs, best_of_n=4)
    model.learn(150)
    layers = [module for module in model.critic.modules() if isinstance(module, BatchRenorm1d)]
    assert model._n_updates > 0 and all(int(layer.steps) == model._n_updates for layer in layers)
    statistics = [layer.ra_mean.clone() for layer in layers]
    model.predict(model.observation_space.sample(), deterministic=True)
    assert all(th.equal(layer.ra_mean, saved) for layer, saved in zip(layers, statistics, strict=True))
    assert not any(layer.training for layer in layers)


def test_the_td_target_comes_from_the_same_pass_as_the_values(small_kwargs):
    """``Q(s, a)`` and ``Q(s', a')`` are normalised together, by the statistics of both halves of the batch."""
    model = _pendulum_model(small_kwargs)
    model.learn(150)
    batch = model.replay_buffer.sample(32)
    next_actions = th.rand(32, 1) * 2 - 1
    model._target_actions = lambda next_observations: (next_actions, next_actions)  # type: ignore[method-assign]
    reference = copy.deepcopy(model.critic)
    reference.set_bn_training_mode(True)
    joint = th.cat(
        reference(th.cat([batch.observations, batch.next_observations]), th.cat([batch.actions, next_actions])), dim=1
    )
    current, following, _ = model._joint_critic_values(batch.observations, batch.actions, batch.next_observations)
    assert th.allclose(current, joint[:32], atol=1e-5)
    assert th.allclose(following, joint[32:].min(dim=1, keepdim=True).values, atol=1e-5)
    assert current.requires_grad and not following.requires_grad


def test_dict_observations(small_kwargs):
    env = gym.make("Pendulum-v1")
    env = gym.wrappers.TransformObservation(
        env,
        lambda obs: {"a": obs[:2], "b": obs[2:]},
        spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Box(-8, 8, (1,))}),
    )
    small_kwargs["policy_kwargs"]["critic_batch_norm"] = True
    model = QSM("MultiInputPolicy", env, seed=0, **small_kwargs)
    model.learn(150)
    assert model._n_updates > 0


@pytest.mark.parametrize(
    "policy_kwargs, name",
    [
        (dict(critic_batch_norm="yes"), "critic_batch_norm"),
        (dict(critic_batch_norm=True, batch_norm_momentum=0.0), "batch_norm_momentum"),
        (dict(critic_batch_norm=True, batch_norm_eps=-1e-3), "batch_norm_eps"),
        (dict(critic_batch_norm=True, renorm_warmup_steps=-5), "renorm_warmup_steps"),
    ],
)
def test_bad_batch_norm_arguments(policy_kwargs, name):
    with pytest.raises(ValueError, match=name):
        QSM("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs)


def test_sac_critics_do_not_fit_batch_norm_critics(small_kwargs):
    sac = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16]))
    model = _pendulum_model(small_kwargs)
    before = {key: value.clone() for key, value in model.critic.state_dict().items()}
    with pytest.raises(ValueError, match="critic_batch_norm"):
        load_critic_from_checkpoint(model, sac)
    assert all(th.equal(value, model.critic.state_dict()[key]) for key, value in before.items())


@pytest.mark.parametrize("saved", [False, True])
def test_crossq_agent_warm_starts_batch_norm_critics(small_kwargs, tmp_path, saved):
    crossq = CrossQ("MlpPolicy", "Pendulum-v1", learning_starts=8, policy_kwargs=dict(net_arch=dict(pi=[16], qf=[16])), seed=0)
    crossq.learn(16)
    source = crossq
    if saved:
        crossq.save(tmp_path / "crossq.zip")
        source = tmp_path / "crossq.zip"
    model = _pendulum_model(small_kwargs)
    load_critic_from_checkpoint(model, source)
    copied = crossq.policy.critic.state_dict()
    assert copied.keys() == model.critic.state_dict().keys()
    assert all(th.equal(value, copied[key]) for key, value in model.critic.state_dict().items())

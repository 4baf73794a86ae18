"""The training step's arithmetic: linear layers on oneDNN, and the critics' values computed from their layers."""

import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn
from torch.nn import functional as F

from sb3_qsm.common.critics import candidate_q_values, has_standard_layout, q_values
from sb3_qsm.common.linear import FUSED_ACTIVATIONS, ONEDNN_MIN_WORK, apply_mlp, linear, onednn_available, uses_onednn

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN linear kernel")
ACTIVATIONS = {"none": lambda x: x, "relu": F.relu, "swish": F.silu, "tanh": th.tanh}


def _layer(rows: int, inputs: int, outputs: int) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    th.manual_seed(0)
    x = th.randn(rows, inputs, requires_grad=True)
    weight = (th.randn(outputs, inputs) / inputs**0.5).requires_grad_(True)
    bias = th.randn(outputs, requires_grad=True)
    return x, weight, bias


@needs_onednn
@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_large_float32_products_go_to_onednn_and_the_rest_to_torch():
    x, weight, _ = _layer(256, 256, 256)
    assert x.numel() * weight.shape[0] >= ONEDNN_MIN_WORK and uses_onednn(x, weight)
    assert not uses_onednn(x[:2], weight)  # one observation when acting: MKL's lower fixed cost wins
    assert not uses_onednn(x.double(), weight.double())
    with th.backends.mkldnn.flags(enabled=False):
        assert not uses_onednn(x, weight)


@needs_onednn
@pytest.mark.parametrize("activation", ["none", "relu", "swish", "tanh"])
@pytest.mark.parametrize("grad", [True, False])
def test_linear_matches_torch_with_its_gradients(activation, grad):
    """Same values and gradients as F.linear and the activation, to float32 rounding, with or without autograd."""
    x, weight, bias = _layer(300, 64, 128)
    assert uses_onednn(x, weight)
    expected = ACTIVATIONS[activation](F.linear(x, weight, bias))
    with th.set_grad_enabled(grad):
        output = linear(x, weight, bias, activation)
    assert th.allclose(output, expected, atol=1e-5)
    if not grad:
        assert output.grad_fn is None
        return
    upstream = th.randn_like(expected)
    expected_grads = th.autograd.grad(expected, (x, weight, bias), upstream)
    grads = th.autograd.grad(output, (x, weight, bias), upstream)
    for got, want in zip(grads, expected_grads, strict=True):
        assert th.allclose(got, want, atol=1e-4)


@needs_onednn
def test_linear_takes_weight_slices_and_batches_of_candidates():
    """A column slice of a weight (the critic's action columns) and a (batch, candidates, features) input."""
    th.manual_seed(0)
    weight = th.randn(256, 23)
    candidates = th.randn(300, 9, 6)
    assert uses_onednn(candidates, weight[:, 17:])
    assert th.allclose(linear(candidates, weight[:, 17:]), candidates @ weight[:, 17:].T, atol=1e-5)


def test_apply_mlp_computes_what_the_modules_compute():
    th.manual_seed(0)
    for activation_fn in [nn.ReLU, nn.SiLU, nn.Tanh, nn.ELU]:
        layers = nn.Sequential(nn.Linear(40, 256), activation_fn(), nn.Linear(256, 256), activation_fn(), nn.Linear(256, 3))
        x = th.randn(300, 40)
        assert th.allclose(apply_mlp(layers, x), layers(x), atol=1e-5)
    assert set(FUSED_ACTIVATIONS) == {nn.ReLU, nn.SiLU, nn.Tanh}


def _critic(
    n_critics: int = 2, share_features_extractor: bool = False, critic_class: type[ContinuousCritic] = ContinuousCritic
) -> ContinuousCritic:
    th.manual_seed(0)
    observation_space = spaces.Box(-1, 1, (17,))
    extractor = FlattenExtractor(observation_space)
    return critic_class(
        observation_space,
        spaces.Box(-1, 1, (6,)),
        net_arch=[256, 256],
        features_extractor=extractor,
        features_dim=extractor.features_dim,
        n_critics=n_critics,
        share_features_extractor=share_features_extractor,
    )


@pytest.mark.parametrize("n_critics", [1, 2, 3])
def test_q_values_are_the_critics_values_with_their_gradients(n_critics):
    critic = _critic(n_critics)
    observations, actions = th.randn(300, 17), (th.rand(300, 6) * 2 - 1).requires_grad_(True)
    expected = th.cat(critic(observations, actions), dim=1)
    values = q_values(critic, observations, actions)
    assert values.shape == (300, n_critics) and th.allclose(values, expected, atol=1e-5)
    (expected_grad,) = th.autograd.grad(expected.sum(), actions)
    (grad,) = th.autograd.grad(values.sum(), actions)
    assert th.allclose(grad, expected_grad, atol=1e-5)


def test_candidate_q_values_are_the_values_of_each_observation_and_candidate():
    critic = _critic()
    observations, candidates = th.randn(64, 17), th.rand(64, 9, 6) * 2 - 1
    values = candidate_q_values(critic, observations, candidates)
    expected = th.cat(critic(observations.repeat_interleave(9, dim=0), candidates.reshape(-1, 6)), dim=1)
    assert values.shape == (64, 9, 2) and th.allclose(values, expected.view(64, 9, 2), atol=1e-5)


class _DoubledCritic(ContinuousCritic):
    def forward(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        return tuple(2 * q for q in super().forward(obs, actions))


def test_a_critic_with_its_own_forward_is_called():
    """A subclass that changes forward is evaluated through it, not from its layers."""
    critic, doubled = _critic(), _critic(critic_class=_DoubledCritic)
    assert has_standard_layout(critic) and not has_standard_layout(doubled)
    observations, candidates = th.randn(8, 17), th.rand(8, 3, 6) * 2 - 1
    for values in (q_values, candidate_q_values):
        arguments = (observations, candidates[:, 0] if values is q_values else candidates)
        # The same weights through another path: equal up to the rounding of the fused layers
        assert th.allclose(values(doubled, *arguments), 2 * values(critic, *arguments), atol=1e-5)


def test_a_shared_features_extractor_gets_no_gradient_from_the_critic():
    """As in ContinuousCritic.forward: with share_features_extractor the actor's loss alone trains the extractor."""
    critic = _critic(share_features_extractor=True)
    critic.features_extractor = nn.Sequential(nn.Flatten(), nn.Linear(17, 17))  # an extractor with parameters
    critic.features_extractor.features_dim = 17  # type: ignore[assignment]
    q_values(critic, th.randn(4, 17), th.zeros(4, 6)).sum().backward()
    assert all(param.grad is None for param in critic.features_extractor.parameters())
    assert all(param.grad is not None for param in critic.q_networks[0].parameters())

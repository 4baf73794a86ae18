"""Networks for the diffusion actor: a learnable Fourier time embedding and the noise-prediction MLP."""

import math

import torch as th
from stable_baselines3.common.torch_layers import create_mlp
from torch import nn
from torch.nn import functional as F

from sb3_qsm.common.linear import apply_mlp, linear, skip_first


class FourierFeatures(nn.Module):
    """
    Learnable random Fourier features of a scalar input: ``[cos(2 pi x W^T), sin(2 pi x W^T)]``
    with ``W`` initialised from ``N(0, std^2)``, as in the QSM reference.

    :param output_dim: Number of features (half cosines, half sines); must be even
    :param std: Standard deviation of the initial frequencies
    """

    def __init__(self, output_dim: int, std: float = 0.2):
        super().__init__()
        if output_dim < 2 or output_dim % 2 != 0:
            raise ValueError(f"time_embed_dim must be an even integer >= 2, got {output_dim!r}")
        self.weight = nn.Parameter(th.randn(output_dim // 2, 1) * std)

    def forward(self, x: th.Tensor) -> th.Tensor:
        """
        :param x: Inputs of shape ``(n,)``
        :return: Features of shape ``(n, output_dim)``
        """
        freqs = 2 * math.pi * x.unsqueeze(-1) @ self.weight.T
        return th.cat([th.cos(freqs), th.sin(freqs)], dim=-1)


class Denoiser(nn.Module):
    """
    Noise-prediction network ``eps_theta(s, a_t, t)``: the time index goes through Fourier features and a
    small MLP (the "time code"), then ``[a_t, features(s), time code]`` goes through an MLP to ``action_dim``
    outputs. Linear layers use Xavier-uniform weights and zero biases, as in the QSM reference.

    The network does not know the number of diffusion steps: the actor that owns it asks for the time codes of
    ``0..T-1``.

    :param features_dim: Size of the observation features
    :param action_dim: Size of the action
    :param net_arch: Hidden layer sizes of the main MLP
    :param activation_fn: Activation used in both MLPs
    :param time_embed_dim: Number of Fourier features of the time index
    :param time_net_arch: Layer sizes of the time MLP; the last one is the size of the time code (no activation
        after it). An empty list feeds the Fourier features directly.
    :param action_fan_in_init: Initialise the first layer's weights on the noisy action by the action's own fan-in
        (uniform, variance ``1 / action_dim``) instead of Xavier over the whole input. Under Xavier the action is a
        few of ~130 inputs (the time code has 128), so it starts with small weights, and the network spends
        thousands of updates ignoring the action's fine structure before it learns the sharp denoising needed at
        low noise (not in the reference).
    """

    def __init__(
        self,
        features_dim: int,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module],
        time_embed_dim: int,
        time_net_arch: list[int],
        action_fan_in_init: bool,
    ):
        super().__init__()
        self.action_dim = action_dim
        self.features_dim = features_dim
        self.time_features = FourierFeatures(time_embed_dim)
        if time_net_arch:
            time_layers = create_mlp(time_embed_dim, time_net_arch[-1], time_net_arch[:-1], activation_fn)
            time_code_dim = time_net_arch[-1]
        else:
            time_layers, time_code_dim = [], time_embed_dim
        self.time_net = nn.Sequential(*time_layers)
        self.net = nn.Sequential(*create_mlp(action_dim + features_dim + time_code_dim, action_dim, net_arch, activation_fn))
        for module in [*self.time_net, *self.net]:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        if action_fan_in_init:
            first = self.net[0]
            assert isinstance(first, nn.Linear)
            bound = math.sqrt(3.0 / action_dim)  # uniform(-b, b) has variance b^2 / 3
            with th.no_grad():
                first.weight[:, :action_dim].uniform_(-bound, bound)

    def time_codes(self, n_diffusion_steps: int) -> th.Tensor:
        """
        The time code of every diffusion step, computed in one pass.

        :param n_diffusion_steps: Number of diffusion steps ``T``
        :return: Tensor of shape ``(T, time_code_dim)``; row ``t`` is the code of time index ``t``
        """
        steps = th.arange(n_diffusion_steps, dtype=th.float32, device=self.time_features.weight.device)
        return self.time_net(self.time_features(steps))

    def forward(
        self, features: th.Tensor, noisy_actions: th.Tensor, timesteps: th.Tensor, n_diffusion_steps: int
    ) -> th.Tensor:
        """
        The predicted noise ``net([a_t, features, code_t])``, one time index per sample. The first layer is applied
        by parts, ``W_a a_t + W_s features + (W_t code_t + b)``, the last term computed once per time index rather
        than once per sample.

        :param features: Observation features, shape ``(batch, features_dim)``
        :param noisy_actions: ``a_t``, shape ``(batch, action_dim)``
        :param timesteps: 0-based time indices, shape ``(batch,)``, integer
        :param n_diffusion_steps: Number of diffusion steps ``T``
        :return: Predicted noise, shape ``(batch, action_dim)``
        """
        w_actions, w_features, _ = self._first_layer_weights()
        # Each sample's row of the time part picked by a one-hot product rather than by indexing: the same values, but
        # a backward pass that is a matrix product. Indexing's backward (index_put_ with accumulate) adds the rows of a
        # batch with atomic adds across threads on the CPU, in an order that changes from run to run, so two seeded
        # runs in one process would differ in the last bits with more than one thread.
        time_part = self._time_part(n_diffusion_steps)
        one_hot = F.one_hot(timesteps, n_diffusion_steps).to(time_part.dtype)
        hidden = linear(noisy_actions, w_actions) + linear(features, w_features) + one_hot @ time_part
        return apply_mlp(skip_first(self.net), hidden)

    def condition(self, features: th.Tensor, n_diffusion_steps: int) -> th.Tensor:
        """
        The part of the first layer's pre-activation that does not depend on the noisy action, for every time index:
        ``W_s features + W_t code_t + b``. The sampler computes it once per call, so that each of its ``T`` steps
        only multiplies the (small) action by ``W_a``.

        :param features: Observation features, shape ``(batch, features_dim)``
        :param n_diffusion_steps: Number of diffusion steps ``T``
        :return: Tensor of shape ``(T, batch, hidden)``
        """
        _, w_features, _ = self._first_layer_weights()
        return linear(features, w_features).unsqueeze(0) + self._time_part(n_diffusion_steps).unsqueeze(1)

    def forward_conditioned(self, noisy_actions: th.Tensor, condition: th.Tensor) -> th.Tensor:
        """
        Same as ``forward`` given one time slice of ``condition(features, T)``.

        :param noisy_actions: ``a_t``, shape ``(batch, action_dim)``
        :param condition: ``condition(features, T)[t]``, shape ``(batch, hidden)``
        :return: Predicted noise, shape ``(batch, action_dim)``
        """
        w_actions, _, _ = self._first_layer_weights()
        # The action's product is small (a few columns): MKL's addmm, which adds the condition as it writes it
        hidden = th.addmm(condition, noisy_actions, w_actions.t())
        return apply_mlp(skip_first(self.net), hidden)

    def _time_part(self, n_diffusion_steps: int) -> th.Tensor:
        """:return: ``W_t code_t + b`` for every time index, shape ``(T, hidden)``"""
        _, _, w_time = self._first_layer_weights()
        return linear(self.time_codes(n_diffusion_steps), w_time, self._first_layer().bias)

    def _first_layer_weights(self) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """:return: The columns of the first layer's weight that multiply the action, the features and the time code"""
        weight = self._first_layer().weight
        features_end = self.action_dim + self.features_dim
        return weight[:, : self.action_dim], weight[:, self.action_dim : features_end], weight[:, features_end:]

    def _first_layer(self) -> nn.Linear:
        first = self.net[0]
        assert isinstance(first, nn.Linear)
        return first

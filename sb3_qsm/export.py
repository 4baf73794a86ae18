"""
Export a QSM policy for deployment: the whole sampler (the ``T``-step reverse chain, with the observation's
preprocessing before it and the scaling to the action space's bounds after it) as an ONNX model or a TorchScript
module that needs neither this package nor Stable-Baselines3 to run.

Two modules can be exported from one policy:

- ``deterministic=True``: the action of ``predict(deterministic=True)``, a function of the observation alone. With
  ``best_of_n = 1`` the noise-free chain; with ``best_of_n = n > 1`` the best of ``n`` chains by the critics, the
  chains' fixed noise (``DiffusionActorPolicy.fixed_noise``) and the critics built into the model.
- ``deterministic=False``: the sampler, with its standard normal noise as a second input ``noise`` of shape
  ``(batch, T, action_dim)`` (the chain's start ``x_T``, then the noise of each reverse step but the last), so that
  the caller owns the randomness: fed with ``numpy.random.default_rng().standard_normal``, it draws the actions of
  ``predict(deterministic=False)`` (for ``best_of_n = 1`` or ``selection_temperature = math.inf``).

Observation normalisation done outside the policy (``VecNormalize``) is not part of the export: apply its statistics
to the observations first, as for ``predict``.
"""

import importlib.util
import pathlib
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from sb3_qsm.common.checkpoint import atomic_file
from sb3_qsm.qsm.policies import DiffusionActorPolicy

# Names of the exported models' inputs and output
OBSERVATION = "observation"
NOISE = "noise"
ACTION = "action"


class ExportableSampler(nn.Module):
    """
    A QSM policy's action as a module of its inputs alone: ``forward(observation)`` (``deterministic=True``) or
    ``forward(observation, noise)`` (``deterministic=False``) returns actions in the action space's bounds, as
    ``predict`` does. It shares the policy's networks (a copy on the CPU is what ``export_onnx`` and
    ``export_torchscript`` trace).

    :param policy: The policy (``model.policy``)
    :param deterministic: Export ``predict(deterministic=True)``, or the sampler with its noise as an input
    :raises ValueError: for ``deterministic=False`` with ``best_of_n > 1`` and a finite ``selection_temperature``,
        whose choice among the samples draws random numbers of its own
    """

    low: th.Tensor
    high: th.Tensor
    chain_noise: th.Tensor

    def __init__(self, policy: DiffusionActorPolicy, deterministic: bool = True):
        super().__init__()
        if not isinstance(policy, DiffusionActorPolicy):
            raise TypeError(f"policy must be a DiffusionActorPolicy (model.policy of QSM), got {type(policy).__name__}")
        if not deterministic and not policy.acts_with_sampler:
            raise ValueError(
                f"Cannot export the stochastic policy with best_of_n={policy.best_of_n} and selection_temperature="
                f"{policy.selection_temperature!r}: its choice among the samples draws random numbers of its own. "
                "Export deterministic=True, or set policy.selection_temperature = math.inf (the sampler alone)."
            )
        self.policy = policy
        self.deterministic = deterministic
        self.best_of_n = policy.best_of_n if deterministic else 1
        space = policy.action_space
        assert isinstance(space, spaces.Box)
        self.register_buffer("low", th.as_tensor(space.low, dtype=th.float32))
        self.register_buffer("high", th.as_tensor(space.high, dtype=th.float32))
        if self.best_of_n > 1:
            self.register_buffer("chain_noise", policy.fixed_noise(self.best_of_n).detach().clone())

    def forward(self, observation: Any, noise: th.Tensor | None = None) -> th.Tensor:
        """
        :param observation: A batch of observations, as ``predict`` takes them (a tensor, or a dict of them)
        :param noise: With ``deterministic=False``: standard normal noise, shape ``(batch, T, action_dim)``
        :return: Actions in the action space's bounds, shape ``(batch, action_dim)``
        """
        if self.deterministic:
            if self.best_of_n > 1:
                actions = self.policy.best_sampled_actions(observation, self.best_of_n, noise=self.chain_noise)
            else:
                actions = self.policy.actor.sample(observation, deterministic=True)
        else:
            actions = self.policy.actor.sample(observation, deterministic=False, noise=noise)
        scaled = self.low + 0.5 * (actions + 1.0) * (self.high - self.low)
        return th.minimum(th.maximum(scaled, self.low), self.high)


def export_onnx(
    model: BaseAlgorithm | DiffusionActorPolicy, path: str | pathlib.Path, deterministic: bool = True
) -> pathlib.Path:
    """
    Write the policy's sampler (see the module's documentation) as an ONNX model, with a dynamic batch dimension.
    Its inputs are named ``observation`` (for a ``Dict`` observation space, one input per key, in the space's
    order, named by the key) and, with ``deterministic=False``, ``noise``; its output ``action``. Needs the
    ``export`` extra (``onnx``, ``onnxscript``; ``onnxruntime`` to run the model).

    :param model: A QSM model, or its policy
    :param path: The file to write (replaced only once complete)
    :param deterministic: Export ``predict(deterministic=True)``, or the sampler with its noise as an input
    :return: The path written
    """
    if importlib.util.find_spec("onnxscript") is None:
        raise ImportError("export_onnx needs PyTorch's ONNX exporter: pip install 'sb3-qsm[export]'")
    sampler, inputs = _traceable(model, deterministic)
    input_names = _input_names(sampler.policy.observation_space, deterministic)
    batch = th.export.Dim("batch", min=1)
    dynamic_shapes = _dynamic_shapes(inputs, batch)
    path = pathlib.Path(path)
    with th.no_grad():
        # Passed by name: a dict as the last positional input would be taken for the keyword arguments
        program = th.onnx.export(
            sampler,
            (),
            kwargs=dict(zip((OBSERVATION, NOISE), inputs, strict=False)),
            input_names=input_names,
            output_names=[ACTION],
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            verbose=False,
        )
    assert program is not None
    with atomic_file(path) as file:
        file.write(program.model_proto.SerializeToString())
    return path


def export_torchscript(
    model: BaseAlgorithm | DiffusionActorPolicy, path: str | pathlib.Path, deterministic: bool = True
) -> pathlib.Path:
    """
    Write the policy's sampler (see the module's documentation) as a traced TorchScript module, which
    ``torch.jit.load`` runs without this package: ``module(observation)`` or ``module(observation, noise)``, any
    batch size (for a ``Dict`` observation space, the observation is a dict of tensors).

    :param model: A QSM model, or its policy
    :param path: The file to write (replaced only once complete)
    :param deterministic: Export ``predict(deterministic=True)``, or the sampler with its noise as an input
    :return: The path written
    """
    sampler, inputs = _traceable(model, deterministic)
    with th.no_grad():
        traced = th.jit.trace(sampler, inputs, check_trace=False, strict=False)
    path = pathlib.Path(path)
    with atomic_file(path) as file:
        th.jit.save(traced, file)
    return path


def _traceable(model: BaseAlgorithm | DiffusionActorPolicy, deterministic: bool) -> tuple[ExportableSampler, tuple[Any, ...]]:
    """
    :return: An ``ExportableSampler`` of a CPU copy of the policy, in evaluation mode, and example inputs for it
        (a batch of two)
    """
    policy = model.policy if isinstance(model, BaseAlgorithm) else model
    if not isinstance(policy, DiffusionActorPolicy):
        raise TypeError(f"model must be a QSM model or a DiffusionActorPolicy, got {type(model).__name__}")
    copy = type(policy)(**policy._get_constructor_parameters())
    copy.load_state_dict(policy.state_dict())
    copy.set_training_mode(False)
    copy.requires_grad_(False)
    sampler = ExportableSampler(copy, deterministic).eval()
    observation = _example_observation(copy.observation_space)
    if deterministic:
        return sampler, (observation,)
    noise = th.zeros(2, copy.actor.n_diffusion_steps, copy.actor.action_dim)
    return sampler, (observation, noise)


def _example_observation(space: spaces.Space) -> Any:
    """:return: Two observations of the space as a batch of tensors (a dict of them for a ``Dict`` space)"""
    if isinstance(space, spaces.Dict):
        return {key: _example_observation(subspace) for key, subspace in space.spaces.items()}
    if isinstance(space, spaces.Box):
        return th.as_tensor(np.stack([space.sample(), space.sample()]))
    raise ValueError(f"Cannot export a policy for the observation space {space}: only Box and Dict observations are supported")


def _input_names(space: spaces.Space, deterministic: bool) -> list[str]:
    observation = list(space.spaces) if isinstance(space, spaces.Dict) else [OBSERVATION]
    return observation if deterministic else [*observation, NOISE]


def _dynamic_shapes(inputs: tuple[Any, ...], batch: Any) -> dict[str, Any]:
    """:return: The first dimension of every input tensor is the batch, by the name of ``forward``'s arguments"""

    def of(value: Any) -> Any:
        return {key: of(item) for key, item in value.items()} if isinstance(value, dict) else {0: batch}

    return dict(zip((OBSERVATION, NOISE), (of(value) for value in inputs), strict=False))

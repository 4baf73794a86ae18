"""Export of the sampler to ONNX and TorchScript: the exported models act as predict does, without this package."""

import math
import pathlib
import re
import textwrap

import gymnasium as gym
import numpy as np
import onnxruntime
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC

from sb3_qsm import QSM
from sb3_qsm.export import ExportableSampler, export_onnx, export_torchscript


class DictEnv(gym.Env):
    """One-step env with a Dict observation (keys not in sorted order) and an asymmetric action box."""

    observation_space = spaces.Dict({"b": spaces.Box(-1, 1, (2,)), "a": spaces.Box(-1, 1, (3,))})
    action_space = spaces.Box(np.array([-2, 0], np.float32), np.array([2, 1], np.float32))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


@pytest.fixture(scope="module")
def pendulum_model():
    """A QSM model trained a little on Pendulum (action box [-2, 2]), so that its actions are not all clipped."""
    model = QSM(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        learning_starts=50,
        batch_size=32,
        n_diffusion_steps=4,
        policy_kwargs=dict(net_arch=[32, 32]),
    )
    model.learn(150)
    return model


def run_onnx(path, inputs):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


def observations(n):
    return np.random.default_rng(n).uniform(-1, 1, (n, 3)).astype(np.float32)


@pytest.mark.parametrize("best_of_n", [1, 4])
def test_deterministic_export_acts_as_predict(pendulum_model, tmp_path, best_of_n):
    """ONNX and TorchScript exports of predict(deterministic=True), the noise-free chain or the best of n chains by
    the critics: the same actions as predict to float tolerance, for batch sizes other than the traced one."""
    policy = pendulum_model.policy
    policy.best_of_n = best_of_n
    try:
        onnx_path = export_onnx(pendulum_model, tmp_path / "model" / "policy.onnx")
        scripted = th.jit.load(str(export_torchscript(pendulum_model, tmp_path / "policy.pt")))
        for n in (1, 5):
            obs = observations(n)
            expected, _ = pendulum_model.predict(obs, deterministic=True)
            assert np.abs(expected).max() <= 2.0
            assert np.allclose(run_onnx(onnx_path, {"observation": obs}), expected, atol=1e-5)
            assert np.allclose(scripted(th.as_tensor(obs)).numpy(), expected, atol=1e-5)
    finally:
        policy.best_of_n = 1


def test_stochastic_export_takes_the_noise_as_an_input(pendulum_model, tmp_path):
    """The stochastic export is the sampler with its noise as an input: fed the standard normal values that
    predict(deterministic=False) draws (x_T, then one per reverse step but the last), it returns predict's actions;
    its input shapes are named."""
    policy = pendulum_model.policy
    onnx_path = export_onnx(pendulum_model, tmp_path / "sampler.onnx", deterministic=False)
    scripted = th.jit.load(str(export_torchscript(pendulum_model, tmp_path / "sampler.pt", deterministic=False)))
    obs = observations(6)
    n_steps = policy.actor.n_diffusion_steps
    th.manual_seed(7)
    expected, _ = pendulum_model.predict(obs, deterministic=False)
    th.manual_seed(7)
    noise = th.stack([th.randn(6, 1) for _ in range(n_steps)], dim=1)
    assert np.allclose(run_onnx(onnx_path, {"observation": obs, "noise": noise.numpy()}), expected, atol=1e-5)
    assert np.allclose(scripted(th.as_tensor(obs), noise).numpy(), expected, atol=1e-5)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        ("observation", ["batch", 3]),
        ("noise", ["batch", n_steps, 1]),
    ]


def test_dict_observations_export_one_input_per_key(tmp_path):
    """A Dict observation space: one ONNX input per key, named by it; the best of n and the asymmetric bounds as
    predict has them; TorchScript takes the dict itself."""
    model = QSM("MultiInputPolicy", DictEnv(), seed=0, batch_size=8, policy_kwargs=dict(net_arch=[16], best_of_n=3))
    rng = np.random.default_rng(0)
    obs = {"b": rng.uniform(-1, 1, (4, 2)).astype(np.float32), "a": rng.uniform(-1, 1, (4, 3)).astype(np.float32)}
    expected, _ = model.predict(obs, deterministic=True)
    onnx_path = export_onnx(model, tmp_path / "dict.onnx")
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert sorted(i.name for i in session.get_inputs()) == ["a", "b"]
    assert np.allclose(session.run(None, obs)[0], expected, atol=1e-5)
    scripted = th.jit.load(str(export_torchscript(model.policy, tmp_path / "dict.pt")))
    assert np.allclose(scripted({key: th.as_tensor(value) for key, value in obs.items()}).numpy(), expected, atol=1e-5)


def test_export_refuses_what_it_cannot_reproduce(pendulum_model, tmp_path):
    """Clear errors before anything is written: a stochastic best of n that draws its own choice, a model that is
    not QSM's; the policy itself is left as it was."""
    policy = pendulum_model.policy
    policy.best_of_n, policy.selection_temperature = 4, 0.5
    try:
        with pytest.raises(ValueError, match=r"best_of_n=4 and selection_temperature=0\.5"):
            export_onnx(pendulum_model, tmp_path / "x.onnx", deterministic=False)
        policy.selection_temperature = math.inf
        ExportableSampler(policy, deterministic=False)  # the sampler alone: exportable
    finally:
        policy.best_of_n, policy.selection_temperature = 1, 0.0
    with pytest.raises(TypeError, match="SAC"):
        export_torchscript(SAC("MlpPolicy", "Pendulum-v1"), tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())


def test_export_guide_runs_as_written(tmp_path, monkeypatch):
    """The export guide's Python blocks, run in order in one namespace, as a reader would."""
    guide = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide" / "export.md"
    blocks = [
        textwrap.dedent(code)
        for _, code in re.findall(r"^( *)```python\n(.*?)^\1```", guide.read_text(), flags=re.DOTALL | re.MULTILINE)
    ]
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(guide), "exec"), namespace)
    assert namespace["actions"].shape == (4, 1)

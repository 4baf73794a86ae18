"""QSM(compile=True): the compiled training step computes the eager update, and the argument is checked and not saved."""

import copy
import pathlib

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.logger import configure

from sb3_qsm import QSM
from sb3_qsm.common import compilation


def _pair(small_kwargs: dict, device: str = "cpu", **kwargs) -> tuple[QSM, QSM]:
    """An eager model with a filled replay buffer, and a compiled model with the same weights, optimizer states and
    replay buffer. They train with plain SGD: Adam divides each gradient by its running size, which turns the float
    rounding of a near-zero gradient into a step of the full learning rate, while SGD keeps a difference in the
    update proportional to a difference in the gradient."""
    small_kwargs["policy_kwargs"]["optimizer_class"] = th.optim.SGD
    kwargs.setdefault("learning_rate", 0.05)
    eager = QSM("MlpPolicy", "Pendulum-v1", seed=0, device=device, **small_kwargs, **kwargs)
    eager.learn(small_kwargs["learning_starts"] + 20)
    compiled = QSM("MlpPolicy", "Pendulum-v1", seed=0, device=device, compile=True, **small_kwargs, **kwargs)
    compiled.set_parameters(eager.get_parameters(), exact_match=True)
    compiled.replay_buffer = copy.deepcopy(eager.replay_buffer)
    compiled._n_updates = eager._n_updates
    compiled.set_logger(configure(None, []))
    return eager, compiled


def _assert_same_update(eager: QSM, compiled: QSM, gradient_steps: int) -> None:
    logged = []
    for model in (eager, compiled):
        th.manual_seed(1)
        np.random.seed(1)  # the replay buffer samples with numpy
        model.train(gradient_steps=gradient_steps, batch_size=model.batch_size)
        logged.append({key: model.logger.name_to_value[key] for key in ("train/critic_loss", "train/actor_loss")})
    expected_parameters, parameters = eager.policy.state_dict(), compiled.policy.state_dict()
    for name, expected in expected_parameters.items():
        assert th.allclose(parameters[name], expected, atol=1e-5), name
    assert logged[1] == pytest.approx(logged[0], rel=1e-4)


@pytest.mark.parametrize("score_target", ["posterior", "gradient"])
def test_compiled_step_computes_the_eager_update(small_kwargs, score_target):
    """Same weights after the same gradient steps, to float rounding: the compiled losses draw the same random numbers
    (PyTorch's generator) in the same order, and the sampler of the critic target is the same chain."""
    eager, compiled = _pair(small_kwargs, score_target=score_target)
    _assert_same_update(eager, compiled, gradient_steps=3)
    eager.observation_space.seed(0)
    obs = th.as_tensor(eager.observation_space.sample()[None])
    with th.no_grad():
        # The weights agree to 1e-5 (above), and the chain carries that difference to the action: an absolute
        # tolerance, since a relative one fails by chance wherever the action is near zero
        expected = eager.actor.sample(obs, deterministic=True)
        assert th.allclose(compiled.actor.sample(obs, deterministic=True), expected, rtol=0.0, atol=1e-3)
    assert compiled.actor._compiled_sample is not None and eager.actor._compiled_sample is None


@pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_step_on_cuda_computes_the_eager_update(small_kwargs):
    """On CUDA the compiled functions run as CUDA graphs (replayed from the second step on): still the eager update."""
    eager, compiled = _pair(small_kwargs, device="cuda")
    _assert_same_update(eager, compiled, gradient_steps=5)
    action, _ = compiled.predict(compiled.observation_space.sample(), deterministic=True)
    expected, _ = eager.predict(compiled.observation_space.sample(), deterministic=True)
    assert action.shape == expected.shape


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(compile="yes"), "compile must be True or False, got 'yes'"),
        (dict(compile=1), "compile must be True or False, got 1"),
        (dict(compile=True, compile_kwargs=dict(fast=True)), r"compile_kwargs has \['fast'\], which torch.compile"),
        (dict(compile=True, compile_kwargs="max-autotune"), "compile_kwargs must be a dict"),
        (dict(compile_kwargs=dict(mode="max-autotune")), "compile_kwargs=.* is given but compile=False"),
    ],
)
def test_bad_compile_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QSM("MlpPolicy", "Pendulum-v1", **kwargs)


def test_a_platform_that_cannot_compile_is_named_before_any_work(monkeypatch):
    from torch._inductor import cpp_builder

    def no_compiler() -> str:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    with pytest.raises(ValueError, match=r"compile=True: torch.compile's inductor backend needs a C\+\+ compiler"):
        QSM("MlpPolicy", "Pendulum-v1", compile=True)
    monkeypatch.setattr(th._dynamo, "is_dynamo_supported", lambda: False)
    with pytest.raises(ValueError, match=r"compile=True: torch.compile does not run on this Python"):
        QSM("MlpPolicy", "Pendulum-v1", compile=True)
    # Another backend needs no C++ compiler, and without compile nothing is checked
    QSM("MlpPolicy", "Pendulum-v1")


def test_compile_options_per_device():
    cpu, cuda = th.device("cpu"), th.device("cuda")
    assert compilation.compile_options(cpu, None) == {"options": {"fallback_random": True}}
    assert compilation.compile_options(cuda, None) == {"options": {"fallback_random": True, "triton.cudagraphs": True}}
    # The user's options come on top; a mode is passed as it is (torch.compile takes no options beside a mode)
    assert compilation.compile_options(cpu, {"options": {"fallback_random": False}}) == {"options": {"fallback_random": False}}
    assert compilation.compile_options(cuda, {"mode": "max-autotune"}) == {"mode": "max-autotune"}


def test_compile_is_not_saved(small_kwargs, tmp_path: pathlib.Path):
    """Like device, compile says how to run a model: a loaded model runs eagerly unless load is told otherwise."""
    model = QSM("MlpPolicy", "Pendulum-v1", compile=True, compile_kwargs=dict(dynamic=False), **small_kwargs)
    model.save(tmp_path / "model.zip")
    loaded = QSM.load(tmp_path / "model.zip", buffer_size=1)
    assert loaded.compile is False and loaded.compile_kwargs is None and loaded.actor._compiled_sample is None
    recompiled = QSM.load(tmp_path / "model.zip", buffer_size=1, compile=True)
    assert recompiled.compile is True and recompiled.actor._compiled_sample is not None
    with pytest.raises(ValueError, match="compile must be True or False"):
        QSM.load(tmp_path / "model.zip", compile="yes")


def test_a_compiled_actor_copies_and_pickles_as_an_eager_one(small_kwargs):
    """The compiled sampler belongs to the actor it was compiled for: copies sample eagerly, with the same weights."""
    import pickle

    model = QSM("MlpPolicy", "Pendulum-v1", compile=True, **small_kwargs)
    for copied in (copy.deepcopy(model.actor), pickle.loads(pickle.dumps(model.actor))):
        assert copied._compiled_sample is None and model.actor._compiled_sample is not None
        obs = th.zeros(2, 3)
        with th.no_grad():
            assert th.equal(copied.sample(obs, deterministic=True), model.actor._sample(obs, deterministic=True))

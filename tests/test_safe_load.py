"""
Loading runs no code from the file: crafted checkpoints carry a pickled payload that creates a marker file when it is
unpickled, placed in every entry a loading entry point reads; the safe path refuses (or ignores) it and the marker
never appears. The payload is live: the trusting path (``safe=False``, SB3's own unpickling) runs it.
"""

import base64
import gzip
import json
import pathlib
import pickle
import zipfile
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.utils import FloatSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_qsm import QSM, add_safe_globals
from sb3_qsm.common import safe_pickle
from sb3_qsm.convert import convert_to_qsm, load_critic_from_checkpoint
from sb3_qsm.qsm.actor import DiffusionActor
from sb3_qsm.qsm.policies import DiffusionActorPolicy
from sb3_qsm.zoo import PredictOnlyQSM
from sb3_qsm.zoo.__main__ import load_statistics_safely

# Entries of a model's ``data`` that SB3 pickles, and that a load reads
PICKLED_ENTRIES = ("policy_class", "observation_space", "action_space", "policy_kwargs", "learning_rate", "train_freq")


class Payload:
    """Unpickles into ``exec`` of code that creates ``marker``: what a malicious checkpoint would run."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def _serialized(marker: pathlib.Path) -> dict[str, str]:
    return {":type:": "<class 'object'>", ":serialized:": base64.b64encode(cloudpickle.dumps(Payload(marker))).decode()}


def _with_entry(source: pathlib.Path, target: pathlib.Path, key: str, value: Any) -> pathlib.Path:
    """Copy an SB3 archive, with one entry of its ``data`` replaced."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as crafted:
        for item in original.infolist():
            content = original.read(item.filename)
            if item.filename == "data":
                data = json.loads(content)
                data[key] = value
                content = json.dumps(data).encode()
            crafted.writestr(item, content)
    return target


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, pathlib.Path]:
    """A trained QSM model, its replay buffer, policy and actor, and a SAC model, saved."""
    folder = tmp_path_factory.mktemp("saved")
    small = dict(learning_starts=100, batch_size=32, buffer_size=2_000, n_diffusion_steps=3)
    model = QSM("MlpPolicy", "Pendulum-v1", seed=0, policy_kwargs=dict(net_arch=[16]), **small)
    model.learn(110)
    model.save(folder / "qsm.zip")
    model.save_replay_buffer(folder / "buffer.pkl")
    model.policy.save(folder / "policy.pth")
    model.actor.save(folder / "actor.pth")
    SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16]), seed=0).save(folder / "sac.zip")
    return {path.stem: path for path in folder.iterdir()}


def test_payload_is_live(saved, tmp_path):
    marker = tmp_path / "ran"
    crafted = _with_entry(saved["qsm"], tmp_path / "crafted.zip", "action_noise", _serialized(marker))
    QSM.load(crafted, safe=False)
    assert marker.exists(), "the crafted payload should run when the file is trusted"


@pytest.mark.parametrize("entry", PICKLED_ENTRIES)
@pytest.mark.parametrize("load", [QSM.load, PredictOnlyQSM.load], ids=["QSM.load", "zoo enjoy"])
def test_model_load_runs_no_payload(saved, tmp_path, entry, load):
    marker = tmp_path / "ran"
    crafted = _with_entry(saved["qsm"], tmp_path / "crafted.zip", entry, _serialized(marker))
    with pytest.raises(ValueError, match=f"entry '{entry}' refers to builtins.exec"):
        load(crafted)
    assert not marker.exists()


def test_rebuilt_schedule_is_never_unpickled(saved, tmp_path):
    marker = tmp_path / "ran"
    crafted = _with_entry(saved["qsm"], tmp_path / "crafted.zip", "lr_schedule", _serialized(marker))
    for safe in (True, False):
        model = QSM.load(crafted, safe=safe)
        assert isinstance(model.lr_schedule, FloatSchedule)
        assert not marker.exists()


def test_foreign_model_is_refused_before_any_unpickling(saved, tmp_path):
    marker = tmp_path / "ran"
    crafted = _with_entry(saved["sac"], tmp_path / "crafted.zip", "action_noise", _serialized(marker))
    for safe in (True, False):
        with pytest.raises(ValueError, match="not a DiffusionActorPolicy"):
            QSM.load(crafted, safe=safe)
        assert not marker.exists()


def test_weights_file_payload_is_refused(saved, tmp_path):
    marker = tmp_path / "ran"
    crafted = tmp_path / "crafted.zip"
    with zipfile.ZipFile(saved["qsm"]) as original, zipfile.ZipFile(crafted, "w") as target:
        for item in original.infolist():
            content = original.read(item.filename)
            if item.filename == "policy.pth":
                payload = tmp_path / "payload.pth"
                th.save({"weights": Payload(marker)}, payload)
                content = payload.read_bytes()
            target.writestr(item, content)
    with pytest.raises(pickle.UnpicklingError):
        QSM.load(crafted)
    assert not marker.exists()


@pytest.mark.parametrize("entry", ["policy_class", "policy_kwargs", "action_noise"])
def test_conversion_runs_no_payload(saved, tmp_path, entry):
    marker = tmp_path / "ran"
    crafted = _with_entry(saved["sac"], tmp_path / "crafted.zip", entry, _serialized(marker))
    with pytest.raises(ValueError):
        convert_to_qsm(crafted, "Pendulum-v1", n_collect_steps=10, distill_steps=1)
    assert not marker.exists()


def test_warm_start_runs_no_payload(saved, tmp_path, small_kwargs):
    marker = tmp_path / "ran"
    crafted = _with_entry(saved["sac"], tmp_path / "crafted.zip", "policy_kwargs", _serialized(marker))
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    with pytest.raises(ValueError, match=r"entry 'policy_kwargs' refers to builtins\.exec"):
        load_critic_from_checkpoint(model, crafted)
    assert not marker.exists()


def test_replay_buffer_runs_no_payload(saved, tmp_path, small_kwargs):
    marker = tmp_path / "ran"
    crafted = tmp_path / "buffer.pkl"
    crafted.write_bytes(pickle.dumps(Payload(marker)))
    model = QSM.load(saved["qsm"])
    with pytest.raises(ValueError, match=r"refers to builtins\.exec"):
        model.load_replay_buffer(crafted)
    with pytest.raises(ValueError, match=r"refers to builtins\.exec"):
        convert_to_qsm(saved["sac"], "Pendulum-v1", n_collect_steps=10, distill_steps=1, replay_buffer=crafted, **small_kwargs)
    assert not marker.exists()


def test_replay_buffer_loads_safely(saved):
    model = QSM.load(saved["qsm"], env=gym.make("Pendulum-v1"))
    model.load_replay_buffer(saved["buffer"])
    assert model.replay_buffer is not None and model.replay_buffer.size() == 110
    model.learn(5)


def test_gzip_replay_buffer_loads_safely(saved, tmp_path):
    """A gzip-compressed buffer (as the benchmark runner keeps them) loads as the plain one does"""
    compressed = tmp_path / "replay_buffer.pkl.gz"
    compressed.write_bytes(gzip.compress(saved["buffer"].read_bytes()))
    model = QSM.load(saved["qsm"], env=gym.make("Pendulum-v1"))
    model.load_replay_buffer(compressed)
    assert model.replay_buffer is not None and model.replay_buffer.size() == 110


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_replay_buffer_is_named(saved, tmp_path, compress):
    data = gzip.compress(saved["buffer"].read_bytes()) if compress else saved["buffer"].read_bytes()
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(data[: len(data) // 2])
    model = QSM.load(saved["qsm"])
    with pytest.raises(ValueError, match=f"replay buffer {truncated}: the file is truncated or corrupt"):
        model.load_replay_buffer(truncated)


@pytest.mark.parametrize("cls, name", [(DiffusionActorPolicy, "policy"), (DiffusionActor, "actor")])
def test_policy_load_runs_no_payload(saved, tmp_path, cls, name):
    loaded = cls.load(saved[name])
    observation = np.zeros((1, 3), dtype=np.float32)
    assert loaded.predict(observation, deterministic=True)[0].shape == (1, 1)
    marker = tmp_path / "ran"
    stored = th.load(saved[name], weights_only=False)
    stored["data"]["normalize_images"] = Payload(marker)
    th.save(stored, tmp_path / "crafted.pth")
    with pytest.raises(ValueError, match=r"Cannot load the policy .* safely"):
        cls.load(tmp_path / "crafted.pth")
    assert not marker.exists()


class OwnExtractor(FlattenExtractor):
    """A features extractor of the user's own."""


def test_own_classes_are_allowed_explicitly(tmp_path, small_kwargs, monkeypatch):
    monkeypatch.setattr(safe_pickle, "_user_globals", {})
    small_kwargs["policy_kwargs"]["features_extractor_class"] = OwnExtractor
    QSM("MlpPolicy", "Pendulum-v1", **small_kwargs).save(tmp_path / "own.zip")
    with pytest.raises(ValueError, match=f"entry 'policy_kwargs' refers to {OwnExtractor.__module__}.OwnExtractor"):
        QSM.load(tmp_path / "own.zip")
    assert QSM.load(tmp_path / "own.zip", safe=False).policy_kwargs["features_extractor_class"] is OwnExtractor
    add_safe_globals([OwnExtractor])
    assert QSM.load(tmp_path / "own.zip").policy_kwargs["features_extractor_class"] is OwnExtractor


def test_vec_normalize_statistics_load_safely(tmp_path, monkeypatch):
    venv = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    VecNormalize(venv).save(str(tmp_path / "vecnormalize.pkl"))
    monkeypatch.setattr(VecNormalize, "load", VecNormalize.load)  # restored after the test
    load_statistics_safely()  # what the zoo's enjoy does
    assert isinstance(VecNormalize.load(str(tmp_path / "vecnormalize.pkl"), venv), VecNormalize)
    marker = tmp_path / "ran"
    (tmp_path / "crafted.pkl").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match=r"VecNormalize statistics .* refers to builtins\.exec"):
        VecNormalize.load(str(tmp_path / "crafted.pkl"), venv)
    assert not marker.exists()

"""Each diffusion setting has one owner, the actor: the algorithm reads it there, save keeps it, load applies or
refuses a change, and every level that takes a default takes the same one."""

import inspect
import json
import zipfile

import numpy as np
import pytest
import torch as th

from sb3_qsm import QSM
from sb3_qsm.common.diffusion import DiffusionSchedule
from sb3_qsm.common.torch_layers import Denoiser
from sb3_qsm.qsm.actor import DiffusionActor
from sb3_qsm.qsm.policies import DiffusionActorPolicy

OBS = np.random.default_rng(0).uniform(-1, 1, size=(64, 3)).astype(np.float32)


def _stochastic_actions(model: QSM, seed: int = 7) -> np.ndarray:
    th.manual_seed(seed)
    return model.predict(OBS, deterministic=False)[0]


def test_the_algorithm_reads_and_writes_the_actors_settings(small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", sampler_temperature=0.5, **small_kwargs)
    assert (model.n_diffusion_steps, model.beta_schedule, model.sampler_temperature) == (3, "cosine", 0.5)
    model.actor.sampler_temperature = 0.1
    assert model.sampler_temperature == 0.1
    model.sampler_temperature = 0.3
    assert model.actor.sampler_temperature == 0.3
    with pytest.raises(ValueError, match=r"sampler_temperature must be a finite number >= 0, got -1\.0"):
        model.sampler_temperature = -1.0
    assert model.actor.sampler_temperature == 0.3
    assert model.sampler == model.actor.sampler == "posterior"
    with pytest.raises(ValueError, match=r"sampler must be one of .* got 'ddpm'"):
        model.sampler = "ddpm"
    assert model.actor.sampler == "posterior"
    # The settings the denoiser was trained for cannot be changed on a built model
    for name, value in (("n_diffusion_steps", 5), ("beta_schedule", "vp")):
        with pytest.raises(AttributeError):
            setattr(model, name, value)
        with pytest.raises(AttributeError):
            setattr(model.actor, name, value)
    assert model.actor.schedule.n_diffusion_steps == 3


@pytest.mark.parametrize("through", ["actor", "algorithm"])
def test_a_sampler_setting_changed_after_construction_survives_save_and_load(tmp_path, small_kwargs, through):
    model = QSM("MlpPolicy", "Pendulum-v1", seed=0, **small_kwargs)
    owner = model.actor if through == "actor" else model
    owner.sampler_temperature = 0.2
    owner.sampler = "reference"
    model.actor.clip_sampler = False
    expected = _stochastic_actions(model)
    model.save(tmp_path / "qsm")
    loaded = QSM.load(tmp_path / "qsm")
    assert (loaded.actor.sampler_temperature, loaded.sampler, loaded.actor.clip_sampler) == (0.2, "reference", False)
    np.testing.assert_array_equal(_stochastic_actions(loaded), expected)
    # Back to the built-with values: saved again as such
    model.actor.sampler_temperature, model.actor.clip_sampler = 1.0, True
    model.save(tmp_path / "qsm")
    assert (QSM.load(tmp_path / "qsm").sampler_temperature, QSM.load(tmp_path / "qsm").actor.clip_sampler) == (1.0, True)


def test_unchanged_settings_leave_policy_kwargs_as_given(tmp_path, small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", **small_kwargs)
    before = dict(model.policy_kwargs)
    model.save(tmp_path / "qsm")
    assert model.policy_kwargs == before == QSM.load(tmp_path / "qsm").policy_kwargs


def test_load_applies_a_new_sampler_temperature(tmp_path, small_kwargs):
    model = QSM("MlpPolicy", "Pendulum-v1", seed=0, **small_kwargs)
    model.save(tmp_path / "qsm")
    loaded = QSM.load(tmp_path / "qsm", sampler_temperature=0.1)
    assert loaded.actor.sampler_temperature == 0.1 == loaded.sampler_temperature
    assert loaded.policy_kwargs["sampler_temperature"] == 0.1
    model.sampler_temperature = 0.1
    np.testing.assert_array_equal(_stochastic_actions(loaded), _stochastic_actions(model))
    with pytest.raises(ValueError, match="sampler_temperature must be a finite number >= 0, got nan"):
        QSM.load(tmp_path / "qsm", sampler_temperature=float("nan"))


def test_load_refuses_to_change_what_the_denoiser_was_trained_for(tmp_path, small_kwargs):
    QSM("MlpPolicy", "Pendulum-v1", **small_kwargs).save(tmp_path / "qsm")
    with pytest.raises(ValueError, match=r"with n_diffusion_steps=5: its denoiser was trained with n_diffusion_steps=3"):
        QSM.load(tmp_path / "qsm", n_diffusion_steps=5)
    with pytest.raises(ValueError, match=r"with beta_schedule='vp': its denoiser was trained with beta_schedule='cosine'"):
        QSM.load(tmp_path / "qsm", beta_schedule="vp")
    # The saved values themselves are accepted
    loaded = QSM.load(tmp_path / "qsm", n_diffusion_steps=3, beta_schedule="cosine")
    assert (loaded.n_diffusion_steps, loaded.beta_schedule) == (3, "cosine")


def test_archive_with_top_level_diffusion_settings_loads_and_resaves_without_them(tmp_path, small_kwargs):
    """Archives of sb3-qsm 0.1 also stored the diffusion settings as attributes of the algorithm."""
    QSM("MlpPolicy", "Pendulum-v1", sampler_temperature=0.5, **small_kwargs).save(tmp_path / "today")
    with zipfile.ZipFile(tmp_path / "today.zip") as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(entries["data"])
    assert not {"n_diffusion_steps", "beta_schedule", "sampler_temperature"} & set(data)
    data.update(n_diffusion_steps=3, beta_schedule="cosine", sampler_temperature=0.5)
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(tmp_path / "older.zip", "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    loaded = QSM.load(tmp_path / "older")
    assert (loaded.n_diffusion_steps, loaded.sampler_temperature) == (3, 0.5)
    loaded.save(tmp_path / "again")
    with zipfile.ZipFile(tmp_path / "again.zip") as archive:
        assert "sampler_temperature" not in json.loads(archive.read("data"))


def _defaults(function) -> dict:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def test_every_level_agrees_on_every_default():
    """The algorithm and the policy, the two levels a user builds, take the same defaults for the settings they
    share; the levels below them take no default for a setting they are given."""
    algorithm, policy = _defaults(QSM.__init__), _defaults(DiffusionActorPolicy.__init__)
    shared = set(algorithm) & set(policy)
    assert {"n_diffusion_steps", "beta_schedule", "sampler_temperature"} <= shared
    assert {name: algorithm[name] for name in shared} == {name: policy[name] for name in shared}
    settings = set(inspect.signature(DiffusionActorPolicy.__init__).parameters) | {"activation_fn"}
    for lower in (DiffusionActor.__init__, Denoiser.__init__, DiffusionSchedule.__init__):
        assert not (set(_defaults(lower)) & settings) - {"normalize_images"}, lower.__qualname__
    # normalize_images is SB3's, with SB3's default at both levels
    assert _defaults(DiffusionActor.__init__)["normalize_images"] is policy["normalize_images"] is True

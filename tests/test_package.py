"""The package: version, typing marker, public names and policy aliases."""

import importlib.resources

import sb3_qsm
from sb3_qsm import QSM
from sb3_qsm.qsm import CnnPolicy, DiffusionActorPolicy, MlpPolicy, MultiInputPolicy
from sb3_qsm.qsm.policies import QSMPolicy


def test_version_and_typing_marker():
    version = (importlib.resources.files("sb3_qsm") / "version.txt").read_text().strip()
    assert sb3_qsm.__version__ == version
    assert all(part.isdigit() for part in version.split("."))
    assert (importlib.resources.files("sb3_qsm") / "py.typed").is_file()


def test_policy_aliases():
    assert QSM.policy_aliases == {"MlpPolicy": MlpPolicy, "CnnPolicy": CnnPolicy, "MultiInputPolicy": MultiInputPolicy}
    assert MlpPolicy is DiffusionActorPolicy and sb3_qsm.DiffusionActorPolicy is DiffusionActorPolicy
    assert issubclass(CnnPolicy, DiffusionActorPolicy) and issubclass(MultiInputPolicy, DiffusionActorPolicy)
    # The former name stays an alias, so that archives naming it load
    assert QSMPolicy is DiffusionActorPolicy


def test_constructor_without_env_for_loading():
    """BaseAlgorithm.load builds the model with env=None and _init_setup_model=False."""
    model = QSM("MlpPolicy", None, device="cpu", _init_setup_model=False)
    assert model.policy_kwargs["n_diffusion_steps"] == 10
    assert not hasattr(model, "actor")


def test_import_paths_of_version_0_1_keep_working():
    """Modules that moved out of sb3_qsm.common still import by their former paths, in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import sb3_qsm.common.convert as convert, sb3_qsm.common.warm_start as warm_start\n"
        "from sb3_qsm.common.inspection import sample_actions\n"
        "from sb3_qsm.common.convert import convert_to_qsm, load_sb3_agent\n"
        "from sb3_qsm.common.warm_start import load_critic_from_checkpoint\n"
        "import sb3_qsm, sb3_qsm.convert, sb3_qsm.inspection\n"
        "assert convert is sb3_qsm.convert.convert and warm_start is sb3_qsm.convert.warm_start\n"
        "assert convert_to_qsm is sb3_qsm.convert_to_qsm and sample_actions is sb3_qsm.inspection.sample_actions\n"
        "assert load_critic_from_checkpoint is sb3_qsm.convert.load_critic_from_checkpoint\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

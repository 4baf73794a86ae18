"""
The RL Zoo's command line with QSM registered:
``python -m sb3_qsm.zoo train|enjoy|plot_train|plot_from_file|all_plots|push_to_hub|load_from_hub`` (also installed
as the ``sb3-qsm`` command, ``sb3_qsm.cli``).

Arguments are the zoo's own. For ``train --algo qsm`` the default ``--conf-file`` is the hyperparameter file
shipped with sb3-qsm; other algorithms keep the zoo's files.
"""

import importlib
import runpy
import sys

from stable_baselines3.common.vec_env import VecNormalize

from sb3_qsm.cli import ZOO_COMMANDS, usage
from sb3_qsm.common.checkpoint import load_vec_normalize
from sb3_qsm.zoo import ALGO_NAME, default_hyperparams_file, register

# Commands that only load an agent to act, so its replay buffer need not be allocated. push_to_hub loads one too, but
# names the algorithm in the model card by its registered class, which must then be QSM itself
PREDICT_ONLY_COMMANDS = ("enjoy",)
# Commands that load an agent's VecNormalize statistics (with VecNormalize.load)
LOADING_COMMANDS = ("enjoy", "push_to_hub")


def _selected_algo(args: list[str]) -> str | None:
    """
    :param args: Command-line arguments
    :return: The value given to ``--algo`` (last one wins, as in argparse), ``None`` if absent
    """
    algo = None
    for index, arg in enumerate(args):
        if arg == "--algo" and index + 1 < len(args):
            algo = args[index + 1]
        elif arg.startswith("--algo="):
            algo = arg.split("=", 1)[1]
    return algo


def with_default_conf_file(args: list[str]) -> list[str]:
    """
    :param args: ``train`` arguments
    :return: The arguments, with ``--conf-file <packaged qsm.yml>`` added for ``--algo qsm`` when no
        ``-conf``/``--conf-file`` is given
    """
    has_conf = any(arg in ("-conf", "--conf-file") or arg.startswith("--conf-file=") for arg in args)
    if _selected_algo(args) == ALGO_NAME and not has_conf:
        return [*args, "--conf-file", default_hyperparams_file()]
    return args


def load_statistics_safely() -> None:
    """
    Make ``VecNormalize.load`` read statistics files without running code from them, for this process: ``enjoy``
    replays agents downloaded from elsewhere, and the zoo loads their ``vecnormalize.pkl`` with ``VecNormalize.load``
    (their models are loaded safely by ``QSM.load`` already).
    """
    VecNormalize.load = staticmethod(load_vec_normalize)  # type: ignore[assignment]


def hub_compatibility() -> None:
    """
    Let ``rl_zoo3.push_to_hub`` import with the Hugging Face integration the zoo depends on: the zoo imports
    ``generate_metadata`` from ``huggingface_sb3.push_to_hub``, which ``sb3-team-hf-integration`` 3.x (the
    distribution ``rl_zoo3`` requires) provides as ``_generate_metadata``, returning ``ModelCardData`` instead of the
    dict the zoo's model card is written from. Adds the public name, returning that dict, for this process, when it
    is missing.
    """
    # The package's attribute of that name is the function: the module comes from the import system
    hub = importlib.import_module("huggingface_sb3.push_to_hub")

    if not hasattr(hub, "generate_metadata"):

        def generate_metadata(model_name: str, env_id: str, mean_reward: float, std_reward: float) -> dict:
            """:return: The model card's metadata (tags and the evaluation result), as a dict"""
            return hub._generate_metadata(model_name, env_id, mean_reward, std_reward).to_dict()

        hub.generate_metadata = generate_metadata  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    """
    :param argv: Command and its arguments (default: ``sys.argv[1:]``)
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ZOO_COMMANDS:
        sys.exit(usage("python -m sb3_qsm.zoo"))
    command, args = args[0], args[1:]
    if command == "train":
        args = with_default_conf_file(args)
    register(predict_only=command in PREDICT_ONLY_COMMANDS)
    if command in LOADING_COMMANDS:
        load_statistics_safely()
    # The zoo's commands parse sys.argv
    sys.argv = [f"{sys.argv[0]} {command}", *args]
    module_name, function_name = ZOO_COMMANDS[command]
    if function_name is None:
        hub_compatibility()
        runpy.run_module(module_name, run_name="__main__", alter_sys=True)
    else:
        getattr(importlib.import_module(module_name), function_name)()


if __name__ == "__main__":
    main()

"""
The RL Zoo's command line with QSM registered: ``python -m sb3_qsm.zoo train|enjoy|plot_train|plot_from_file|all_plots``
(also installed as the ``sb3-qsm`` command, ``sb3_qsm.cli``).

Arguments are the zoo's own. For ``train --algo qsm`` the default ``--conf-file`` is the hyperparameter file
shipped with sb3-qsm; other algorithms keep the zoo's files.
"""

import importlib
import sys

from stable_baselines3.common.vec_env import VecNormalize

from sb3_qsm.cli import ZOO_COMMANDS, usage
from sb3_qsm.common.checkpoint import load_vec_normalize
from sb3_qsm.zoo import ALGO_NAME, default_hyperparams_file, register

# Commands that only load an agent to act, so its replay buffer need not be allocated
PREDICT_ONLY_COMMANDS = ("enjoy",)


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
    if command in PREDICT_ONLY_COMMANDS:
        load_statistics_safely()
    # The zoo's commands parse sys.argv
    sys.argv = [f"{sys.argv[0]} {command}", *args]
    module_name, function_name = ZOO_COMMANDS[command]
    getattr(importlib.import_module(module_name), function_name)()


if __name__ == "__main__":
    main()

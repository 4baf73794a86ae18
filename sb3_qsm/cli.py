"""
The ``sb3-qsm`` command: the RL Zoo's commands with QSM registered, as ``python -m sb3_qsm.zoo`` runs them
(``sb3-qsm train --algo qsm --env Pendulum-v1``, ``sb3-qsm enjoy ...``). It answers ``--help`` without the RL Zoo
installed; the commands themselves need the ``zoo`` extra.
"""

import sys

# Command -> (module, function) of rl_zoo3, imported on use: the plots need the zoo's plotting extras. A function of
# None runs the module as a script (``python -m rl_zoo3.push_to_hub``, ``load_from_hub``: their command lines
# live in their __main__ blocks)
ZOO_COMMANDS: dict[str, tuple[str, str | None]] = {
    "train": ("rl_zoo3.train", "train"),
    "enjoy": ("rl_zoo3.enjoy", "enjoy"),
    "plot_train": ("rl_zoo3.plots", "plot_train"),
    "plot_from_file": ("rl_zoo3.plots", "plot_from_file"),
    "all_plots": ("rl_zoo3.plots", "all_plots"),
    "push_to_hub": ("rl_zoo3.push_to_hub", None),
    "load_from_hub": ("rl_zoo3.load_from_hub", None),
}


def usage(program: str = "sb3-qsm") -> str:
    """:return: How to call the command"""
    return (
        f"usage: {program} {{{'|'.join(ZOO_COMMANDS)}}} [zoo arguments]\n\n"
        "The RL Zoo's commands, with QSM available as --algo qsm and its shipped hyperparameters as the default\n"
        f"--conf-file of train. Each command's arguments are the zoo's: {program} train --help.\n"
        f"Example: {program} train --algo qsm --env Pendulum-v1\n"
        "Needs the zoo extra: pip install 'sb3-qsm[zoo]'"
    )


def main(argv: list[str] | None = None) -> None:
    """
    :param argv: Command and its arguments (default: ``sys.argv[1:]``)
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        if not args:
            sys.exit(2)
        return
    if args[0] not in ZOO_COMMANDS:
        sys.exit(f"unknown command {args[0]!r}\n\n{usage()}")
    try:
        from sb3_qsm.zoo.__main__ import main as zoo_main
    except ImportError as error:
        sys.exit(str(error))
    zoo_main(args)

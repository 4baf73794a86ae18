"""
sb3-qsm's benchmarks: the suites and their runner, the aggregation into the results page, the cost figures, and the
measurements behind the conversion, zoo-agent and multi-modality pages. Run them with
``python -m sb3_qsm.benchmarks <command>`` (``pip install "sb3-qsm[benchmarks]"``); their raw results are committed
under the repository's ``benchmarks/`` folder.
"""

import argparse


def command_parser(command: str, description: str | None) -> argparse.ArgumentParser:
    """
    :param command: The command's name (``python -m sb3_qsm.benchmarks <command>``)
    :param description: Its help text (the module's docstring), shown as written
    :return: An argument parser for the command
    """
    return argparse.ArgumentParser(
        prog=f"python -m sb3_qsm.benchmarks {command}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

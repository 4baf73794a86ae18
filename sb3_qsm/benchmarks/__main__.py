"""
The benchmarks' command line: ``python -m sb3_qsm.benchmarks <command> [arguments]``; ``<command> --help`` describes
each command's arguments.
"""

import importlib
import sys

# Command -> (module, function, what it does); modules are imported on use, each with the extras it needs
COMMANDS = {
    "run": ("sb3_qsm.benchmarks.runner", "main", "run a suite's algorithms x tasks x seeds (resumable)"),
    "aggregate": ("sb3_qsm.benchmarks.aggregate", "main", "tables and figures of a suite's raw results"),
    "ablation": ("sb3_qsm.benchmarks.ablation", "main", "the table of the screened candidate changes to the defaults"),
    "cost": ("sb3_qsm.benchmarks.cost", "main", "throughput, latency, memory and work against SAC"),
    "profile": ("sb3_qsm.benchmarks.profile", "main", "where QSM's training step spends its time, phase by phase"),
    "convert": ("sb3_qsm.benchmarks.convert", "main", "convert a SAC/TD3 agent, evaluate, fine-tune, evaluate"),
    "convert-ablation": ("sb3_qsm.benchmarks.convert", "ablation_main", "fine-tune a converted agent with other settings"),
    "pretrain": ("sb3_qsm.benchmarks.pretrain", "main", "pretrain on an agent's recorded rollouts, evaluate, fine-tune"),
    "zoo-eval": ("sb3_qsm.benchmarks.zoo_agents", "main", "evaluate zoo-layout agents into evaluation.json"),
    "multimodal": ("sb3_qsm.benchmarks.multimodal", "main", "mode coverage on the multi-modal bandit"),
    "export-latency": ("sb3_qsm.benchmarks.export_latency", "main", "latency of the exported sampler next to predict's"),
    "kill-save": ("sb3_qsm.benchmarks.kill_save", "main", "kill processes during saves; is the checkpoint whole?"),
}


def usage() -> str:
    """:return: The list of commands"""
    lines = ["usage: python -m sb3_qsm.benchmarks <command> [arguments]", "", "commands:"]
    lines += [f"  {name:<17} {description}" for name, (_, _, description) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: The command and its arguments (default: ``sys.argv[1:]``)
    :return: The command's exit status
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] not in COMMANDS:
        print(f"unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, function, _ = COMMANDS[args[0]]
    return getattr(importlib.import_module(module), function)(args[1:])


if __name__ == "__main__":
    sys.exit(main())

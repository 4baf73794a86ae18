"""
Where a QSM training step spends its time: the wall-clock time of each phase of an environment step of training,
per step, measured by timing the methods that do each phase (eager step; a compiled step runs them as one graph).

    python -m sb3_qsm.benchmarks profile --env HalfCheetah-v5 --out benchmarks/profile
    python -m sb3_qsm.benchmarks profile --quick --out /tmp/profile     # smoke test

Phases (each timed exclusive of the phases inside it): acting (the diffusion sample that picks the action), the
environment's step, storing the transition, replay sampling, the critic target (the next actions' reverse chain and
the target critics: their minimum, or TQC's truncated pooled quantiles), the critic update (its forward and backward
passes and optimizer step), the score target (the posterior target's critic pass over the candidates, or the
critic's action gradient), the actor update, logging, and the rest of the training step (target networks, learning
rates) and of SB3's loop. After ``--learning-starts`` random steps and ``--warmup-steps`` untimed training steps,
``--steps`` steps are timed, with one torch thread.
"""

import dataclasses
import pathlib
import time
from collections.abc import Callable
from typing import Any

import torch as th
from stable_baselines3.common.logger import configure

from sb3_qsm import QSM
from sb3_qsm.benchmarks import command_parser
from sb3_qsm.benchmarks.evaluation import environment, write_json

# The phases, in the order of a step; "other" is what the timed methods leave of the whole
PHASES = (
    "acting",
    "environment",
    "storing the transition",
    "replay sampling",
    "critic target",
    "critic update",
    "score target",
    "actor update",
    "logging",
    "other",
)


@dataclasses.dataclass
class _Call:
    """A timed call in progress: when it started, and the time spent so far in the timed calls it made."""

    start: float
    nested: float = 0.0


class PhaseTimer:
    """
    Accumulates the wall-clock time of wrapped methods, each exclusive of the wrapped methods it calls.
    """

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._stack: list[_Call] = []

    def wrap(self, owner: Any, name: str, phase: str) -> None:
        """Time every call of ``owner.name`` as ``phase`` (an instance attribute shadows the method)."""
        method: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            call = _Call(time.perf_counter())
            self._stack.append(call)
            try:
                return method(*args, **kwargs)
            finally:
                self._stack.pop()
                elapsed = time.perf_counter() - call.start
                self.seconds[phase] += elapsed - call.nested
                if self._stack:
                    self._stack[-1].nested += elapsed

        setattr(owner, name, timed)


def profile(env_id: str, steps: int, learning_starts: int, warmup_steps: int, **qsm_kwargs: Any) -> dict[str, Any]:
    """
    :param env_id: The task
    :param steps: Timed environment steps of training
    :param learning_starts: Random warm-up steps
    :param warmup_steps: Untimed training steps
    :param qsm_kwargs: QSM's arguments
    :return: Milliseconds per environment step of each phase, and the steps per second
    """
    th.set_num_threads(1)
    model = QSM("MlpPolicy", env_id, learning_starts=learning_starts, seed=0, device="cpu", **qsm_kwargs)
    model.learn(learning_starts + warmup_steps)
    # A logger of its own (without outputs, as SB3's at verbose=0): learn keeps it, so that its calls can be timed
    model.set_logger(configure(None, []))
    timer = PhaseTimer()
    timer.wrap(model, "_sample_action", "acting")
    assert model.env is not None
    timer.wrap(model.env, "step", "environment")
    timer.wrap(model, "_store_transition", "storing the transition")
    assert model.replay_buffer is not None
    timer.wrap(model.replay_buffer, "sample", "replay sampling")
    timer.wrap(model, "_critic_target", "critic target")
    timer.wrap(model, "_quantile_target", "critic target")
    timer.wrap(model, "_update_critic", "critic update")
    timer.wrap(model, "_posterior_target", "score target")
    timer.wrap(model, "q_score", "score target")
    timer.wrap(model, "_update_actor", "actor update")
    timer.wrap(model.logger, "record", "logging")
    timer.wrap(model.logger, "dump", "logging")
    timer.wrap(model, "learn", "other")
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    total = time.perf_counter() - start
    return {
        "ms_per_step": {phase: seconds / steps * 1e3 for phase, seconds in timer.seconds.items()},
        "steps_per_second": steps / total,
    }


def profile_table(record: dict[str, Any]) -> str:
    """:return: The Markdown table of a profile record: milliseconds per environment step and share of each phase"""
    phases = record["ms_per_step"]
    total = sum(phases.values())
    lines = ["| Phase | ms per step | share |", "| --- | --- | --- |"]
    lines += [f"| {phase} | {ms:.2f} | {ms / total:.0%} |" for phase, ms in phases.items()]
    lines.append(f"| all | {total:.2f} | 100% |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    :return: The exit status
    """
    parser = command_parser("profile", __doc__)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=1000, help="timed environment steps of training")
    parser.add_argument("--learning-starts", type=int, default=1000, help="random warm-up steps")
    parser.add_argument("--warmup-steps", type=int, default=100, help="untimed training steps")
    parser.add_argument("--quick", action="store_true", help="Pendulum-v1, 30 steps (a smoke test)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/profile"))
    args = parser.parse_args(argv)
    if args.quick:
        args.env, args.steps, args.learning_starts, args.warmup_steps = "Pendulum-v1", 30, 300, 5
    result = profile(args.env, args.steps, args.learning_starts, args.warmup_steps)
    record = {
        "env": args.env,
        "algorithm": "QSM defaults, 256x256, eager, one torch thread, CPU",
        "timed_steps": args.steps,
        "learning_starts": args.learning_starts,
        "warmup_steps": args.warmup_steps,
        "environment": environment(),
        **result,
    }
    path = args.out / f"{args.env}.json"
    write_json(path, record)
    print(profile_table(record))
    print(f"{result['steps_per_second']:.1f} steps/s; written to {path}")
    return 0

"""
Cost figures: QSM's training throughput, ``predict`` latency and peak memory as ratios to SB3's SAC, measured in the
same run, on the same task, with the same network sizes; and QSM's throughput for T = 1, 2, 5, 10, 20 diffusion steps.
QSM runs with the paper's gradient score target (``suite.GRADIENT_HYPERPARAMS``, the defaults these figures were
first measured with); the default posterior target adds a critic pass over its candidate actions to each actor
update (docs/guide/parameters.md gives its cost).

    python -m sb3_qsm.benchmarks cost --env HalfCheetah-v5 --out benchmarks/cost            # 2 torch threads, CPU
    python -m sb3_qsm.benchmarks cost --env HalfCheetah-v5 --device cuda --threads 1 --out benchmarks/cost
    python -m sb3_qsm.benchmarks cost --quick --out /tmp/cost                               # smoke test

Each configuration runs in a fresh process, so that its peak memory is its own: ``--learning-starts`` random warm-up
steps (not timed), then ``--steps`` timed training steps (one gradient step per environment step, batch 256, every
other setting at the algorithm's default but QSM's score target, above), then ``predict`` on one observation (median
of 300 calls) and on a batch of 256 (median of 50 calls), deterministic. Peak memory is the process's peak resident
set size (and, on a GPU, PyTorch's peak allocated GPU memory); the replay buffer (1e6 transitions by default, the
same for both) is allocated lazily, so it counts for the transitions stored.
"""

import dataclasses
import json
import multiprocessing
import pathlib
import resource
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from sb3_qsm import QSM
from sb3_qsm.benchmarks import command_parser
from sb3_qsm.benchmarks.evaluation import environment
from sb3_qsm.benchmarks.suite import GRADIENT_HYPERPARAMS

DIFFUSION_STEPS = (1, 2, 5, 10, 20)
DEFAULT_T = 5
PREDICT_CALLS, BATCH_CALLS, BATCH_SIZE = 300, 50, 256


@dataclasses.dataclass(frozen=True)
class Config:
    """One measured configuration: an algorithm, its hidden layer sizes, and for QSM its number of diffusion steps."""

    algo: str
    width: int
    n_diffusion_steps: int | None = None

    @property
    def label(self) -> str:
        suffix = f", T={self.n_diffusion_steps}" if self.n_diffusion_steps is not None else ""
        return f"{self.algo} {self.width}x{self.width}{suffix}"


CONFIGS = (
    Config("SAC", 256),
    *(Config("QSM", 256, t) for t in DIFFUSION_STEPS),
    Config("SAC", 512),
    Config("QSM", 512, DEFAULT_T),
)


class StepTimer(BaseCallback):
    """Records the wall-clock time at which learning starts (the first step after ``learning_starts``)."""

    def __init__(self, learning_starts: int):
        super().__init__()
        self.learning_starts = learning_starts
        self.start: float | None = None

    def _on_step(self) -> bool:
        if self.start is None and self.num_timesteps > self.learning_starts:
            self.start = time.perf_counter()
        return True


def median_ms(function: Any, calls: int) -> float:
    for _ in range(10):  # warm-up
        function()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def build(config: Config, env_id: str, learning_starts: int, device: str) -> BaseAlgorithm:
    kwargs: dict[str, Any] = dict(learning_starts=learning_starts, seed=0, device=device)
    kwargs["policy_kwargs"] = dict(net_arch=[config.width, config.width])
    if config.algo == "QSM":
        assert config.n_diffusion_steps is not None
        settings = {key: value for key, value in GRADIENT_HYPERPARAMS.items() if key != "n_diffusion_steps"}
        kwargs["policy_kwargs"].update(settings.pop("policy_kwargs"))
        return QSM("MlpPolicy", env_id, n_diffusion_steps=config.n_diffusion_steps, **settings, **kwargs)
    return SAC("MlpPolicy", env_id, **kwargs)


def measure(config: Config, env_id: str, steps: int, learning_starts: int, device: str, threads: int) -> dict[str, Any]:
    """
    Measure one configuration (run in a fresh process).

    :return: Throughput, latencies, peak memory and parameter count
    """
    th.set_num_threads(threads)
    model = build(config, env_id, learning_starts, device)
    timer = StepTimer(learning_starts)
    model.learn(learning_starts + steps, callback=timer)
    assert timer.start is not None
    train_seconds = time.perf_counter() - timer.start
    space = gym.make(env_id).observation_space
    space.seed(0)
    obs = space.sample()
    batch = np.stack([space.sample() for _ in range(BATCH_SIZE)])
    result = {
        **dataclasses.asdict(config),
        "label": config.label,
        "train_steps_per_second": (steps - 1) / train_seconds,
        "predict_ms": median_ms(lambda: model.predict(obs, deterministic=True), PREDICT_CALLS),
        "predict_batch_ms": median_ms(lambda: model.predict(batch, deterministic=True), BATCH_CALLS),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters": sum(p.numel() for p in model.policy.parameters()),
    }
    if device.startswith("cuda"):
        result["peak_gpu_mib"] = th.cuda.max_memory_allocated() / 2**20
    return result


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each result's ratios to SAC's at the same width (throughput: higher is faster; the others: higher costs more)."""
    sac = {r["width"]: r for r in results if r["algo"] == "SAC"}
    rows = []
    for r in results:
        base = sac[r["width"]]
        rows.append(
            {
                "label": r["label"],
                "throughput": r["train_steps_per_second"] / base["train_steps_per_second"],
                "predict": r["predict_ms"] / base["predict_ms"],
                "predict_batch": r["predict_batch_ms"] / base["predict_batch_ms"],
                "peak_rss": r["peak_rss_mib"] / base["peak_rss_mib"],
                "parameters": r["parameters"] / base["parameters"],
            }
        )
    return rows


def cost_table(record: dict[str, Any]) -> str:
    """The Markdown table of a cost record: absolute figures and ratios to SAC at the same width."""
    lines = [
        "| Configuration | steps/s | x SAC | predict, 1 obs | x SAC | predict, 256 obs | x SAC | peak RSS | x SAC "
        "| parameters | x SAC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r, q in zip(record["results"], ratios(record["results"]), strict=True):
        lines.append(
            f"| {r['label']} | {r['train_steps_per_second']:.1f} | {q['throughput']:.2f} "
            f"| {r['predict_ms']:.2f} ms | {q['predict']:.2f} | {r['predict_batch_ms']:.2f} ms | {q['predict_batch']:.2f} "
            f"| {r['peak_rss_mib']:.0f} MiB | {q['peak_rss']:.2f} | {r['parameters']:,} | {q['parameters']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    :return: The exit status
    """
    parser = command_parser("cost", __doc__)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=2000, help="timed training steps")
    parser.add_argument("--learning-starts", type=int, default=1000, help="untimed random warm-up steps")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="Pendulum-v1, 50 + 50 steps (a smoke test)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/cost"))
    args = parser.parse_args(argv)
    if args.quick:
        args.env, args.steps, args.learning_starts = "Pendulum-v1", 50, 50
    context = multiprocessing.get_context("spawn")
    results = []
    for config in CONFIGS:
        with context.Pool(1) as pool:  # a fresh process per configuration
            result = pool.apply(measure, (config, args.env, args.steps, args.learning_starts, args.device, args.threads))
        print(
            f"{config.label}: {result['train_steps_per_second']:.1f} steps/s, predict {result['predict_ms']:.2f} ms "
            f"(batch {result['predict_batch_ms']:.2f} ms), peak RSS {result['peak_rss_mib']:.0f} MiB"
        )
        results.append(result)
    device = args.device if args.device == "cpu" else th.cuda.get_device_name(args.device)
    record = {
        "env": args.env,
        "timed_steps": args.steps,
        "learning_starts": args.learning_starts,
        "torch_threads": args.threads,
        "device": device,
        "environment": environment(),
        "results": results,
        "ratios": ratios(results),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    path = args.out / f"{args.env}{suffix}.json"
    path.write_text(json.dumps(record, indent=1))
    print(cost_table(record))
    print(f"Written to {path}")
    return 0

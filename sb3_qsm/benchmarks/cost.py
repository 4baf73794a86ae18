"""
Cost figures: the training throughput, ``predict`` latency, peak memory and floating-point work of QSM's step, as
ratios to SB3's SAC measured in the same run, on the same task, with the same network sizes. Rows: QSM at its
defaults (eager and with ``compile=True``), with the paper's update (the gradient score target, T=5 with the vp
schedule; ``algorithms.GRADIENT_HYPERPARAMS``), at its defaults with T = 1, 2, 5, 20 diffusion steps, and with the cheaper
arithmetic of the suite "cheaper" (fewer candidates for the posterior target, fewer reverse steps for the critic
target's next action).

    python -m sb3_qsm.benchmarks cost --env HalfCheetah-v5 --threads 1 --rounds 3 --out benchmarks/cost
    python -m sb3_qsm.benchmarks cost --env HalfCheetah-v5 --device cuda --out benchmarks/cost
    python -m sb3_qsm.benchmarks cost --quick --out /tmp/cost                               # smoke test
    python -m sb3_qsm.benchmarks cost --only '256, defaults$' critic_batch_norm --rounds 3    # some rows only

Each configuration runs in a fresh process, so that its peak memory is its own: ``--learning-starts`` random warm-up
steps and ``--warmup-steps`` training steps (not timed: a compiled step compiles there), then ``--steps`` timed
training steps (one gradient step per environment step, batch 256, every other setting at the algorithm's default
but those of the row), then ``predict`` on one observation (median of 300 calls) and on a batch of 256 (median of 50
calls), deterministic. Peak memory is the process's peak resident set size (and, on a GPU, PyTorch's peak allocated
GPU memory); the replay buffer (1e6 transitions by default, the same for both) is allocated lazily, so it counts for
the transitions stored. The work of a step is that of one gradient step and of acting on one observation, counted
from their matrix products (``sb3_qsm.benchmarks.work``); the matmul rate is the rate of the same products timed on
their own, on the faster of PyTorch's kernels, in the same process. With ``--rounds`` the configurations run that
many times, alternated, and each figure is the median over the rounds (every round is kept in the record).
"""

import copy
import dataclasses
import multiprocessing
import pathlib
import re
import resource
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_qsm import QSM
from sb3_qsm.benchmarks import command_parser
from sb3_qsm.benchmarks.aggregate import iqm_cell, mean_std
from sb3_qsm.benchmarks.algorithms import CHEAPER_CANDIDATES, CHEAPER_TARGET_STEPS, GRADIENT_HYPERPARAMS
from sb3_qsm.benchmarks.evaluation import environment, write_json
from sb3_qsm.benchmarks.work import median_seconds, work_figures

# The diffusion steps of the T scan, besides the defaults' own
DIFFUSION_STEPS = (1, 2, 5, 20)
PREDICT_CALLS, BATCH_CALLS, BATCH_SIZE = 300, 50, 256
# QSM's updates, by the name a row gives them: its defaults, and the paper's update
UPDATES: dict[str, dict[str, Any]] = {"defaults": {}, "paper update": GRADIENT_HYPERPARAMS}


@dataclasses.dataclass(frozen=True)
class Config:
    """
    One measured configuration: an algorithm, its hidden layer sizes and, for QSM, its update (a key of ``UPDATES``),
    a number of diffusion steps other than the update's, whether the step is compiled, and other QSM arguments.
    """

    algo: str
    width: int
    update: str | None = None
    n_diffusion_steps: int | None = None
    compile: bool = False
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        details = [self.update] if self.update else []
        details += [f"T={self.n_diffusion_steps}"] if self.n_diffusion_steps is not None else []
        details += [f"{name}={value}" for name, value in self.options]
        details += ["compiled"] if self.compile else []
        return f"{self.algo} {self.width}x{self.width}" + (f", {', '.join(details)}" if details else "")

    def qsm_kwargs(self) -> dict[str, Any]:
        """:return: QSM's arguments for this row (policy_kwargs included)"""
        assert self.update is not None
        kwargs = copy.deepcopy(UPDATES[self.update])
        if self.n_diffusion_steps is not None:
            kwargs["n_diffusion_steps"] = self.n_diffusion_steps
        options = dict(self.options)
        policy_options = {name: options.pop(name) for name in POLICY_OPTIONS if name in options}
        if policy_options:
            kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), **policy_options}
        return {**kwargs, **options, "compile": self.compile}


# Options of a row that are policy keyword arguments rather than QSM's
POLICY_OPTIONS = ("best_of_n", "critic_batch_norm", "n_quantiles")
# Screened candidate defaults whose cost differs from the defaults' (acting with the best of 32 sampled actions, the
# policy-centred candidates of the posterior target, CrossQ's critics, and those with CrossQ's actor delay of 3,
# 3-step TD targets (SB3's n-step replay buffer), alone and with CrossQ's critics), and the critics the defaults had
# before TQC's: plain critics with the actor updated at every step (sb3-qsm 0.1's), and each half of the change alone
SCREENED_OPTIONS: tuple[tuple[tuple[str, Any], ...], ...] = (
    (("best_of_n", 32),),
    (("score_proposal", "policy"),),
    (("critic_batch_norm", True),),
    (("critic_batch_norm", True), ("policy_delay", 3)),
    (("n_steps", 3),),
    (("n_steps", 3), ("critic_batch_norm", True)),
    (("n_quantiles", None), ("policy_delay", 1)),
    (("n_quantiles", None),),
    (("policy_delay", 1),),
)

CONFIGS = (
    Config("SAC", 256),
    Config("QSM", 256, "defaults"),
    Config("QSM", 256, "defaults", compile=True),
    Config("QSM", 256, "paper update"),
    Config("QSM", 256, "paper update", compile=True),
    *(Config("QSM", 256, "defaults", t) for t in DIFFUSION_STEPS),
    *(Config("QSM", 256, "defaults", options=(("n_score_samples", k),)) for k in CHEAPER_CANDIDATES),
    *(Config("QSM", 256, "defaults", options=(("target_diffusion_steps", t),)) for t in CHEAPER_TARGET_STEPS),
    *(Config("QSM", 256, "defaults", options=options) for options in SCREENED_OPTIONS),
    Config("SAC", 512),
    Config("QSM", 512, "defaults"),
    Config("QSM", 512, "defaults", compile=True),
    Config("QSM", 512, "paper update"),
)
QUICK_CONFIGS = (
    Config("SAC", 256),
    Config("QSM", 256, "defaults"),
    Config("QSM", 256, "defaults", compile=True),
    Config("QSM", 256, "paper update"),
    Config("QSM", 256, "defaults", 1),
)


def build(config: Config, env_id: str, learning_starts: int, device: str) -> BaseAlgorithm:
    kwargs: dict[str, Any] = dict(learning_starts=learning_starts, seed=0, device=device)
    kwargs["policy_kwargs"] = dict(net_arch=[config.width, config.width])
    if config.algo == "QSM":
        settings = config.qsm_kwargs()
        kwargs["policy_kwargs"].update(settings.pop("policy_kwargs", {}))
        return QSM("MlpPolicy", env_id, **settings, **kwargs)
    return SAC("MlpPolicy", env_id, **kwargs)


def measure(
    config: Config, env_id: str, steps: int, learning_starts: int, warmup_steps: int, device: str, threads: int
) -> dict[str, Any]:
    """
    Measure one configuration (run in a fresh process).

    :return: Throughput, latencies, peak memory, parameter count and the work figures
    """
    th.set_num_threads(threads)
    model = build(config, env_id, learning_starts, device)
    model.learn(learning_starts + warmup_steps)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    steps_per_second = steps / (time.perf_counter() - start)
    space = gym.make(env_id).observation_space
    space.seed(0)
    obs = space.sample()
    batch = np.stack([space.sample() for _ in range(BATCH_SIZE)])
    result = {
        **dataclasses.asdict(config),
        "label": config.label,
        "train_steps_per_second": steps_per_second,
        "predict_ms": median_seconds(lambda: model.predict(obs, deterministic=True), PREDICT_CALLS) * 1e3,
        "predict_batch_ms": median_seconds(lambda: model.predict(batch, deterministic=True), BATCH_CALLS) * 1e3,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters": sum(p.numel() for p in model.policy.parameters()),
        **work_figures(model, steps_per_second),  # type: ignore[arg-type]
    }
    if device.startswith("cuda"):
        result["peak_gpu_mib"] = th.cuda.max_memory_allocated() / 2**20
    return result


def median_over_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """:return: The first round's record, with every measured figure replaced by its median over the rounds"""
    merged = dict(rounds[0])
    for key in MEASURED:
        merged[key] = statistics.median(r[key] for r in rounds)
    return merged


# The figures that vary from run to run (the others are fixed by the configuration)
MEASURED = (
    "train_steps_per_second",
    "predict_ms",
    "predict_batch_ms",
    "peak_rss_mib",
    "achieved_gflops",
    "matmul_gflops",
    "matmul_ms_per_step",
)


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
                **({"work": r["step_gflop"] / base["step_gflop"]} if "step_gflop" in r else {}),
            }
        )
    return rows


def cost_table(record: dict[str, Any]) -> str:
    """The Markdown tables of a cost record: speed and memory, then work; absolute figures and ratios to SAC."""
    speed = [
        "| Configuration | steps/s | x SAC | predict, 1 obs | x SAC | predict, 256 obs | x SAC | peak RSS | x SAC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    work = [
        "| Configuration | GFLOP per step | x SAC | achieved GFLOP/s | matmul GFLOP/s | share | parameters | x SAC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r, q in zip(record["results"], ratios(record["results"]), strict=True):
        speed.append(
            f"| {r['label']} | {r['train_steps_per_second']:.1f} | {q['throughput']:.2f} "
            f"| {r['predict_ms']:.2f} ms | {q['predict']:.2f} | {r['predict_batch_ms']:.2f} ms | {q['predict_batch']:.2f} "
            f"| {r['peak_rss_mib']:.0f} MiB | {q['peak_rss']:.2f} |"
        )
        if "step_gflop" in r:
            work.append(
                f"| {r['label']} | {r['step_gflop']:.3f} | {q['work']:.2f} | {r['achieved_gflops']:.1f} "
                f"| {r['matmul_gflops']:.1f} | {r['achieved_gflops'] / r['matmul_gflops']:.0%} "
                f"| {r['parameters']:,} | {q['parameters']:.2f} |"
            )
    tables = "\n".join(speed) + "\n"
    return tables + ("\n" + "\n".join(work) + "\n" if len(work) > 2 else "")


# The cost rows of the suite "cheaper"'s algorithms
CHEAPER_ROWS: dict[str, Config] = {
    "qsm": Config("QSM", 256, "defaults"),
    **{f"qsm-k{k}": Config("QSM", 256, "defaults", options=(("n_score_samples", k),)) for k in CHEAPER_CANDIDATES},
    **{f"qsm-tt{t}": Config("QSM", 256, "defaults", options=(("target_diffusion_steps", t),)) for t in CHEAPER_TARGET_STEPS},
}


def cheaper_table(record: dict[str, Any], summaries: dict[str, dict[str, Any]]) -> str:
    """
    :param record: A cost record with the rows of ``CHEAPER_ROWS``
    :param summaries: The suite "cheaper"'s summaries of one task (``aggregate.summarize``), by algorithm
    :return: The Markdown table of each setting's time per step (eager), final return and area under the learning
        curve (normalised by the budget, as in the suite's report)
    """
    steps_per_second = {r["label"]: r["train_steps_per_second"] for r in record["results"]}
    if CHEAPER_ROWS["qsm"].label not in steps_per_second:
        return ""
    defaults = 1e3 / steps_per_second[CHEAPER_ROWS["qsm"].label]
    lines = [
        "| Setting | ms per step | x defaults | Seeds | Final return, mean +- std | IQM [95% CI] | AUC |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for algo, config in CHEAPER_ROWS.items():
        if algo not in summaries or config.label not in steps_per_second:
            continue
        ms, summary = 1e3 / steps_per_second[config.label], summaries[algo]
        setting = ", ".join(f"`{name}={value}`" for name, value in config.options) or "defaults"
        n_runs = len(summary["seeds"])
        lines.append(
            f"| {setting} | {ms:.1f} | {ms / defaults:.2f} | {n_runs} "
            f"| {mean_std(summary['final_mean'], summary['final_std'], n_runs)} | {iqm_cell(summary)} "
            f"| {mean_std(summary['auc_mean'], summary['auc_std'], n_runs)} |"
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
    parser.add_argument("--warmup-steps", type=int, default=100, help="untimed training steps (compilation)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every configuration, alternated (medians)")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        help="only the configurations whose label matches one of these regular expressions (re.search), and SAC's",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="Pendulum-v1, a few configurations, 50 steps (smoke test)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/cost"))
    args = parser.parse_args(argv)
    configs = list(QUICK_CONFIGS if args.quick else CONFIGS)
    if args.quick:
        args.env, args.steps, args.learning_starts, args.warmup_steps = "Pendulum-v1", 50, 300, 10
    if args.only:
        chosen = [c for c in configs if c.algo != "SAC" and any(re.search(pattern, c.label) for pattern in args.only)]
        # SAC's row of each chosen width, which the ratios are taken to
        configs = [c for c in configs if c in chosen or (c.algo == "SAC" and c.width in {q.width for q in chosen})]
    context = multiprocessing.get_context("spawn")
    rounds: dict[Config, list[dict[str, Any]]] = {config: [] for config in configs}
    for round_index in range(args.rounds):
        for config in configs:
            with context.Pool(1) as pool:  # a fresh process per configuration
                measurement = (config, args.env, args.steps, args.learning_starts, args.warmup_steps, args.device)
                result = pool.apply(measure, (*measurement, args.threads))
            print(
                f"[round {round_index + 1}/{args.rounds}] {config.label}: {result['train_steps_per_second']:.1f} "
                f"steps/s, predict {result['predict_ms']:.3f} ms (batch {result['predict_batch_ms']:.2f} ms), "
                f"{result['achieved_gflops']:.1f} of {result['matmul_gflops']:.1f} GFLOP/s"
            )
            rounds[config].append(result)
    results = [median_over_rounds(runs) for runs in rounds.values()]
    device = args.device if args.device == "cpu" else th.cuda.get_device_name(args.device)
    record = {
        "env": args.env,
        "timed_steps": args.steps,
        "learning_starts": args.learning_starts,
        "warmup_steps": args.warmup_steps,
        "rounds": args.rounds,
        "torch_threads": args.threads,
        "device": device,
        "environment": environment(),
        "results": results,
        "ratios": ratios(results),
        "all_rounds": [runs for runs in rounds.values()],
    }
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    path = args.out / f"{args.env}{suffix}.json"
    write_json(path, record)
    print(cost_table(record))
    print(f"Written to {path}")
    return 0

"""
Benchmark runner: algorithms x tasks x seeds of a suite (``sb3_qsm.benchmarks.suite``), as parallel worker processes.

Each run writes its own raw result file, ``<out>/<suite>/<env>/<algo>_seed<seed>.json``: a deterministic evaluation
before training and every ``budget / n_evaluations`` steps, then a final evaluation (deterministic, and stochastic
for the policies that sample actions; for QSM also deterministic with the best of 32 sampled actions, see
``PAIRED_BEST_OF_N``), and the return of every training episode.

The runner is idempotent and resumable: a run whose result file exists is skipped; a run in progress saves a
checkpoint (model and replay buffer, under ``<out>/<suite>/.checkpoints/``) at every evaluation and when
``--stop-after`` runs out, and the next invocation goes on from it. A run that stops between checkpoints restarts
from the last one (the episode in progress is cut). Ctrl-C (or SIGTERM to the runner) does what ``--stop-after``
does: every run in progress checkpoints and stops, and the runs not started are left for the next invocation. Lock
files keep two invocations from running the same run. A suite that reuses an earlier one (``Suite.reuses``) first
takes over the earlier results of the same runs made with the same settings (``sb3_qsm.benchmarks.reuse``);
``--list`` shows them as reusable.

    python -m sb3_qsm.benchmarks run --suite v1 --workers 2              # the whole suite, 2 processes
    python -m sb3_qsm.benchmarks run --suite v1 --envs Hopper-v5 --algos qsm sac --seeds 0
    python -m sb3_qsm.benchmarks run --quick --out /tmp/bench          # smoke test: tiny budgets, then the report
    python -m sb3_qsm.benchmarks run --suite v2 --ray                  # on a local Ray instance (or --ray ADDRESS)

When the suite is complete, ``python -m sb3_qsm.benchmarks aggregate`` turns the raw files into tables and figures
(``--quick`` does it too).
"""

import concurrent.futures
import contextlib
import dataclasses
import datetime
import gzip
import io
import json
import multiprocessing
import os
import pathlib
import pickle
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from tqdm import tqdm

from sb3_qsm import QSM
from sb3_qsm.benchmarks import command_parser
from sb3_qsm.benchmarks.algorithms import ALGORITHMS
from sb3_qsm.benchmarks.evaluation import environment, evaluate, write_json
from sb3_qsm.benchmarks.locks import acquire_lock
from sb3_qsm.benchmarks.settings import make_model
from sb3_qsm.benchmarks.suite import SUITES, Suite, Task, make_env

# Evaluation environments are seeded apart from the training environment
EVAL_SEED_OFFSET = 10_000
# How often (in environment steps) a worker reports its progress to the display
PROGRESS_EVERY = 200
# A QSM run's final evaluation is repeated acting with the best of this many sampled actions (unless it already acts
# so), under this key of "final": the evaluation rule measured on the same trained model
PAIRED_BEST_OF_N = 32
PAIRED_KEY = f"deterministic_best_of_{PAIRED_BEST_OF_N}"
# In a worker process of ``execute``: the event its runner sets when asked to stop (``_init_worker``)
_STOP_REQUESTED: Any = None


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run: a result file is reused only for the same spec."""

    suite: str
    env_id: str
    algo: str
    seed: int
    budget: int
    eval_freq: int
    eval_episodes: int
    final_episodes: int
    max_learning_starts: int | None

    @property
    def name(self) -> str:
        return f"{self.env_id}/{self.algo}_seed{self.seed}"


def result_path(out: pathlib.Path, spec: RunSpec) -> pathlib.Path:
    return out / spec.suite / spec.env_id / f"{spec.algo}_seed{spec.seed}.json"


def checkpoint_dir(out: pathlib.Path, spec: RunSpec) -> pathlib.Path:
    return out / spec.suite / ".checkpoints" / spec.env_id / f"{spec.algo}_seed{spec.seed}"


class EvalCheckpointCallback(BaseCallback):
    """
    Evaluates every ``eval_freq`` steps, saves a checkpoint after each evaluation and stops training once the
    deadline has passed or the stop event is set.
    """

    def __init__(self, run: "Run", deadline: float | None, stop_requested: Any = None):
        super().__init__()
        self.run = run
        self.deadline = deadline
        self.stop_requested = stop_requested
        self.stopped = False

    def _due(self) -> bool:
        """:return: Whether the run is to stop now"""
        if self.deadline is not None and time.time() > self.deadline:
            return True
        return self.stop_requested is not None and self.stop_requested.is_set()

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:  # the Monitor wrapper's summary of each finished training episode
            if "episode" in info:
                episode = [self.num_timesteps, float(info["episode"]["r"]), int(info["episode"]["l"])]
                self.run.record.setdefault("training_episodes", []).append(episode)
        if self.num_timesteps % PROGRESS_EVERY == 0:
            self.run.report(PROGRESS_EVERY)
        if self.num_timesteps % self.run.spec.eval_freq == 0:
            self.run.evaluate_now()
            if self.num_timesteps < self.run.spec.budget:
                self.run.save_checkpoint()
        if self.num_timesteps < self.run.spec.budget and self._due():
            self.stopped = True
            return False
        return True


class Run:
    """
    One run: trains, evaluates and checkpoints one algorithm on one task with one seed.

    :param spec: What to run
    :param out: Root folder of the raw results
    :param device: Torch device
    :param progress: Queue to report progress to (``(run name, steps)`` items), or None
    """

    def __init__(self, spec: RunSpec, out: pathlib.Path, device: str, progress: Any = None):
        self.spec = spec
        self.out = out
        self.device = device
        self.progress = progress
        self.env = make_env(spec.env_id)
        self.eval_env = Monitor(make_env(spec.env_id))
        self.eval_env.reset(seed=spec.seed + EVAL_SEED_OFFSET)
        self.model, self.record = self._load_or_build()
        self.segment_start = time.time()
        self.eval_seconds = 0.0

    def report(self, steps: int) -> None:
        if self.progress is not None:
            self.progress.put((self.spec.name, steps))

    def _load_or_build(self) -> tuple[BaseAlgorithm, dict[str, Any]]:
        folder = checkpoint_dir(self.out, self.spec)
        progress_file = folder / "progress.json"
        if progress_file.is_file():
            record = json.loads(progress_file.read_text())
            if record["spec"] == dataclasses.asdict(self.spec):
                model = ALGORITHMS[self.spec.algo].algo_class.load(folder / "model.zip", env=self.env, device=self.device)
                buffer = gzip.decompress((folder / "replay_buffer.pkl.gz").read_bytes())
                model.load_replay_buffer(io.BytesIO(buffer))  # type: ignore[attr-defined]
                # A fixed seed per resume point keeps a resumed run reproducible
                model.set_random_seed(self.spec.seed + model.num_timesteps)
                self.report(model.num_timesteps)
                return model, record
        model, settings = make_model(
            self.spec.algo,
            self.env,
            self.spec.env_id,
            self.spec.seed,
            self.spec.budget,
            self.device,
            self.spec.max_learning_starts,
            SUITES[self.spec.suite].qsm_defaults,
        )
        record = {"spec": dataclasses.asdict(self.spec), "settings": settings, "evaluations": [], "segments": []}
        record["training_episodes"] = []  # [timesteps at its end, return, length] per training episode
        return model, record

    def evaluate_now(self) -> None:
        start = time.time()
        result = evaluate(self.model, self.eval_env, self.spec.eval_episodes, deterministic=True)
        self.record["evaluations"].append({"timesteps": self.model.num_timesteps, **result})
        self.eval_seconds += time.time() - start

    def evaluate_best_of(self, model: QSM, n: int) -> dict[str, Any]:
        """
        The final deterministic evaluation of a QSM model again, acting with the best of ``n`` sampled actions by its
        critics: the same trained model under both evaluation rules, so that their difference is measured paired.

        :param model: The run's model
        :param n: The ``best_of_n`` evaluated with; the model's own is restored afterwards
        :return: The evaluation, as ``evaluate`` gives it
        """
        policy = model.policy
        own = policy.best_of_n
        policy.best_of_n = n
        try:
            return evaluate(model, self.eval_env, self.spec.final_episodes, deterministic=True)
        finally:
            policy.best_of_n = own

    def _close_segment(self, steps_before: int) -> None:
        seconds = time.time() - self.segment_start
        segment = {"steps": self.model.num_timesteps - steps_before, "seconds": seconds, "eval_seconds": self.eval_seconds}
        self.record["segments"].append({**segment, "device": self.device, **environment()})

    def save_checkpoint(self) -> None:
        folder = checkpoint_dir(self.out, self.spec)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.model.save(tmp / "model.zip")
        # The pickle SB3's save_replay_buffer writes, compressed (the unused part of the buffer is zeros)
        buffer = pickle.dumps(self.model.replay_buffer, protocol=pickle.HIGHEST_PROTOCOL)  # type: ignore[attr-defined]
        (tmp / "replay_buffer.pkl.gz").write_bytes(gzip.compress(buffer, compresslevel=1))
        write_json(tmp / "progress.json", self.record)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)

    def execute(self, deadline: float | None, stop_requested: Any = None) -> dict[str, Any] | None:
        """
        Train to the budget (or until asked to stop), then evaluate and write the result file.

        :param deadline: ``time.time()`` after which to checkpoint and stop
        :param stop_requested: An event (``multiprocessing.Event``) whose setting makes the run checkpoint and stop
        :return: The result, or None if the run was stopped
        """
        steps_before = self.model.num_timesteps
        if steps_before == 0:
            self.evaluate_now()
        callback = EvalCheckpointCallback(self, deadline, stop_requested)
        remaining = self.spec.budget - self.model.num_timesteps
        self.model.learn(remaining, callback=callback, reset_num_timesteps=steps_before == 0)
        self.report(self.model.num_timesteps % PROGRESS_EVERY)
        if callback.stopped:
            self._close_segment(steps_before)
            self.save_checkpoint()
            return None
        final = {"deterministic": evaluate(self.model, self.eval_env, self.spec.final_episodes, deterministic=True)}
        if ALGORITHMS[self.spec.algo].samples:
            final["stochastic"] = evaluate(self.model, self.eval_env, self.spec.final_episodes, deterministic=False)
        if isinstance(self.model, QSM) and self.model.policy.best_of_n != PAIRED_BEST_OF_N:
            final[PAIRED_KEY] = self.evaluate_best_of(self.model, PAIRED_BEST_OF_N)
        self._close_segment(steps_before)
        result = {**self.record, "final": final, "finished": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        write_json(result_path(self.out, self.spec), result)
        shutil.rmtree(checkpoint_dir(self.out, self.spec), ignore_errors=True)
        return result


def lock_path(out: pathlib.Path, spec: RunSpec) -> pathlib.Path:
    return out / spec.suite / ".locks" / f"{spec.env_id}__{spec.algo}_seed{spec.seed}.lock"


def run_worker(spec: RunSpec, out: pathlib.Path, device: str, deadline: float | None, progress: Any) -> str:
    """
    Worker process entry point: one run, under its lock.

    :return: One line saying how the run ended
    """
    if deadline is not None and time.time() > deadline:
        return f"{spec.name}: not started, the deadline has passed"
    if _STOP_REQUESTED is not None and _STOP_REQUESTED.is_set():
        return f"{spec.name}: not started, the runner was asked to stop"
    th.set_num_threads(1)
    lock = lock_path(out, spec)
    if not acquire_lock(lock):
        return f"{spec.name}: skipped, another process holds {lock}"
    try:
        # Another invocation may have finished it since this one listed the pending runs
        if result_path(out, spec).is_file():
            return f"{spec.name}: skipped, finished by another process"
        result = Run(spec, out, device, progress).execute(deadline, _STOP_REQUESTED)
    finally:
        lock.unlink(missing_ok=True)
    if result is None:
        return f"{spec.name}: stopped, checkpoint saved"
    returns = result["final"]["deterministic"]["returns"]
    return f"{spec.name}: done, final return {np.mean(returns):.1f} +- {np.std(returns):.1f}"


def plan(suite: Suite, envs: list[str] | None, algos: list[str] | None, seeds: list[int] | None) -> list[RunSpec]:
    """The runs of a suite, optionally restricted to some tasks, algorithms and seeds."""
    unknown = set(envs or ()) - {task.env_id for task in suite.tasks}
    unknown |= set(algos or ()) - set(ALGORITHMS)
    if unknown:
        raise SystemExit(f"Not in suite {suite.name!r}: {sorted(unknown)}")
    specs = []
    for task in suite.tasks:
        for algo in task.algorithms:
            for seed in seeds if seeds is not None else suite.seeds_of(task):
                if (envs is None or task.env_id in envs) and (algos is None or algo in algos):
                    specs.append(spec_of(suite, task, algo, seed))
    return specs


def spec_of(suite: Suite, task: Task, algo: str, seed: int) -> RunSpec:
    return RunSpec(
        suite.name,
        task.env_id,
        algo,
        seed,
        task.budget,
        task.eval_freq,
        suite.eval_episodes,
        suite.final_episodes,
        suite.max_learning_starts,
    )


def pending(specs: list[RunSpec], out: pathlib.Path) -> list[RunSpec]:
    """
    Leave out the finished runs. A result file written with other settings stops the runner (it is never overwritten).
    """
    todo = []
    for spec in specs:
        path = result_path(out, spec)
        if not path.is_file():
            todo.append(spec)
        elif json.loads(path.read_text())["spec"] != dataclasses.asdict(spec):
            raise SystemExit(f"{path} was written with other settings than {spec}: move it away to run it again")
    return todo


def _init_worker(stop_requested: Any) -> None:
    """
    Worker process initializer: Ctrl-C is left to the runner (it reaches every process of the terminal's group), which
    asks the runs to checkpoint and stop through ``stop_requested``.
    """
    global _STOP_REQUESTED
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STOP_REQUESTED = stop_requested


@contextlib.contextmanager
def _stop_on_signals(stop_requested: Any, bar: tqdm) -> Iterator[None]:
    """
    While in the block, SIGINT and SIGTERM set ``stop_requested`` instead of ending the runner: its workers would
    otherwise lose the steps since their last checkpoint (on SIGINT) or go on alone (on SIGTERM to the runner only).
    """
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return

    def request_stop(signum: int, _frame: Any) -> None:
        stop_requested.set()
        bar.write(f"{signal.Signals(signum).name}: every run in progress checkpoints and stops")

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def execute(specs: list[RunSpec], out: pathlib.Path, workers: int, device: str, stop_after: float | None) -> bool:
    """
    Run the specs in worker processes with a progress display.

    :return: Whether every run ended without an error
    """
    deadline = None if stop_after is None else time.time() + stop_after
    total = sum(spec.budget for spec in specs)
    ok = True
    context = multiprocessing.get_context("spawn")
    stop_requested = context.Event()
    with context.Manager() as manager, tqdm(total=total, unit="step", smoothing=0.05) as bar:
        progress = manager.Queue()
        pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(stop_requested,)
        )
        with pool, _stop_on_signals(stop_requested, bar):
            futures = {pool.submit(run_worker, spec, out, device, deadline, progress): spec for spec in specs}
            not_done = set(futures)
            while not_done:
                done, not_done = concurrent.futures.wait(not_done, timeout=1.0)
                while not progress.empty():
                    bar.update(progress.get()[1])
                for future in done:
                    try:
                        bar.write(future.result())
                    except Exception as error:  # a failed run must not stop the others
                        ok = False
                        bar.write(f"{futures[future].name}: FAILED: {error!r}")
    return ok


def _state(suite: Suite, spec: RunSpec, out: pathlib.Path) -> str:
    """:return: How far a pending run is, for ``--list``"""
    if (checkpoint_dir(out, spec) / "progress.json").is_file():
        return "checkpointed"
    if suite.reuses:
        from sb3_qsm.benchmarks.reuse import reusable

        source = reusable(suite, spec, out)
        if source is not None:
            return f"reusable ({source.relative_to(out).as_posix()})"
    return "not started"


def main(argv: list[str] | None = None) -> int:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    :return: The exit status: 0 when every run ended without an error
    """
    parser = command_parser("run", __doc__)
    parser.add_argument("--suite", choices=sorted(SUITES), default="v1")
    parser.add_argument("--quick", action="store_true", help="the 'quick' suite, then the report (a smoke test)")
    parser.add_argument("--envs", nargs="+", help="only these tasks")
    parser.add_argument("--algos", nargs="+", help=f"only these algorithms ({', '.join(ALGORITHMS)})")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds")
    parser.add_argument("--workers", type=int, default=2, help="parallel worker processes (one torch thread each)")
    parser.add_argument("--device", default="cpu", help="torch device of the networks")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    parser.add_argument("--stop-after", type=float, help="seconds after which every run checkpoints and stops")
    parser.add_argument("--list", action="store_true", help="print the runs and their state, run nothing")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run on Ray: a local instance, or the cluster at ADDRESS (auto, ray://<head>:10001); --workers is then "
        "Ray's to decide (one CPU per run). See sb3_qsm.benchmarks.distributed",
    )
    args = parser.parse_args(argv)
    suite = SUITES["quick" if args.quick else args.suite]
    specs = plan(suite, args.envs, args.algos, args.seeds)
    todo = pending(specs, args.out)
    if args.list:
        print(f"Suite {suite.name}: {len(specs)} runs, {len(specs) - len(todo)} finished, {len(todo)} to run")
        for spec in todo:
            print(f"  {spec.name} ({spec.budget} steps): {_state(suite, spec, args.out)}")
        return 0
    if suite.reuses:
        from sb3_qsm.benchmarks.reuse import reuse

        for line in reuse(suite, todo, args.out):
            print(line)
        todo = pending(specs, args.out)
    print(f"Suite {suite.name}: {len(specs)} runs, {len(specs) - len(todo)} finished, {len(todo)} to run")
    if not todo:
        ok = True
    elif args.ray is not None:
        from sb3_qsm.benchmarks.distributed import execute_on_ray

        ok = execute_on_ray(todo, args.out, args.ray, args.device, args.stop_after)
    else:
        ok = execute(todo, args.out, args.workers, args.device, args.stop_after)
    if args.quick and ok and not pending(specs, args.out):
        from sb3_qsm.benchmarks.aggregate import write_report

        write_report(args.out / suite.name, args.out / suite.name / "report")
        print(f"Report written to {args.out / suite.name / 'report'}")
    return 0 if ok else 1

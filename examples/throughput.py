"""
Throughput check (not a test): QSM's training speed and single-observation ``predict`` latency, next to SB3 SAC's,
measured in the same run, on the same environment and with the same network sizes.

    python examples/throughput.py --env HalfCheetah-v5 --steps 3000 --net-arch 256 256 --out benchmarks/throughput
    python examples/throughput.py --device cuda ...   # on a GPU (the file name gets a _cuda suffix)

Training throughput counts environment steps per second while learning (one gradient step per environment step,
after a warm-up of ``--learning-starts`` random steps that is not timed). The results go to a JSON file.
"""

import argparse
import json
import pathlib
import platform
import statistics
import time

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

from sb3_qsm import QSM, __version__


class StepTimer(BaseCallback):
    """Records the wall-clock time at which the learning phase starts (first step after ``learning_starts``)."""

    def __init__(self, learning_starts: int):
        super().__init__()
        self.learning_starts = learning_starts
        self.start: float | None = None

    def _on_step(self) -> bool:
        if self.start is None and self.num_timesteps > self.learning_starts:
            self.start = time.perf_counter()
        return True


def measure(
    algo: type[SAC] | type[QSM], env_id: str, steps: int, learning_starts: int, net_arch: list[int], device: str
) -> dict:
    """
    Time training and predict for one algorithm.

    :param algo: ``SAC`` or ``QSM``
    :param env_id: Gymnasium environment id
    :param steps: Timed training steps (after the warm-up)
    :param learning_starts: Untimed random warm-up steps
    :param net_arch: Hidden layer sizes of every network
    :param device: Torch device of the networks
    :return: The measurements
    """
    model = algo(
        "MlpPolicy", env_id, learning_starts=learning_starts, seed=0, policy_kwargs=dict(net_arch=net_arch), device=device
    )
    timer = StepTimer(learning_starts)
    model.learn(learning_starts + steps, callback=timer)
    assert timer.start is not None
    train_seconds = time.perf_counter() - timer.start
    obs = gym.make(env_id).observation_space.sample()
    latencies = {}
    for deterministic in (True, False):
        for _ in range(20):  # warm-up
            model.predict(obs, deterministic=deterministic)
        samples = []
        for _ in range(300):
            start = time.perf_counter()
            model.predict(obs, deterministic=deterministic)
            samples.append(time.perf_counter() - start)
        latencies["deterministic" if deterministic else "stochastic"] = statistics.median(samples) * 1e3
    return {
        "algo": algo.__name__,
        "train_steps_per_second": (steps - 1) / train_seconds,
        "predict_ms_median": latencies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--net-arch", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/throughput"))
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    results = [measure(algo, args.env, args.steps, args.learning_starts, args.net_arch, args.device) for algo in (SAC, QSM)]
    sac, qsm = results
    record = {
        "env": args.env,
        "net_arch": args.net_arch,
        "timed_steps": args.steps,
        "results": results,
        "qsm_over_sac_throughput": qsm["train_steps_per_second"] / sac["train_steps_per_second"],
        "torch_threads": args.threads,
        "device": args.device if args.device == "cpu" else th.cuda.get_device_name(args.device),
        "versions": {"sb3_qsm": __version__, "stable_baselines3": stable_baselines3.__version__, "torch": th.__version__},
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": th.get_num_threads()},
        "numpy": np.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device}"
    path = args.out / f"{args.env}_{'x'.join(map(str, args.net_arch))}{suffix}.json"
    path.write_text(json.dumps(record, indent=2))
    for result in results:
        print(
            f"{result['algo']}: {result['train_steps_per_second']:.1f} steps/s, predict "
            f"{result['predict_ms_median']['deterministic']:.2f} ms (deterministic), "
            f"{result['predict_ms_median']['stochastic']:.2f} ms (stochastic)"
        )
    print(f"QSM / SAC throughput: {record['qsm_over_sac_throughput']:.2f}")


if __name__ == "__main__":
    main()

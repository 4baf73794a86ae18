"""
Latency of an exported sampler next to ``predict``'s: ``python -m sb3_qsm.benchmarks export-latency``.

For each ``best_of_n``, a QSM model at its defaults on the task (untrained: the latency depends on the networks'
sizes, not on their weights) is exported deterministically to ONNX and to TorchScript (``sb3_qsm.export``); then
``predict(deterministic=True)``, the ONNX model in ONNX Runtime and the TorchScript module each act on one
observation (median of 300 calls) and on a batch of 256 (median of 50), all on one CPU thread. The records go to
``<out>/<env>.json``; the table is printed.
"""

import argparse
import json
import pathlib
import platform
import tempfile
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from sb3_qsm import QSM
from sb3_qsm.benchmarks.work import median_seconds
from sb3_qsm.export import export_onnx, export_torchscript

SINGLE_CALLS = 300
BATCH_CALLS = 50
BATCH_SIZE = 256


def measure(env_id: str, best_of_n: int) -> dict[str, Any]:
    """
    :param env_id: The task, for the networks' input and output sizes
    :param best_of_n: The policy's ``best_of_n``
    :return: Median latencies in milliseconds, by runtime (``predict``, ``onnxruntime``, ``torchscript``) and batch
    """
    import onnxruntime

    th.set_num_threads(1)
    model = QSM("MlpPolicy", env_id, seed=0, buffer_size=1, batch_size=1, policy_kwargs=dict(best_of_n=best_of_n))
    space = gym.make(env_id).observation_space
    space.seed(0)
    single = np.stack([space.sample()])
    batch = np.stack([space.sample() for _ in range(BATCH_SIZE)])
    with tempfile.TemporaryDirectory() as folder:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(export_onnx(model, pathlib.Path(folder) / "policy.onnx")), options, providers=["CPUExecutionProvider"]
        )
        scripted = th.jit.load(str(export_torchscript(model, pathlib.Path(folder) / "policy.pt")))
    runtimes = {
        "predict": lambda obs: model.predict(obs, deterministic=True),
        "onnxruntime": lambda obs: session.run(None, {"observation": obs}),
        "torchscript": lambda obs: scripted(th.as_tensor(obs)),
    }
    record: dict[str, Any] = {"env_id": env_id, "best_of_n": best_of_n}
    with th.no_grad():
        for name, run in runtimes.items():
            record[f"{name}_ms"] = median_seconds(lambda run=run: run(single), SINGLE_CALLS) * 1e3
            record[f"{name}_batch_ms"] = median_seconds(lambda run=run: run(batch), BATCH_CALLS) * 1e3
    return record


def table(records: list[dict[str, Any]]) -> str:
    """:return: The records as a markdown table"""
    lines = [
        "| best_of_n | predict, 1 obs | ONNX Runtime | TorchScript | predict, 256 obs | ONNX Runtime | TorchScript |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        lines.append(
            f"| {r['best_of_n']} | {r['predict_ms']:.2f} ms | {r['onnxruntime_ms']:.2f} ms | {r['torchscript_ms']:.2f} ms "
            f"| {r['predict_batch_ms']:.1f} ms | {r['onnxruntime_batch_ms']:.1f} ms | {r['torchscript_batch_ms']:.1f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sb3_qsm.benchmarks export-latency", description=__doc__)
    parser.add_argument("--env", default="HalfCheetah-v5", help="task (default: HalfCheetah-v5)")
    parser.add_argument("--best-of-n", type=int, nargs="+", default=[1, 32], help="best_of_n values (default: 1 32)")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="folder for <env>.json (default: print only)")
    args = parser.parse_args(argv)
    records = [measure(args.env, n) for n in args.best_of_n]
    print(table(records))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        machine = {"processor": platform.processor() or platform.machine(), "torch": th.__version__}
        path = args.out / f"{args.env}.json"
        path.write_text(json.dumps({"machine": machine, "records": records}, indent=1) + "\n")
        print(f"written to {path}")
    return 0

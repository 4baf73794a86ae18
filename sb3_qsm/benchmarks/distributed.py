"""
Run a suite's runs on Ray (the ``distributed`` extra): each run becomes a Ray task of one CPU that runs the runner's
own worker (``runner.run_worker``), so the runner's guarantees hold as they do with local processes. A run whose
result file exists is never started, and a result file is never overwritten; a run takes its lock file first, so two
invocations never run the same run at once; a run that stops (deadline, lost worker) resumes from its last checkpoint,
and Ray retries a task whose worker was lost.

``--ray`` alone starts a local Ray instance, with as many CPUs as the machine has; ``--ray ADDRESS`` joins a running
cluster (``auto``, or ``ray://<head>:10001``). On a cluster, ``--out`` must be a folder every node sees (a shared
filesystem), sb3-qsm installed on every node, and the lock files stop a second invocation only across the processes
of one host: a lock left by a lost node is removed by hand (``<out>/<suite>/.locks/``).
"""

import pathlib
import time
from typing import Any

from tqdm import tqdm

from sb3_qsm.benchmarks.runner import RunSpec, run_worker

# A task that fails because its worker or node was lost is retried this many times, from its checkpoint
MAX_RETRIES = 2
# The cluster address that starts a local instance
LOCAL = "local"


def execute_on_ray(specs: list[RunSpec], out: pathlib.Path, address: str, device: str, stop_after: float | None) -> bool:
    """
    Run the specs as Ray tasks of one CPU each, with a progress display over the finished runs.

    :param specs: The runs to run (the pending ones)
    :param out: Root folder of the raw results (made absolute: Ray's workers do not run in this directory)
    :param address: ``"local"`` to start a local Ray instance, otherwise the address of a running cluster
    :param device: Torch device of the networks
    :param stop_after: Seconds after which every run checkpoints and stops
    :return: Whether every run ended without an error
    """
    import ray

    deadline = None if stop_after is None else time.time() + stop_after
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=None if address == LOCAL else address, include_dashboard=False, log_to_driver=False)
    try:
        remote_worker = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(run_worker)
        refs: dict[Any, RunSpec] = {remote_worker.remote(spec, out.resolve(), device, deadline, None): spec for spec in specs}
        return _collect(refs)
    finally:
        if started_here:
            ray.shutdown()


def _collect(refs: dict[Any, RunSpec]) -> bool:
    """
    :param refs: Ray object references of the tasks, and their specs
    :return: Whether every task ended without an error
    """
    import ray

    ok = True
    pending = list(refs)
    with tqdm(total=sum(spec.budget for spec in refs.values()), unit="step") as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            spec = refs[done[0]]
            try:
                bar.write(ray.get(done[0]))
            except Exception as error:  # a failed run must not stop the others
                ok = False
                bar.write(f"{spec.name}: FAILED: {error!r}")
            bar.update(spec.budget)
    return ok

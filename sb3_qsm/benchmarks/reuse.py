"""
Results a suite takes over from an earlier one (``Suite.reuses``): a run of the later suite whose earlier twin (same
task, budget, evaluations and seed) ran with the settings the later suite's row has today is not run again; its
result file is copied into the later suite's folder, with the spec renamed to the later suite and ``reused_from``
naming the file it came from. The earlier file stays as it is, and a result file of the later suite is never
overwritten.

Whether the settings are the same is decided as for the committed results (``settings.settings_match``), against the
model the runner builds for the later suite's row (its ``qsm_defaults`` included), so a QSM row whose defaults have
changed since is run again.
"""

import dataclasses
import json
import pathlib
from typing import Any

from sb3_qsm.benchmarks.evaluation import write_json
from sb3_qsm.benchmarks.runner import RunSpec, result_path
from sb3_qsm.benchmarks.settings import make_model, settings_match
from sb3_qsm.benchmarks.suite import Suite, make_env


def reusable(suite: Suite, spec: RunSpec, out: pathlib.Path) -> pathlib.Path | None:
    """
    :param suite: The suite the run belongs to
    :param spec: One of its runs
    :param out: The folder of the raw results
    :return: The earliest result of ``suite.reuses`` that is the same run with the same settings, if any
    """
    for earlier in suite.reuses:
        earlier_spec = dataclasses.replace(spec, suite=earlier)
        path = result_path(out, earlier_spec)
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        if record["spec"] != dataclasses.asdict(earlier_spec):
            continue
        model, settings = make_model(
            spec.algo,
            make_env(spec.env_id),
            spec.env_id,
            spec.seed,
            spec.budget,
            "cpu",
            spec.max_learning_starts,
            suite.qsm_defaults,
        )
        model.env.close()  # type: ignore[union-attr]
        if settings_match(record["settings"], settings):
            return path
    return None


def reuse(suite: Suite, specs: list[RunSpec], out: pathlib.Path) -> list[str]:
    """
    Copy the reusable results of runs that have none yet into the suite's folder.

    :param suite: The suite the runs belong to
    :param specs: Its runs still to run
    :param out: The folder of the raw results
    :return: One line per copied result
    """
    lines = []
    for spec in specs:
        target = result_path(out, spec)
        source = None if target.exists() else reusable(suite, spec, out)
        if source is None:
            continue
        record: dict[str, Any] = json.loads(source.read_text())
        record["spec"] = dataclasses.asdict(spec)
        record["reused_from"] = source.relative_to(out).as_posix()
        write_json(target, record)
        lines.append(f"{spec.name}: reused {record['reused_from']} (same run, same settings)")
    return lines

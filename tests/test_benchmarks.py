"""The benchmarks package (``python -m sb3_qsm.benchmarks``): a smoke test of the whole pipeline (the quick suite),
resuming, idempotence, the RL Zoo hyperparameters, the statistics, the figures and the cost figures."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

from sb3_qsm import QSM
from sb3_qsm.benchmarks import __main__ as cli
from sb3_qsm.benchmarks import aggregate, algorithms, locks, reuse, suite
from sb3_qsm.benchmarks import runner as run
from sb3_qsm.benchmarks.settings import describe, make_model, settings_match

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _command(command: str, *args: str, cwd: pathlib.Path, timeout: int = 600) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "sb3_qsm.benchmarks", command, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_command_line_lists_and_dispatches_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in cli.COMMANDS)
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    # Every command's module and function exist and take the command's arguments
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0, name
        assert f"python -m sb3_qsm.benchmarks {name}" in capsys.readouterr().out


def test_quick_suite_end_to_end(tmp_path: pathlib.Path) -> None:
    out = _command("run", "--quick", "--workers", "2", "--out", str(tmp_path), cwd=tmp_path)
    quick = suite.SUITES["quick"]
    algos = quick.tasks[0].algorithms
    for algo in algos:
        record = json.loads((tmp_path / "quick" / "Pendulum-v1" / f"{algo}_seed0.json").read_text())
        steps = [evaluation["timesteps"] for evaluation in record["evaluations"]]
        assert steps == [0, 200, 400]
        assert all(len(evaluation["returns"]) == quick.eval_episodes for evaluation in record["evaluations"])
        assert len(record["final"]["deterministic"]["returns"]) == quick.final_episodes
        assert ("stochastic" in record["final"]) == algorithms.ALGORITHMS[algo].samples
        # QSM's final evaluation is repeated with the best of 32 sampled actions, on the same model
        paired = record["final"].get(run.PAIRED_KEY)
        assert (paired is not None) == (algorithms.ALGORITHMS[algo].algo_class is QSM)
        assert paired is None or len(paired["returns"]) == quick.final_episodes
        assert record["settings"]["runner_overrides"]["buffer_size"] == "400"
        # Pendulum's episodes last 200 steps: two training episodes, ending at steps 200 and 400
        assert [(t, n) for t, _, n in record["training_episodes"]] == [(200, 200), (400, 200)]
    report = tmp_path / "quick" / "report"
    table = (report / "results.md").read_text()
    assert all(aggregate.LABELS[algo] in table for algo in algos)
    # One seed: no bootstrap interval, and no standard deviation over seeds
    assert "nan" not in table and "(one run: no interval)" in table and "+-" not in table
    assert (report / "learning_curves.png").stat().st_size > 10_000
    assert f"{len(algos)} runs, 0 finished, {len(algos)} to run" in out
    # A second invocation finds every run finished and runs nothing
    again = _command("run", "--quick", "--out", str(tmp_path), cwd=tmp_path)
    assert f"{len(algos)} finished, 0 to run" in again
    checkpoints = tmp_path / "quick" / ".checkpoints" / "Pendulum-v1"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())  # finished runs leave no checkpoint


def test_quick_suite_on_a_local_ray_instance(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("ray")
    algos = suite.SUITES["quick"].tasks[0].algorithms
    # One run finished beforehand, by the local runner: Ray must leave it as it is
    _command("run", "--quick", "--algos", "sac", "--out", "out", cwd=tmp_path)
    finished = tmp_path / "out" / "quick" / "Pendulum-v1" / "sac_seed0.json"
    before = finished.read_bytes(), finished.stat().st_mtime_ns
    # A relative --out: Ray's workers, which run elsewhere, write where the runner was told
    out = _command("run", "--quick", "--ray", "--out", "out", cwd=tmp_path)
    assert f"{len(algos)} runs, 1 finished, {len(algos) - 1} to run" in out
    assert (finished.read_bytes(), finished.stat().st_mtime_ns) == before
    for algo in algos:
        record = json.loads((tmp_path / "out" / "quick" / "Pendulum-v1" / f"{algo}_seed0.json").read_text())
        assert [evaluation["timesteps"] for evaluation in record["evaluations"]] == [0, 200, 400]
    assert (tmp_path / "out" / "quick" / "report" / "results.md").is_file()


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path: pathlib.Path) -> None:
    quick = suite.SUITES["quick"]
    spec = run.spec_of(quick, quick.tasks[0], "qsm", seed=0)
    first = run.Run(spec, tmp_path, device="cpu")
    assert first.execute(deadline=time.time()) is None  # the deadline has passed: stop at the first step
    progress = json.loads((run.checkpoint_dir(tmp_path, spec) / "progress.json").read_text())
    assert [evaluation["timesteps"] for evaluation in progress["evaluations"]] == [0]
    assert not run.result_path(tmp_path, spec).exists()

    second = run.Run(spec, tmp_path, device="cpu")
    assert second.model.num_timesteps == first.model.num_timesteps > 0
    assert second.model.replay_buffer.size() == first.model.replay_buffer.size()  # type: ignore[union-attr]
    result = second.execute(deadline=None)
    assert result is not None
    assert [evaluation["timesteps"] for evaluation in result["evaluations"]] == [0, 200, 400]
    assert sum(segment["steps"] for segment in result["segments"]) == spec.budget
    assert len(result["segments"]) == 2
    assert not run.checkpoint_dir(tmp_path, spec).exists()


def test_result_written_with_other_settings_is_never_overwritten(tmp_path: pathlib.Path) -> None:
    quick = suite.SUITES["quick"]
    spec = run.spec_of(quick, quick.tasks[0], "sac", seed=0)
    path = run.result_path(tmp_path, spec)
    other = {**run.dataclasses.asdict(spec), "budget": spec.budget * 2}
    run.write_json(path, {"spec": other, "final": {}})
    before = path.read_text()
    with pytest.raises(SystemExit, match="other settings"):
        run.pending([spec], tmp_path)
    assert path.read_text() == before


def test_lock_is_exclusive_and_taken_over_when_stale(tmp_path: pathlib.Path) -> None:
    lock = tmp_path / "a.lock"
    assert locks.acquire_lock(lock)
    assert not locks.acquire_lock(lock)  # held by this (living) process
    lock.write_text(f"{locks.socket.gethostname()} 999999999")  # a process that does not exist
    assert locks.acquire_lock(lock)


# A runner, in a process of its own, of the one run given as JSON
_RUNNER = """
import json, pathlib, sys
from sb3_qsm.benchmarks import runner
spec = runner.RunSpec(**json.loads(sys.argv[2]))
sys.exit(0 if runner.execute([spec], pathlib.Path(sys.argv[1]), 1, "cpu", None) else 1)
"""


@pytest.mark.parametrize("signum, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["ctrl-c", "sigterm"])
def test_a_signalled_runner_checkpoints_its_runs_and_leaves_no_worker(
    tmp_path: pathlib.Path, signum: int, to_group: bool
) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) or SIGTERM to the runner alone: the run in progress
    checkpoints and stops, and the runner ends only after its worker (which would otherwise go on alone, holding the
    run's lock)."""
    quick = suite.SUITES["quick"]
    # One long run (Pendulum-v1, SAC), with a checkpoint every 100 steps
    spec = run.dataclasses.replace(run.spec_of(quick, quick.tasks[0], "sac", 0), budget=1_000_000, eval_freq=100)
    progress = run.checkpoint_dir(tmp_path, spec) / "progress.json"
    runner = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, str(tmp_path), json.dumps(run.dataclasses.asdict(spec))],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while not progress.is_file() and runner.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert progress.is_file(), "no checkpoint was written"
        steps_at_first_checkpoint = json.loads(progress.read_text())["evaluations"][-1]["timesteps"]
        if to_group:
            os.killpg(runner.pid, signum)
        else:
            runner.send_signal(signum)
        output, _ = runner.communicate(timeout=300)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    assert runner.returncode == 0, output
    assert f"{spec.name}: stopped, checkpoint saved" in output
    assert json.loads(progress.read_text())["segments"][-1]["steps"] >= steps_at_first_checkpoint
    assert not run.result_path(tmp_path, spec).exists()
    assert not run.lock_path(tmp_path, spec).exists()  # the worker ended before the runner


def test_worker_skips_a_run_finished_after_the_invocation_listed_it(tmp_path: pathlib.Path) -> None:
    """Two invocations share a run list: when one finishes a run, the other's worker must not run it again (it would
    overwrite the result with a fresh run)."""
    quick = suite.SUITES["quick"]
    spec = run.spec_of(quick, quick.tasks[0], "td3", seed=0)
    assert run.pending([spec], tmp_path) == [spec]  # listed as pending by this invocation ...
    path = run.result_path(tmp_path, spec)
    run.write_json(path, {"spec": run.dataclasses.asdict(spec), "final": {}})  # ... then finished by another one
    before = path.read_text()
    assert run.run_worker(spec, tmp_path, "cpu", None, None) == f"{spec.name}: skipped, finished by another process"
    assert path.read_text() == before
    assert not run.checkpoint_dir(tmp_path, spec).exists() and not run.lock_path(tmp_path, spec).exists()


def test_plan_rejects_names_outside_the_suite() -> None:
    with pytest.raises(SystemExit, match="Walker2d-v5"):
        run.plan(suite.SUITES["v1"], ["Walker2d-v5"], None, None)
    specs = run.plan(suite.SUITES["v1"], ["Hopper-v5"], ["qsm-paper"], [0, 1])
    assert [(s.env_id, s.algo, s.seed, s.budget, s.eval_freq) for s in specs] == [
        ("Hopper-v5", "qsm-paper", 0, 100_000, 10_000),
        ("Hopper-v5", "qsm-paper", 1, 100_000, 10_000),
    ]


def test_suite_v1_covers_the_issue() -> None:
    v1 = suite.SUITES["v1"]
    budgets = {task.env_id: task.budget for task in v1.tasks}
    assert budgets == {
        "Pendulum-v1": 20_000,
        "MountainCarContinuous-v0": 50_000,
        "InvertedDoublePendulum-v5": 50_000,
        "Hopper-v5": 100_000,
        "HalfCheetah-v5": 100_000,
    }
    assert len(v1.seeds) >= 3 and v1.final_episodes == 10
    for task in v1.tasks:
        assert {"qsm", "sac", "td3"} <= set(task.algorithms)
    assert {task.env_id for task in v1.tasks if "qsm-paper" in task.algorithms} >= {"Pendulum-v1", "Hopper-v5"}
    # MountainCar measures exploration: at least 5 seeds, and SAC/TD3 with SB3's defaults beside the zoo's
    (mountain_car,) = [task for task in v1.tasks if task.env_id == "MountainCarContinuous-v0"]
    assert len(v1.seeds_of(mountain_car)) >= 5 and {"sac-sb3", "td3-sb3"} <= set(mountain_car.algorithms)
    assert mountain_car.success_return == 0.0
    planned = run.plan(v1, ["MountainCarContinuous-v0"], ["qsm"], None)
    assert [spec.seed for spec in planned] == list(v1.seeds_of(mountain_car))


def test_zoo_hyperparameters_are_read_by_the_zoo_itself(tmp_path: pathlib.Path) -> None:
    import gymnasium as gym
    from stable_baselines3.common.utils import ConstantSchedule

    pendulum, mountain_car = gym.make("Pendulum-v1"), gym.make("MountainCarContinuous-v0")
    assert algorithms.zoo_entry_id("td3", "Pendulum-v1") == "Pendulum-v1"
    hyperparams = algorithms.zoo_hyperparams("td3", "Pendulum-v1", pendulum, budget=500)
    assert hyperparams["policy_kwargs"] == {"net_arch": [400, 300]}
    assert isinstance(hyperparams["action_noise"], NormalActionNoise)
    np.testing.assert_allclose(hyperparams["action_noise"]._sigma, [0.1])
    assert "n_timesteps" not in hyperparams and "noise_type" not in hyperparams
    # The zoo turns a number into a constant schedule; the records describe it as the number
    assert isinstance(hyperparams["learning_rate"], ConstantSchedule)
    assert describe(hyperparams)["learning_rate"] == "0.001"
    # MountainCarContinuous: Ornstein-Uhlenbeck noise for TD3, gSDE for SAC
    td3 = algorithms.zoo_hyperparams("td3", "MountainCarContinuous-v0", mountain_car, budget=500)
    assert isinstance(td3["action_noise"], OrnsteinUhlenbeckActionNoise)
    assert algorithms.zoo_hyperparams("sac", "MountainCarContinuous-v0", mountain_car, budget=500)["use_sde"]
    # The zoo tunes MuJoCo tasks under their -v4 ids; InvertedDoublePendulum has no MuJoCo entry at all (the zoo's
    # "default" entry is not a tuning for it)
    assert algorithms.zoo_entry_id("sac", "Hopper-v5") == "Hopper-v4"
    assert algorithms.zoo_entry_id("sac", "InvertedDoublePendulum-v5") is None
    # A zoo schedule string ("lin_<value>") becomes the zoo's own linear schedule
    config = tmp_path / "sac.yml"
    config.write_text("Pendulum-v1:\n  n_timesteps: 100\n  policy: MlpPolicy\n  learning_rate: lin_7.3e-4\n")
    schedule = algorithms.zoo_hyperparams("sac", "Pendulum-v1", pendulum, 500, config=config)["learning_rate"]
    assert schedule(1.0) == pytest.approx(7.3e-4) and schedule(0.5) == pytest.approx(3.65e-4)
    config.write_text("Pendulum-v1:\n  n_timesteps: 100\n  policy: MlpPolicy\n  normalize: true\n")
    with pytest.raises(NotImplementedError, match="normalize"):
        algorithms.zoo_hyperparams("sac", "Pendulum-v1", pendulum, 500, config=config)


def test_one_table_of_algorithms() -> None:
    """Every algorithm a suite runs is in the table, with a label of its own and a class that loads its checkpoints."""
    from stable_baselines3.common.base_class import BaseAlgorithm

    planned = {algo for s in suite.SUITES.values() for task in s.tasks for algo in task.algorithms}
    assert planned <= set(algorithms.ALGORITHMS)
    labels = [algorithm.label for algorithm in algorithms.ALGORITHMS.values()]
    assert len(set(labels)) == len(labels) and aggregate.LABELS == {a.name: a.label for a in algorithms.ALGORITHMS.values()}
    assert all(issubclass(algorithm.algo_class, BaseAlgorithm) for algorithm in algorithms.ALGORITHMS.values())
    assert {name for name, algorithm in algorithms.ALGORITHMS.items() if not algorithm.samples} == {"td3", "td3-sb3"}


def test_make_model_caps_buffer_and_keeps_settings() -> None:
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    model, settings = make_model("td3", env, "Pendulum-v1", seed=0, budget=500, device="cpu")
    assert model.buffer_size == 500 and model.learning_starts == 10_000 and model.gamma == 0.98
    assert settings["hyperparams_source"] == "rl_zoo3 td3.yml: Pendulum-v1"
    effective = settings["effective_hyperparams"]
    assert effective["gamma"] == "0.98" and effective["buffer_size"] == "500"
    assert "NormalActionNoise" in effective["action_noise"]
    paper, _ = make_model("qsm-paper", env, "Pendulum-v1", seed=0, budget=500, device="cpu", max_learning_starts=50)
    assert paper.learning_starts == 50 and paper.score_scale == 50.0 and paper.action_noise is not None
    with pytest.raises(ValueError, match="Unknown algorithm"):
        make_model("ppo", env, "Pendulum-v1", seed=0, budget=500, device="cpu")


def test_gradient_row_builds_the_earlier_defaults_and_leaves_them_untouched() -> None:
    """The gradient-target row gets the values every changed default had before, every other argument at QSM's
    default, and building it leaves the shared settings untouched."""
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    model, settings = make_model(
        "qsm-gradient", env, "Pendulum-v1", seed=0, budget=500, device="cpu", qsm_defaults=suite.SUITES["v1"].qsm_defaults
    )
    assert (model.score_target, model.score_scale) == ("gradient", 50.0)
    assert (model.n_diffusion_steps, model.beta_schedule) == (5, "vp")
    assert model.policy_kwargs["action_fan_in_init"] is False and model.learning_starts == 100
    assert settings["hyperparams_source"].startswith("suite.GRADIENT_HYPERPARAMS")
    assert algorithms.GRADIENT_HYPERPARAMS["policy_kwargs"] == {"action_fan_in_init": False}
    assert algorithms.ALGORITHMS["qsm-gradient"].samples
    # Every argument it sets differs from the current default, or the row would measure nothing new
    defaults, _ = make_model("qsm", env, "Pendulum-v1", seed=0, budget=500, device="cpu")
    for name, value in algorithms.GRADIENT_HYPERPARAMS.items():
        if name != "policy_kwargs":
            assert getattr(defaults, name) != value, name
    assert defaults.policy.actor.action_fan_in_init is True


@pytest.mark.parametrize("suite_name", ["v1", "v2"])
def test_committed_results_match_what_the_runner_builds_today(suite_name: str) -> None:
    """Every committed raw result of suites v1 and v2 was run with the settings its algorithm name stands for now: if
    a default of QSM, SB3 or the RL Zoo changes, the rows labelled with that name must be rerun or renamed, never
    pooled."""
    import gymnasium as gym

    records: dict[tuple[str, str], list[dict]] = {}
    for path in sorted((RESULTS / suite_name).glob("*/*_seed*.json")):
        record = json.loads(path.read_text())
        assert record["spec"]["suite"] == suite_name, path
        records.setdefault((record["spec"]["env_id"], record["spec"]["algo"]), []).append(record)
    assert len(records) >= {"v1": 15, "v2": 1}[suite_name], f"suite {suite_name}'s raw results are missing"
    for (env_id, algo), runs in records.items():
        spec = runs[0]["spec"]
        _, settings = make_model(
            algo,
            gym.make(env_id),
            env_id,
            0,
            spec["budget"],
            "cpu",
            max_learning_starts=spec["max_learning_starts"],
            qsm_defaults=suite.SUITES[suite_name].qsm_defaults,
        )
        for record in runs:
            # A preset that now pins an argument added since, at the value the record ran with, is the same preset
            assert settings_match(record["settings"], settings), (env_id, algo, record["spec"]["seed"])


def _reused_from_quick(tmp_path: pathlib.Path, algo: str, settings: dict) -> tuple[run.RunSpec, list[str]]:
    """A result of the quick suite with these settings, then a later suite that reuses the quick one."""
    quick = suite.SUITES["quick"]
    earlier = run.spec_of(quick, quick.tasks[0], algo, seed=0)
    run.write_json(run.result_path(tmp_path, earlier), {"spec": run.dataclasses.asdict(earlier), "settings": settings})
    later = run.dataclasses.replace(quick, name="later", reuses=("quick",))
    spec = run.spec_of(later, later.tasks[0], algo, seed=0)
    return spec, reuse.reuse(later, [spec], tmp_path)


def _quick_settings(algo: str) -> dict:
    import gymnasium as gym

    quick = suite.SUITES["quick"]
    task = quick.tasks[0]
    _, settings = make_model(algo, gym.make(task.env_id), task.env_id, 0, task.budget, "cpu", quick.max_learning_starts)
    return settings


def test_later_suite_reuses_a_result_with_the_same_settings(tmp_path: pathlib.Path) -> None:
    spec, lines = _reused_from_quick(tmp_path, "sac", _quick_settings("sac"))
    assert lines == ["Pendulum-v1/sac_seed0: reused quick/Pendulum-v1/sac_seed0.json (same run, same settings)"]
    copied = json.loads(run.result_path(tmp_path, spec).read_text())
    assert copied["spec"] == run.dataclasses.asdict(spec) and copied["reused_from"] == "quick/Pendulum-v1/sac_seed0.json"
    assert run.pending([spec], tmp_path) == []
    # The earlier file is left as it was, and a second pass copies nothing
    assert json.loads((tmp_path / "quick" / "Pendulum-v1" / "sac_seed0.json").read_text())["spec"]["suite"] == "quick"
    assert reuse.reuse(run.dataclasses.replace(suite.SUITES["quick"], name="later", reuses=("quick",)), [spec], tmp_path) == []


def test_later_suite_runs_again_what_ran_with_other_settings(tmp_path: pathlib.Path) -> None:
    settings = _quick_settings("td3")
    changed = {**settings, "hyperparams": {**settings["hyperparams"], "learning_rate": "0.5"}}
    spec, lines = _reused_from_quick(tmp_path, "td3", changed)
    assert lines == [] and run.pending([spec], tmp_path) == [spec]
    # Other settings in the effective hyperparameters only (a default that changed) count too
    effective = {**settings["effective_hyperparams"], "gamma": "0.5"}
    spec, lines = _reused_from_quick(tmp_path, "td3", {**settings, "effective_hyperparams": effective})
    assert lines == []


def test_sb3_default_baselines_ignore_the_zoo() -> None:
    import gymnasium as gym

    env = gym.make("MountainCarContinuous-v0")
    td3, settings = make_model("td3-sb3", env, "MountainCarContinuous-v0", seed=0, budget=500, device="cpu")
    assert settings["hyperparams_source"] == "SB3 defaults" and settings["hyperparams"] == {}
    assert td3.action_noise is None and td3.learning_rate == 1e-3 and td3.buffer_size == 500
    sac, _ = make_model("sac-sb3", env, "MountainCarContinuous-v0", seed=0, budget=500, device="cpu")
    assert not sac.use_sde and sac.gamma == 0.99
    # The zoo's entry is reported as the zoo has it, not as SB3 rewrites the policy_kwargs it is given
    _, zoo = make_model("sac", env, "MountainCarContinuous-v0", seed=0, budget=500, device="cpu")
    assert "use_sde" not in zoo["hyperparams"]["policy_kwargs"]
    # A zoo algorithm on a task the zoo has no entry for runs with SB3's defaults, and the results table says so
    _, no_entry = make_model("sac", gym.make("Pendulum-v1"), "NoZooEntry-v0", seed=0, budget=500, device="cpu")
    assert aggregate.row_label("sac", no_entry) == "SAC (SB3 defaults: no RL Zoo entry)"
    assert aggregate.row_label("sac", zoo) == "SAC (RL Zoo)"


def _fake_run(algo: str, seed: int, curve: list[float], final: list[float]) -> dict:
    steps = np.linspace(0, 100, len(curve)).astype(int).tolist()
    return {
        "spec": {"env_id": "Task-v0", "algo": algo, "seed": seed, "budget": 100},
        "settings": {"hyperparams_source": "test"},
        "evaluations": [{"timesteps": t, "returns": [r, r]} for t, r in zip(steps, curve, strict=True)],
        "final": {"deterministic": {"returns": final}},
        "segments": [],
    }


def test_results_of_a_task_whose_id_holds_a_folder_are_aggregated(tmp_path: pathlib.Path) -> None:
    """A DeepMind Control id (``dm_control/walker-walk-v0``) puts its result files a folder deeper; the checkpoints'
    progress files (hidden folders) are not results."""
    dmc = suite.SUITES["dmc"]
    specs = [run.spec_of(dmc, dmc.tasks[0], algo, 0) for algo in ("qsm", "sac")]
    for spec, final in zip(specs, ([500.0], [400.0]), strict=True):
        record = _fake_run(spec.algo, 0, [0.0, final[0]], final)
        record["spec"] = run.dataclasses.asdict(spec)
        run.write_json(run.result_path(tmp_path, spec), record)
    checkpoint = {**record, "spec": run.dataclasses.asdict(specs[0])}
    run.write_json(run.checkpoint_dir(tmp_path, specs[0]) / "progress.json", checkpoint)
    runs = aggregate.load_runs(tmp_path / "dmc")
    assert sorted((r["spec"]["env_id"], r["spec"]["algo"]) for r in runs) == [
        ("dm_control/walker-walk-v0", "qsm"),
        ("dm_control/walker-walk-v0", "sac"),
    ]
    coverage = aggregate.coverage_table("dmc", runs)
    # SAC runs with SB3's defaults there (the zoo has no entry): a column spanning tasks names no hyperparameters
    assert coverage.splitlines()[0] == "| Task (budget) | QSM (defaults) | QSM (paper preset) | SAC |"
    assert "| dm_control/walker-walk-v0 (100,000) | 1 / 3 | 0 / 3 | 1 / 3 |" in coverage
    summaries = {
        env: {algo: aggregate.summarize(runs_) for algo, runs_ in algos.items()}
        for env, algos in aggregate.group(runs).items()
    }
    assert aggregate.verdict_table(summaries).splitlines()[:3] == [
        "| Task | QSM vs SAC |",
        "| --- | --- |",
        "| dm_control/walker-walk-v0 | too few seeds to compare |",
    ]
    del summaries["dm_control/walker-walk-v0"]["sac"]
    assert aggregate.verdict_table(summaries) == "No baseline has finished a run yet.\n"


def test_statistics_are_exact() -> None:
    # IQM cuts 25% at each end: of 1..8, the mean of 3..6
    assert aggregate.iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)
    # Area under a linear curve from 0 to 10 over the budget: its average, 5
    assert aggregate.area_under_curve(_fake_run("qsm", 0, [0.0, 5.0, 10.0], [1.0])) == pytest.approx(5.0)
    runs = [_fake_run("qsm", seed, [0.0, 1.0], [float(seed), float(seed) + 2]) for seed in range(4)]
    summary = aggregate.summarize(runs)
    finals = np.array([1.0, 2.0, 3.0, 4.0])
    assert summary["final_mean"] == pytest.approx(finals.mean())
    assert summary["final_std"] == pytest.approx(finals.std())
    assert summary["final_iqm"] == pytest.approx(2.5)
    low, high = summary["final_iqm_ci"]
    assert finals.min() <= low <= summary["final_iqm"] <= high <= finals.max()


def test_runs_with_different_settings_are_not_pooled() -> None:
    runs = [_fake_run("qsm", seed, [0.0, 1.0], [1.0]) for seed in range(2)]
    runs[0]["settings"]["effective_hyperparams"] = {"score_scale": "50.0"}
    runs[1]["settings"]["effective_hyperparams"] = {"score_scale": "1.0"}
    with pytest.raises(ValueError, match="different settings"):
        aggregate.summarize(runs)
    # An argument added later (missing from the older record) is not a difference; a changed one is
    runs[1]["settings"]["effective_hyperparams"] = {"score_scale": "50.0", "score_target": "'gradient'"}
    assert aggregate.summarize(runs)["seeds"] == [0, 1]


def test_goal_reaching_is_counted_from_the_training_episodes() -> None:
    reached = _fake_run("sac", 0, [-50.0, 90.0], [93.0, 94.0])
    reached["training_episodes"] = [[999, -30.0, 999], [1500, 95.0, 501], [2000, 97.0, 500]]
    timid = _fake_run("sac", 1, [-1.0, -0.5], [-0.2, 91.0])
    timid["training_episodes"] = [[999, -0.1, 999], [1998, -0.2, 999]]
    assert aggregate.first_success(reached, 0.0) == 1500 and aggregate.first_success(timid, 0.0) is None
    for run_ in (reached, timid):
        run_["spec"]["env_id"] = "MountainCarContinuous-v0"
    table = aggregate.success_table("v1", {"MountainCarContinuous-v0": {"sac": [reached, timid]}})
    # One seed of two reached the goal (at step 1500); one final policy reaches it in all its episodes
    assert "| MountainCarContinuous-v0 (50,000) | SAC (RL Zoo) | 1 / 2 | 1,500 | 1 / 2 |" in table


def test_verdicts() -> None:
    def summary(iqm: float, low: float, high: float) -> dict:
        return {"final_iqm": iqm, "final_iqm_ci": [low, high]}

    assert aggregate.verdict(summary(10, 9, 11), summary(5, 4, 6)) == "ahead"
    assert aggregate.verdict(summary(5, 4, 6), summary(10, 9, 11)) == "behind"
    assert aggregate.verdict(summary(6, 4, 8), summary(5, 3, 7)) == "intervals overlap (IQM higher)"
    assert aggregate.verdict(summary(5, 3, 7), summary(6, 4, 8)) == "intervals overlap (IQM lower)"
    assert aggregate.verdict(summary(6, np.nan, np.nan), summary(5, 3, 7)) == "too few seeds to compare"


def test_statement_names_the_iqms_its_verdicts_compare() -> None:
    """The plain statement quotes the numbers the verdict rule compares (the IQMs), not the means beside them."""

    def summary(mean: float, iqm: float, low: float, high: float) -> dict:
        return {"final_mean": mean, "final_iqm": iqm, "final_iqm_ci": [low, high]}

    summaries = {
        "Task-v0": {aggregate.REFERENCE: summary(77.0, 96.0, 31.0, 97.0), "sac": summary(95.0, 94.0, 93.0, 96.0)},
        "Other-v0": {aggregate.REFERENCE: summary(10.0, 10.0, 9.0, 11.0), "sac": summary(5.0, 5.0, 4.0, 6.0)},
    }
    text = aggregate.statement(summaries)
    assert "is ahead on Other-v0 (10 vs 5); neither clearly ahead nor behind on Task-v0 (96 vs 94)." in text
    assert "(Final-return IQMs, QSM first." in text


def test_numbers_have_no_negative_zero() -> None:
    assert aggregate.number(-0.04) == "0.0" and aggregate.number(-0.4, 0) == "0"
    assert aggregate.number(-0.06) == "-0.1" and aggregate.number(2.25, 0) == "2"
    assert aggregate.mean_std(-0.01, 0.0, 3) == "0.0 +- 0.0"


def test_cost_figures_quick(tmp_path: pathlib.Path) -> None:
    _command("cost", "--quick", "--out", str(tmp_path), cwd=tmp_path)
    record = json.loads((tmp_path / "Pendulum-v1.json").read_text())
    labels = [result["label"] for result in record["results"]]
    assert labels == [
        "SAC 256x256",
        "QSM 256x256, defaults",
        "QSM 256x256, defaults, compiled",
        "QSM 256x256, paper update",
        "QSM 256x256, defaults, T=1",
    ]
    for result, ratio in zip(record["results"], record["ratios"], strict=True):
        assert result["train_steps_per_second"] > 0 and result["peak_rss_mib"] > 0
        assert 0 < result["achieved_gflops"] and 0 < result["matmul_gflops"]
        if result["algo"] == "SAC":
            assert ratio["throughput"] == ratio["predict"] == ratio["peak_rss"] == ratio["work"] == 1.0
    work = {result["label"]: result["step_gflop"] for result in record["results"]}
    # The same update compiled or not is the same work; fewer diffusion steps, less
    assert work["QSM 256x256, defaults"] == work["QSM 256x256, defaults, compiled"] > work["QSM 256x256, defaults, T=1"]


def test_profile_quick_accounts_for_the_whole_step(tmp_path: pathlib.Path) -> None:
    _command("profile", "--quick", "--out", str(tmp_path), cwd=tmp_path)
    record = json.loads((tmp_path / "Pendulum-v1.json").read_text())
    phases = record["ms_per_step"]
    assert list(phases) == ["acting", "environment", "storing the transition", "replay sampling", "critic target",
                            "critic update", "score target", "actor update", "logging", "other"]  # fmt: skip
    assert all(ms > 0 for ms in phases.values())
    # Each phase is timed exclusive of the others, so together they are the whole step
    assert sum(phases.values()) == pytest.approx(1e3 / record["steps_per_second"], rel=0.02)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
@pytest.mark.parametrize("algo, policy_delay", [("SAC", 1), ("QSM", 1), ("QSM", 2)])
def test_step_work_is_what_torch_flop_counter_counts(algo: str, policy_delay: int) -> None:
    """The products recorded for a step add up to the FLOPs that torch.utils.flop_counter counts for the same step
    computed with torch's own kernels: nothing is missed, oneDNN's products (and their backward) included. With an
    actor update every second gradient step, a step's training work is half that of the two steps of one update."""
    from stable_baselines3 import SAC
    from torch.utils.flop_counter import FlopCounterMode

    from sb3_qsm.benchmarks.work import training_step_work

    kwargs = dict(learning_starts=10, batch_size=256, policy_kwargs=dict(net_arch=[64, 64]), seed=0)
    if algo == "SAC":
        model = SAC("MlpPolicy", "Pendulum-v1", **kwargs)
    else:
        model = QSM("MlpPolicy", "Pendulum-v1", policy_delay=policy_delay, **kwargs)
    model.learn(300)
    work = training_step_work(model)
    with th.backends.mkldnn.flags(enabled=False):
        with FlopCounterMode(display=False) as training:
            model.train(gradient_steps=policy_delay, batch_size=model.batch_size)
        with FlopCounterMode(display=False) as acting:
            model.predict(model.observation_space.sample(), deterministic=False)
    assert work.gradient_steps == policy_delay
    assert work.flops == training.get_total_flops() / policy_delay + acting.get_total_flops() > 0


def test_learning_curves_give_each_algorithm_one_colour_and_a_legend_entry() -> None:
    """A reader matches lines across panels by colour: an algorithm's line has the same colour and label in every panel,
    and the legend lists every algorithm drawn, also those absent from the first panel."""
    from matplotlib.colors import to_rgba

    def runs(env: str, algo: str) -> list[dict]:
        made = [_fake_run(algo, seed, [0.0, 1.0, 2.0], [1.0]) for seed in range(2)]
        for made_run in made:
            made_run["spec"]["env_id"] = env
        return made

    # The first panel lacks TD3 and the second lacks QSM: in each panel's own order, SAC comes first or second
    grouped = {"A-v0": {"qsm": runs("A-v0", "qsm"), "sac": runs("A-v0", "sac")}, "B-v0": {"sac": runs("B-v0", "sac")}}
    grouped["B-v0"]["td3"] = runs("B-v0", "td3")
    fig = aggregate.learning_curves_figure(grouped)
    colours = {algo: to_rgba(colour) for algo, colour in aggregate.algorithm_colours(["qsm", "sac", "td3"]).items()}
    assert len(set(colours.values())) == 3
    # Every algorithm of the package drawn at once (the screen's variants included): still one colour each
    every = aggregate.algorithm_colours(aggregate.LABELS)
    assert len({to_rgba(colour) for colour in every.values()}) == min(len(every), 20)
    for ax, (env, algos) in zip(fig.axes, grouped.items(), strict=False):
        drawn = {line.get_label(): to_rgba(line.get_color()) for line in ax.get_lines()}
        assert drawn == {aggregate.column_label(algo): colours[algo] for algo in algos}, env
    (legend,) = fig.legends
    handles = zip(legend.get_texts(), legend.legend_handles, strict=True)
    entries = {text.get_text(): to_rgba(handle.get_color()) for text, handle in handles}
    assert entries == {aggregate.column_label(algo): colour for algo, colour in colours.items()}


def test_cheaper_table_pairs_each_settings_time_with_its_returns() -> None:
    from sb3_qsm.benchmarks.cost import CHEAPER_ROWS, cheaper_table

    record = {
        "results": [
            {"label": config.label, "train_steps_per_second": 50.0 * (i + 1)} for i, config in enumerate(CHEAPER_ROWS.values())
        ]
    }
    summary = {
        "seeds": [0, 1, 2],
        "final_mean": -150.0,
        "final_std": 10.0,
        "final_iqm": -149.0,
        "final_iqm_ci": [-160.0, -140.0],
        "auc_mean": -300.0,
        "auc_std": 20.0,
    }
    one_run = {**summary, "seeds": [0], "final_std": 0.0, "final_iqm_ci": [float("nan")] * 2, "auc_std": 0.0}
    lines = cheaper_table(record, {"qsm": summary, "qsm-k4": one_run}).splitlines()
    assert lines[2] == "| defaults | 20.0 | 1.00 | 3 | -150.0 +- 10.0 | -149.0 [-160.0, -140.0] | -300.0 +- 20.0 |"
    assert lines[3] == "| `n_score_samples=4` | 10.0 | 0.50 | 1 | -150.0 | -149.0 (one run: no interval) | -300.0 |"
    assert len(lines) == 4  # settings without returns are left out
    assert cheaper_table({"results": []}, {"qsm": summary}) == ""


def test_ablation_table_puts_each_screened_run_beside_sacs_curve() -> None:
    from sb3_qsm.benchmarks import ablation

    # Screen: budget 100, evaluations at 0, 50, 100; SAC's reference ran longer (0, 50, 100, 150, 200)
    default = _fake_run("qsm", 0, [-1.0, 10.0, 20.0], [21.0])
    candidate = _fake_run("qsm-dt", 0, [-1.0, 30.0, 40.0], [41.0])
    candidate["final"]["stochastic"] = {"returns": [7.0, 9.0]}
    candidate["final"][run.PAIRED_KEY] = {"returns": [50.0, 52.0]}
    sac = [_fake_run("sac", seed, [0.0, 4.0 + seed, 8.0, 12.0, 16.0], [1.0]) for seed in range(2)]
    for reference in sac:
        reference["spec"]["budget"] = 200
        for evaluation, step in zip(reference["evaluations"], range(0, 201, 50), strict=True):
            evaluation["timesteps"] = step
    table = ablation.screen_table([default, candidate], sac)
    lines = table.splitlines()
    assert lines[0] == "| Task | Algorithm | 50 | 100 | Final (10 episodes) | Final, stochastic | Final, best of 32 |"
    # A record without the effective sampler noise color ran before pink noise became the default
    assert "| Task-v0 | QSM (defaults of 0.1: white sampler noise) | 10 | 20 | 21 | - | - |" in lines
    assert "| Task-v0 | QSM (deterministic target) | 30 | 40 | 41 | 8 | 51 |" in lines
    # SAC's mean over its seeds at the screen's steps only: (4 + 5) / 2 at 50, 8 at 100
    assert "| Task-v0 | SAC (RL Zoo), suite v1 (2 seeds, mean) | 4 | 8 | - | - | - |" in lines
    assert ablation.screen_table([], sac) == "No screen results committed yet.\n"


def test_probe_table_puts_each_probe_beside_the_defaults_and_sac(tmp_path) -> None:
    from sb3_qsm.benchmarks import ablation

    def probe(variant: str, seed: int, final: float, budget: int = 100_000, **kwargs: float) -> dict:
        final_line = {"budget": budget, "kwargs": kwargs, "final": {"mean": final}}
        return {"env": "Task-v0", "variant": variant, "seed": seed, **final_line}

    lines = [
        {"variant": "policy-clean", "seed": 0, "t": 50000, "mean_return": 10.0},
        probe("policy-clean", 0, 30.0),
        probe("policy-clean", 2, 50.0),
        probe("mean", 1, 7.0, n_score_samples=4),
        probe("mean", 0, 1.0, budget=50_000),  # another budget: another protocol, left out
    ]
    (tmp_path / ablation.PROBE_FILES[0]).write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    probes = ablation.load_probes(tmp_path)
    assert len(probes) == 3
    references = {
        "qsm-replay": [_fake_run("qsm", 0, [0.0], [20.0])],
        "qsm": [_fake_run("qsm", 1, [0.0], [25.0])],
        "sac": [_fake_run("sac", seed, [0.0], [float(seed)]) for seed in (0, 1)],
    }
    table = ablation.probe_table(probes, references).splitlines()
    assert table[0] == "| Task | Run | Seed 0 | Seed 1 | Seed 2 | Mean |"
    # The references first, then the probes in the files' order; a seed not run is "-"
    assert table[2] == '| Task-v0 | QSM (defaults then: `score_actions="replay"`), suite v2 | 20 | - | - | 20 (1) |'
    assert table[3] == "| Task-v0 | QSM (defaults), suite v2 | - | 25 | - | 25 (1) |"
    assert table[4] == "| Task-v0 | SAC (RL Zoo), suite v2 | 0 | 1 | - | 0 (2) |"
    assert table[5] == '| Task-v0 | `score_actions="mixed"` | 30 | - | 50 | 40 (2) |'
    assert table[6] == "| Task-v0 | `n_score_samples=4` | - | 7 | - | 7 (1) |"
    assert len(table) == 9  # the note after a blank line
    assert ablation.probe_table([], references) == "No probe results committed yet.\n"


def test_zoo_training_curves_draw_each_agent_beside_its_baseline(tmp_path: pathlib.Path) -> None:
    from sb3_qsm.benchmarks.zoo_agents import plot_training_curves, training_curve

    def zoo_run(folder: pathlib.Path, results: list[list[float]]) -> pathlib.Path:
        folder.mkdir(parents=True)
        steps = np.arange(1, len(results) + 1) * 1000
        np.savez(folder / "evaluations.npz", timesteps=steps, results=np.array(results), ep_lengths=np.ones((len(results), 2)))
        return folder

    hopper = zoo_run(tmp_path / "qsm" / "Hopper-v5_1", [[1.0, 3.0], [10.0, 20.0]])
    pendulum = zoo_run(tmp_path / "qsm" / "Pendulum-v1_1", [[-500.0, -300.0]])
    zoo_run(tmp_path / "sac" / "Hopper-v5_1", [[0.0, 2.0]])
    steps, returns = training_curve(hopper)  # type: ignore[misc]
    assert steps.tolist() == [1000, 2000] and returns.tolist() == [2.0, 15.0]
    assert training_curve(tmp_path / "sac" / "Pendulum-v1_1") is None
    fig = plot_training_curves([hopper, pendulum], tmp_path / "sac", "SAC")
    (hopper_ax, pendulum_ax) = fig.axes
    assert hopper_ax.get_title() == "Hopper-v5" and pendulum_ax.get_title() == "Pendulum-v1"
    assert [line.get_label() for line in hopper_ax.get_lines()] == ["QSM", "SAC"]
    assert [line.get_label() for line in pendulum_ax.get_lines()] == ["QSM"]
    assert pendulum_ax.get_lines()[0].get_ydata().tolist() == [-400.0]

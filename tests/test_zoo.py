"""The RL Zoo commands with QSM: hyperparameter file, train/enjoy layout, predict-only loading, Optuna search."""

import inspect
import os
import pathlib
import subprocess
import sys

import optuna
import pytest
import rl_zoo3
import yaml
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

from sb3_qsm import QSM
from sb3_qsm.qsm.presets import CRITICS_0_1, CRITICS_0_1_POLICY_KWARGS, PAPER_UPDATE, PAPER_UPDATE_POLICY_KWARGS
from sb3_qsm.zoo import PredictOnlyQSM, default_hyperparams_file, register
from sb3_qsm.zoo.__main__ import with_default_conf_file
from sb3_qsm.zoo.hyperparams_opt import convert_qsm_params, sample_qsm_params

REQUIRED_ENVS = ["default", "Pendulum-v1", "MountainCarContinuous-v0", "LunarLanderContinuous-v3", "BipedalWalker-v3"] + [
    f"{task}-v{version}"
    for task in (
        "HalfCheetah",
        "Hopper",
        "Walker2d",
        "Ant",
        "Humanoid",
        "InvertedPendulum",
        "InvertedDoublePendulum",
        "Reacher",
        "Swimmer",
    )
    for version in (4, 5)
]
# Keys the zoo consumes itself before building the model
ZOO_KEYS = {"n_timesteps", "n_envs", "normalize", "noise_type", "noise_std", "env_wrapper", "frame_stack", "callback"}


def _zoo(*args: str, cwd: pathlib.Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "sb3_qsm.zoo", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_hyperparams_file_covers_tasks_with_valid_qsm_arguments(zoo_hyperparams, zoo_kwargs):
    assert set(REQUIRED_ENVS) <= set(zoo_hyperparams)
    qsm_args = set(inspect.signature(QSM.__init__).parameters)
    for env_id, entry in zoo_hyperparams.items():
        assert isinstance(entry["n_timesteps"], int | float), env_id
        unknown = set(entry) - ZOO_KEYS - qsm_args
        assert not unknown, f"{env_id}: {unknown}"
        if isinstance(entry.get("policy_kwargs"), str):
            assert isinstance(zoo_kwargs(entry["policy_kwargs"]), dict)


def test_gradient_target_block_is_the_papers_update(zoo_hyperparams, zoo_kwargs):
    """The zoo file's gradient-target block, which the entries measured with the paper's update merge, holds the
    values of sb3_qsm.qsm.presets (YAML cannot import them)."""
    block = zoo_hyperparams["gradient-target"]
    assert {key: block[key] for key in PAPER_UPDATE} == PAPER_UPDATE
    assert {key: block[key] for key in CRITICS_0_1} == CRITICS_0_1
    assert zoo_kwargs(block["policy_kwargs"]) == {**PAPER_UPDATE_POLICY_KWARGS, **CRITICS_0_1_POLICY_KWARGS}


def test_default_conf_file_only_for_qsm():
    default = ["--conf-file", default_hyperparams_file()]
    assert with_default_conf_file(["--algo", "qsm", "--env", "Pendulum-v1"])[-2:] == default
    assert with_default_conf_file(["--algo=qsm"])[-2:] == default
    assert with_default_conf_file(["--algo", "sac"]) == ["--algo", "sac"]
    assert with_default_conf_file(["--algo", "qsm", "-conf", "mine.yml"]) == ["--algo", "qsm", "-conf", "mine.yml"]


def test_register_adds_qsm_to_the_zoo():
    register()
    assert rl_zoo3.ALGOS["qsm"] is QSM
    assert HYPERPARAMS_SAMPLER["qsm"] is sample_qsm_params
    assert HYPERPARAMS_CONVERTER["qsm"] is convert_qsm_params
    register(predict_only=True)
    assert rl_zoo3.ALGOS["qsm"] is PredictOnlyQSM


# The zoo's push_to_hub with the Hub's three calls replaced: the repository "exists" empty, what would be uploaded
# and where is written to uploaded.yml
PUSH_OFFLINE = """
import pathlib
from unittest import mock

import huggingface_hub
import yaml

from sb3_qsm.zoo.__main__ import main

calls = {}


def create_repo(self, repo_id, **kwargs):
    calls["create_repo"] = str(repo_id)
    return "https://huggingface.co/" + repo_id


def snapshot_download(self, repo_id, local_dir, **kwargs):
    pathlib.Path(local_dir).mkdir(parents=True)


def upload_folder(self, repo_id, folder_path, **kwargs):
    calls["upload_folder"] = str(folder_path)


with mock.patch.multiple(
    huggingface_hub.HfApi,
    create_repo=create_repo,
    snapshot_download=snapshot_download,
    upload_folder=upload_folder,
):
    main(["push_to_hub", "--algo", "qsm", "--env", "Pendulum-v1", "-f", "logs", "-orga", "someone", "--no-render"])
pathlib.Path("uploaded.yml").write_text(yaml.safe_dump(calls))
"""

# The zoo's load_from_hub with the Hub's download replaced: files come from the folder push_to_hub packaged
LOAD_OFFLINE = """
import pathlib
from unittest import mock

from requests.exceptions import HTTPError

from sb3_qsm.zoo.__main__ import main


def load_from_hub(repo_id, filename):
    path = pathlib.Path("hub", repo_id.split("/")[1], filename)
    if not path.is_file():
        raise HTTPError(filename)
    return str(path)


with mock.patch("huggingface_sb3.load_from_hub", load_from_hub):
    main(["load_from_hub", "--algo", "qsm", "--env", "Pendulum-v1", "-f", "downloaded", "-orga", "someone"])
"""


def test_train_writes_zoo_layout_and_enjoy_replays_it(tmp_path):
    train = _zoo(
        *("train", "--algo", "qsm", "--env", "Pendulum-v1", "-n", "300", "-f", "logs", "--seed", "3"),
        # Two evaluation episodes: all_plots cannot average a single one of a single run
        *("--eval-freq", "150", "--eval-episodes", "2", "--save-freq", "150"),
        cwd=tmp_path,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    run = tmp_path / "logs" / "qsm" / "Pendulum-v1_1"
    for name in ("Pendulum-v1.zip", "best_model.zip", "rl_model_150_steps.zip", "evaluations.npz", "0.monitor.csv"):
        assert (run / name).is_file(), name
    with open(run / "Pendulum-v1" / "config.yml") as file:
        config = dict(yaml.load(file, Loader=yaml.UnsafeLoader))
    assert config["n_timesteps"] == 20000  # read from the packaged qsm.yml
    with open(run / "Pendulum-v1" / "args.yml") as file:
        args = dict(yaml.load(file, Loader=yaml.UnsafeLoader))
    assert args["algo"] == "qsm" and args["env"] == "Pendulum-v1" and "env_kwargs" in args

    enjoy = _zoo("enjoy", "--algo", "qsm", "--env", "Pendulum-v1", "-f", "logs", "-n", "250", "--no-render", cwd=tmp_path)
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]
    assert "Mean reward" in enjoy.stdout
    model = QSM.load(run / "Pendulum-v1.zip", buffer_size=1)
    assert model.num_timesteps == 300

    # push_to_hub up to the upload: the Hub's calls are replaced, what the zoo packages is left in hub/
    push = subprocess.run(
        [sys.executable, "-c", PUSH_OFFLINE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert push.returncode == 0, push.stderr[-3000:]
    repo = tmp_path / "hub" / "qsm-Pendulum-v1"
    assert yaml.safe_load((tmp_path / "uploaded.yml").read_text()) == {
        "create_repo": "someone/qsm-Pendulum-v1",
        "upload_folder": str(pathlib.Path("hub") / "qsm-Pendulum-v1"),
    }
    card = (repo / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    (result,) = metadata["model-index"][0]["results"]
    assert metadata["model-index"][0]["name"] == "QSM" and result["dataset"]["name"] == "Pendulum-v1"
    assert result["metrics"][0]["value"].startswith("-")  # "mean +/- std" of the 10 evaluation episodes
    assert "# **QSM** Agent playing **Pendulum-v1**" in card
    assert QSM.load(repo / "qsm-Pendulum-v1.zip").num_timesteps == 300
    for name in ("config.yml", "args.yml", "env_kwargs.yml", "train_eval_metrics.zip"):
        assert (repo / name).is_file(), name

    # load_from_hub, the Hub's download replaced by the packaged folder: the zoo layout again, which enjoy replays
    pull = subprocess.run([sys.executable, "-c", LOAD_OFFLINE], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert pull.returncode == 0, pull.stderr[-3000:]
    downloaded = tmp_path / "downloaded" / "qsm" / "Pendulum-v1_1"
    for name in ("Pendulum-v1.zip", "evaluations.npz", "0.monitor.csv", "Pendulum-v1/config.yml", "Pendulum-v1/args.yml"):
        assert (downloaded / name).is_file(), name
    enjoy_args = ("enjoy", "--algo", "qsm", "--env", "Pendulum-v1", "-f", "downloaded", "-n", "50", "--no-render")
    replay = _zoo(*enjoy_args, cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr[-3000:]

    # The zoo's plots, with what the zoo extra installs (seaborn); figures on the Agg backend
    plot = _zoo("plot_train", "--algo", "qsm", "--env", "Pendulum-v1", "-f", "logs", "-w", "1", cwd=tmp_path)
    assert plot.returncode == 0, plot.stderr[-3000:]
    plots = _zoo(
        *("all_plots", "--algos", "qsm", "--env", "Pendulum-v1", "-f", "logs", "--no-display", "-o", "results"),
        cwd=tmp_path,
    )
    assert plots.returncode == 0, plots.stderr[-3000:]
    assert (tmp_path / "results.pkl").is_file()


def test_predict_only_load_does_not_allocate_the_replay_buffer(tmp_path):
    QSM("MlpPolicy", "Pendulum-v1", buffer_size=50_000, policy_kwargs=dict(net_arch=[8])).save(tmp_path / "model.zip")
    assert PredictOnlyQSM.load(tmp_path / "model.zip").replay_buffer.buffer_size == 1
    assert QSM.load(tmp_path / "model.zip").replay_buffer.buffer_size == 50_000


def test_sampler_gives_valid_qsm_arguments_and_converter_matches():
    trial = optuna.trial.FixedTrial(
        {
            "one_minus_gamma": 0.01,
            "learning_rate": 1e-3,
            "batch_size_pow": 6,
            "tau": 0.01,
            "score_scale": 20.0,
            "n_diffusion_steps": 3,
            "sampler_temperature": 0.5,
            "target_policy_noise": 0.2,
            "noise_std": 0.1,
            "net_arch": "small",
        }
    )
    kwargs = sample_qsm_params(trial, n_actions=1, n_envs=1, additional_args={"using_her_replay_buffer": False})
    model = QSM("MlpPolicy", "Pendulum-v1", **kwargs)
    assert model.score_scale == 20.0 and model.batch_size == 64 and model.actor.n_diffusion_steps == 3
    assert model.gamma == pytest.approx(0.99)
    assert model.action_noise is not None
    converted = convert_qsm_params(trial.params)
    assert converted["noise_type"] == "normal" and converted["noise_std"] == 0.1
    assert converted["policy_kwargs"] == {"net_arch": [64, 64]}


def test_two_workers_share_one_journal_study(tmp_path):
    """Two worker processes optimise the same study through one journal file."""
    storage = tmp_path / "study.log"
    args = (
        *("train", "--algo", "qsm", "--env", "Pendulum-v1", "-n", "200", "--optimize", "--n-trials", "2"),
        *("--storage", str(storage), "--study-name", "qsm-test", "--sampler", "random", "--pruner", "none"),
        *("--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots", "-f", "logs"),
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "sb3_qsm.zoo", *args]
    workers = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-3000:]
        assert "Number of finished trials" in stdout
    study = optuna.load_study(
        study_name="qsm-test",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(storage))),
    )
    complete = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4  # two per worker
    assert all("score_scale" in trial.params for trial in complete)


def test_console_command(capsys):
    from importlib.metadata import entry_points

    from sb3_qsm import cli

    (command,) = [entry for entry in entry_points(group="console_scripts") if entry.name == "sb3-qsm"]
    assert command.value == "sb3_qsm.cli:main"
    cli.main(["--help"])
    commands = "train|enjoy|plot_train|plot_from_file|all_plots|push_to_hub|load_from_hub"
    assert f"usage: sb3-qsm {{{commands}}}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown command 'fly'"):
        cli.main(["fly"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2

"""QSM's search space for the RL Zoo's ``--optimize`` (Optuna), in the zoo's sampler/converter convention."""

from typing import Any

import numpy as np
import optuna
from rl_zoo3.hyperparams_opt import sample_her_params
from stable_baselines3.common.noise import NormalActionNoise

# Hidden layers of the denoiser and of each critic
NET_ARCHS = {"small": [64, 64], "medium": [256, 256], "big": [400, 300], "large": [512, 512]}


def convert_qsm_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn sampled values (an Optuna trial's ``params``) into zoo hyperparameters, as written in a ``qsm.yml`` entry.
    The zoo applies it to a stored trial (``--storage ... --study-name ... --trial-id N``).

    :param sampled_params: Values named as in :func:`sample_qsm_params`
    :return: Hyperparameters: QSM arguments, plus ``noise_type``/``noise_std`` when exploration noise is used
    """
    hyperparams = dict(sampled_params)
    hyperparams["gamma"] = 1 - hyperparams.pop("one_minus_gamma")
    hyperparams["batch_size"] = 2 ** hyperparams.pop("batch_size_pow")
    hyperparams["policy_kwargs"] = {"net_arch": NET_ARCHS[hyperparams.pop("net_arch")]}
    noise_std = hyperparams.pop("noise_std")
    if noise_std > 0:
        hyperparams.update(noise_type="normal", noise_std=noise_std)
    return hyperparams


def sample_qsm_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sample QSM hyperparameters: the Q-score scale, the number of diffusion steps and the sampler temperature (QSM's
    own), the learning rate, network width, batch size, discount, Polyak coefficient, target-action noise and
    exploration noise.

    :param trial: The Optuna trial
    :param n_actions: Size of the action space (for the exploration noise)
    :param n_envs: Number of environments (unused: one gradient step per environment step)
    :param additional_args: The zoo's extra arguments (``using_her_replay_buffer``, ``her_kwargs``)
    :return: Keyword arguments for ``QSM``
    """
    sampled: dict[str, Any] = {
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 2e-3, log=True),
        "batch_size_pow": trial.suggest_int("batch_size_pow", 6, 10),
        "tau": trial.suggest_float("tau", 1e-3, 0.08, log=True),
        # Wide enough for both score targets: the posterior one's inverse temperatures (default 5) and the gradient
        # one's scales (the paper's 50 to 120; 1 on HalfCheetah), which an entry of qsm.yml may select
        "score_scale": trial.suggest_float("score_scale", 0.5, 300.0, log=True),
        "n_diffusion_steps": trial.suggest_categorical("n_diffusion_steps", [2, 3, 5, 10]),
        "sampler_temperature": trial.suggest_float("sampler_temperature", 0.3, 1.0),
        "target_policy_noise": trial.suggest_categorical("target_policy_noise", [0.0, 0.05, 0.1, 0.2, 0.3]),
        "noise_std": trial.suggest_categorical("noise_std", [0.0, 0.1, 0.2, 0.3]),
        "net_arch": trial.suggest_categorical("net_arch", list(NET_ARCHS)),
    }
    trial.set_user_attr("gamma", 1 - sampled["one_minus_gamma"])
    trial.set_user_attr("batch_size", 2 ** sampled["batch_size_pow"])
    hyperparams = convert_qsm_params(sampled)
    # The zoo passes sampled values straight to the model, so the noise object is built here
    if hyperparams.pop("noise_type", None) is not None:
        noise_std = hyperparams.pop("noise_std")
        hyperparams["action_noise"] = NormalActionNoise(mean=np.zeros(n_actions), sigma=noise_std * np.ones(n_actions))
    if additional_args["using_her_replay_buffer"]:
        hyperparams = sample_her_params(trial, hyperparams, additional_args["her_kwargs"])
    return hyperparams

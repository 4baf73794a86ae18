"""Warm-starting QSM's critics from SB3 SAC and TD3 agents (into plain critics: ``n_quantiles=None``)."""

import pytest
import torch as th
from stable_baselines3 import PPO, SAC, TD3

from sb3_qsm import QSM
from sb3_qsm.convert import load_critic_from_checkpoint


def _tensors_equal(a: th.nn.Module, b: th.nn.Module) -> bool:
    return all(th.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("algo", [SAC, TD3])
@pytest.mark.parametrize("from_path", [True, False])
def test_warm_start_critic(tmp_path, algo, from_path):
    source = algo("MlpPolicy", "Pendulum-v1", learning_starts=50, buffer_size=500, policy_kwargs=dict(net_arch=[16]))
    source.learn(110)
    source.save(tmp_path / "source")
    model = QSM("MlpPolicy", "Pendulum-v1", buffer_size=500, policy_kwargs=dict(net_arch=[16], n_quantiles=None))
    actor_before = {k: v.clone() for k, v in model.actor.state_dict().items()}
    load_critic_from_checkpoint(model, tmp_path / "source.zip" if from_path else source)
    assert _tensors_equal(model.critic, source.critic)
    assert _tensors_equal(model.critic_target, source.critic_target)
    assert all(th.equal(v, actor_before[k]) for k, v in model.actor.state_dict().items())
    # The critics are copies, not shared tensors, and training goes on
    assert model.critic.qf0[0].weight.data_ptr() != source.critic.qf0[0].weight.data_ptr()
    model.learn(120)


def test_warm_start_without_target(tmp_path):
    source = SAC("MlpPolicy", "Pendulum-v1", learning_starts=50, buffer_size=500, tau=0.5, policy_kwargs=dict(net_arch=[16]))
    source.learn(110)
    model = QSM("MlpPolicy", "Pendulum-v1", buffer_size=500, policy_kwargs=dict(net_arch=[16], n_quantiles=None))
    load_critic_from_checkpoint(model, source, include_target=False)
    assert _tensors_equal(model.critic_target, source.critic)
    assert not _tensors_equal(model.critic_target, source.critic_target)


def test_warm_start_mismatches(tmp_path):
    source = SAC("MlpPolicy", "Pendulum-v1", buffer_size=500, policy_kwargs=dict(net_arch=[16]))
    source.save(tmp_path / "sac")
    model = QSM("MlpPolicy", "Pendulum-v1", buffer_size=500, policy_kwargs=dict(net_arch=[32], n_quantiles=None))
    before = {k: v.clone() for k, v in model.critic.state_dict().items()}
    with pytest.raises(ValueError, match=r"critic tensor qf0.0.weight has shape \(16, 4\) there but \(32, 4\)"):
        load_critic_from_checkpoint(model, tmp_path / "sac.zip")
    assert all(th.equal(v, before[k]) for k, v in model.critic.state_dict().items())

    deeper = QSM("MlpPolicy", "Pendulum-v1", buffer_size=500, policy_kwargs=dict(net_arch=[16, 16], n_quantiles=None))
    with pytest.raises(ValueError, match="the critics differ in architecture"):
        load_critic_from_checkpoint(deeper, source)

    tanh_kwargs = dict(net_arch=[16], activation_fn=th.nn.Tanh, n_quantiles=None)
    tanh = QSM("MlpPolicy", "Pendulum-v1", buffer_size=500, policy_kwargs=tanh_kwargs)
    with pytest.raises(ValueError, match="its critics use ReLU, the QSM model's use Tanh"):
        load_critic_from_checkpoint(tanh, tmp_path / "sac.zip")

    PPO("MlpPolicy", "Pendulum-v1", n_steps=64, policy_kwargs=dict(net_arch=[8])).save(tmp_path / "ppo")
    with pytest.raises(ValueError, match="it has no 'critic' Q-networks"):
        load_critic_from_checkpoint(model, tmp_path / "ppo.zip")

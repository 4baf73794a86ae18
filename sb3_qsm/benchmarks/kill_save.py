"""
Kills during saves: a process stores transitions, saves a checkpoint (model and replay buffer), then saves it again
and again until it is killed with SIGKILL at a random moment of a save; each kill is followed by a check that the
checkpoint on disk loads and holds every transition. The replay buffer is large (its unused part is saved too), so
that a save takes long enough to be killed in the middle of it. ``--in-place`` saves as SB3 does (the file opened
and overwritten), for comparison.

    python -m sb3_qsm.benchmarks kill-save --kills 20 --out benchmarks/trust
    python -m sb3_qsm.benchmarks kill-save --kills 5 --in-place --out benchmarks/trust

POSIX only (SIGKILL).
"""

import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from sb3_qsm.benchmarks import command_parser
from sb3_qsm.benchmarks.evaluation import environment, write_json

# Transitions the checkpoint holds, and the replay buffer's size (about 120 MB saved)
TRANSITIONS, BUFFER_SIZE = 150, 2_000_000
_SAVE = {
    False: "model.save(folder + '/model.zip'); model.save_replay_buffer(folder + '/buffer.pkl')",
    True: "BaseAlgorithm.save(model, folder + '/model.zip'); "
    "OffPolicyAlgorithm.save_replay_buffer(model, folder + '/buffer.pkl')",
}
_CHILD = """
import sys
import torch
torch.set_num_threads(1)
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from sb3_qsm import QSM
model = QSM("MlpPolicy", "Pendulum-v1", buffer_size={buffer_size}, learning_starts=10_000, n_diffusion_steps=3,
            policy_kwargs=dict(net_arch=[16]), seed=0)
model.learn({transitions})
folder = sys.argv[1]
{save}
print("saved", flush=True)
while True:
    print("saving", flush=True)
    {save}
"""


def kill_during_saves(folder: pathlib.Path, kills: int, in_place: bool = False, seed: int = 0) -> list[dict[str, Any]]:
    """
    :param folder: Where the checkpoint is written
    :param kills: How many processes to kill, one after the other, each during a save of the same checkpoint
    :param in_place: Save as SB3 does, overwriting the files in place
    :param seed: Seed of the random moments of the kills
    :return: For every kill, its delay after the save began (seconds), whether the checkpoint loaded with all its
        transitions, and the error otherwise
    """
    from sb3_qsm import QSM

    code = _CHILD.format(buffer_size=BUFFER_SIZE, transitions=TRANSITIONS, save=_SAVE[in_place])
    rng = random.Random(seed)
    outcomes = []
    for _ in range(kills):
        child = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        if child.stdout.readline().strip() != "saved" or child.stdout.readline().strip() != "saving":
            raise RuntimeError("the saving process stopped before its first save")
        delay = rng.uniform(0.0, 0.5)
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        outcome: dict[str, Any] = {"delay_s": delay}
        try:
            model = QSM.load(folder / "model.zip", buffer_size=1)
            model.load_replay_buffer(folder / "buffer.pkl")
            assert model.replay_buffer is not None
            outcome["transitions"] = model.replay_buffer.size()
            outcome["intact"] = outcome["transitions"] == TRANSITIONS and model.num_timesteps == TRANSITIONS
        except ValueError as error:
            outcome.update(intact=False, error=str(error))
        outcomes.append(outcome)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("kill-save", __doc__)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--in-place", action="store_true", help="save as SB3 does, overwriting in place")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=None, help="folder of the JSON record")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        outcomes = kill_during_saves(pathlib.Path(folder), args.kills, args.in_place, args.seed)
    lost = sum(not outcome["intact"] for outcome in outcomes)
    saves = "in place (SB3)" if args.in_place else "atomic"
    print(f"{args.kills} kills during saves, {saves}: {lost} checkpoints lost")
    if args.out is not None:
        record = {"saves": saves, "kills": args.kills, "lost": lost, "transitions": TRANSITIONS}
        record |= {"buffer_size": BUFFER_SIZE, "outcomes": outcomes, "environment": environment()}
        write_json(args.out / f"kill_save_{'in_place' if args.in_place else 'atomic'}.json", record)
    return 0

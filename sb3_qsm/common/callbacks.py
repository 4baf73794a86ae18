"""A checkpoint callback whose checkpoints resume exactly and survive a kill during the save."""

import pickle

from stable_baselines3.common.callbacks import CheckpointCallback

from sb3_qsm.common.checkpoint import atomic_file


class AtomicCheckpointCallback(CheckpointCallback):
    """
    SB3's ``CheckpointCallback`` (same arguments, same file names), with two differences that make its checkpoints
    safe to resume from:

    - A checkpoint is taken once the transitions of the step that made it due are in the replay buffer, at the end of
      that rollout (with ``train_freq=1``, the same step; before the gradient steps of that rollout). SB3's callback
      saves during the step, before its transition is stored, so its replay buffer always holds one transition fewer
      than the model's ``num_timesteps``, and a resumed run never gets that transition back. Here the buffer holds
      exactly ``num_timesteps`` transitions (per environment).
    - The model, the replay buffer and the ``VecNormalize`` statistics are each written to a temporary file in the
      checkpoint folder and renamed into place once complete (``sb3_qsm.common.checkpoint.atomic_file``), so a
      process killed during a save leaves every earlier checkpoint whole, and never a partial newest one.

    Works with any SB3 algorithm, not only QSM.
    """

    def _init_callback(self) -> None:
        super()._init_callback()
        self._due = False

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            self._due = True
        return True

    def _on_rollout_end(self) -> None:
        if not self._due:
            return
        self._due = False
        with atomic_file(self._checkpoint_path(extension="zip")) as file:
            self.model.save(file)
        replay_buffer = getattr(self.model, "replay_buffer", None)
        if self.save_replay_buffer and replay_buffer is not None:
            with atomic_file(self._checkpoint_path("replay_buffer_", extension="pkl")) as file:
                self.model.save_replay_buffer(file)  # type: ignore[attr-defined]
        vec_normalize = self.model.get_vec_normalize_env()
        if self.save_vecnormalize and vec_normalize is not None:
            # What VecNormalize.save writes (the pickled wrapper, without its environment), atomically
            with atomic_file(self._checkpoint_path("vecnormalize_", extension="pkl")) as file:
                pickle.dump(vec_normalize, file)
        if self.verbose >= 2:
            print(f"Saved checkpoint {self._checkpoint_path(extension='zip')}")

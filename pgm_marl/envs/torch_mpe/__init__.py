"""Batched torch implementation of the four MPE tasks with mpe2 1.1.1's exact semantics.

- ``TorchMPEVectorEnv(task, num_envs, seed, teams=None, max_cycles=25, device="cpu", dtype=torch.float32,
  **env_kwargs)``: the torch backend of :class:`pgm_marl.envs.base.VectorEnvBase` (``vector.py``);
- ``make_world(task, device, dtype, **env_kwargs)``: the scenario object (physics + reset + observation +
  reward as pure tensor functions over K copies), see ``core.py`` and the scenario modules.
"""
from .core import MPEState, MPEWorld
from .simple_adversary import SimpleAdversary
from .simple_speaker_listener import SimpleSpeakerListener
from .simple_spread import SimpleSpread
from .simple_tag import SimpleTag
from .vector import SCENARIOS, TorchMPEVectorEnv, make_world

__all__ = ["MPEState", "MPEWorld", "SCENARIOS", "SimpleAdversary", "SimpleSpeakerListener", "SimpleSpread",
           "SimpleTag", "TorchMPEVectorEnv", "make_world"]

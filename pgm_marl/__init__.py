"""pgm_marl: multi-agent reinforcement learning as probabilistic inference (Pyro models, MA-SAC and variants)."""

__version__ = "0.1.0"

"""What is modelled: Markov games, agent i's MDP with optimality variables (Figure 1, eq. 2-3) as a Pyro
model, the factorized guide of eq. 4, what an action is (action spaces), the worlds they run in, and graph
views of both."""
from .actions import ActionSpace, ActionSpaces, BoxActions, DiscreteActions
from .agent_mdp import agent_model, ego_indices
from .distributions import GumbelSoftmaxPolicy, Optimality, SimulatorStep, action_distribution
from .graph import draw_model_graph, guide_graph, model_graph
from .guide import policy_guide
from .tabular import TabularMarkovGame, random_policies, validate_policies
from .worlds import CriticWorld, EpisodeWorld, Policies, SimulatorWorld, TabularPolicies, TabularWorld, World

__all__ = ["agent_model", "policy_guide", "ego_indices", "ActionSpace", "ActionSpaces", "DiscreteActions",
           "BoxActions", "GumbelSoftmaxPolicy", "Optimality", "SimulatorStep", "action_distribution", "model_graph",
           "guide_graph", "draw_model_graph", "TabularMarkovGame", "random_policies", "validate_policies", "World",
           "Policies", "TabularWorld", "TabularPolicies", "SimulatorWorld", "CriticWorld", "EpisodeWorld"]

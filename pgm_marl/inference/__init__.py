"""What is derived from the model: the ELBO (eq. 5) read off Pyro traces, exact references on tabular games,
the soft Bellman critic (eq. 7-8), the actor step (eq. 9), and MA-SAC's variants as declared differences."""
from .actor import actor_terms, exact_actor_terms
from .elbo import TemperActionsMessenger, elbo_estimate, elbo_loss, elbo_particles, temper_actions
from .exact import (exact_elbo, exact_elbo_terms, exact_optimistic_elbo, exact_optimistic_elbo_terms, exact_soft_q,
                    exact_soft_value, optimistic_optimum, soft_best_response, state_marginals)
from .masac import MASACLoss
from .reinforce import reinforce_surrogate
from .soft_bellman import critic_regression_loss, soft_bellman_target
from .variants import PAPER_ALPHA, PRESETS, Algorithm, register, temperatures

__all__ = ["elbo_estimate", "elbo_loss", "elbo_particles", "temper_actions", "TemperActionsMessenger", "exact_elbo",
           "exact_elbo_terms", "exact_soft_q", "exact_soft_value", "soft_best_response", "state_marginals",
           "actor_terms", "exact_actor_terms", "MASACLoss", "reinforce_surrogate", "soft_bellman_target",
           "critic_regression_loss", "Algorithm", "PRESETS", "PAPER_ALPHA", "register", "temperatures",
           "exact_optimistic_elbo", "exact_optimistic_elbo_terms", "optimistic_optimum"]

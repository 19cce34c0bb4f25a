r"""Figure 1 as a graph read off the Pyro model's own execution, and a drawing of it.

Agent i's model (eq. 2-3) and the guide (eq. 4) factorize over the sites ``s_{t}``, ``a_{j}_{t}``, ``o_{t}``:

.. math::

    p_i(\tau, o_i) = p(s^{(0)}) \prod_{t=0}^{H-1} \mathcal U(a_i^{(t)}) \prod_{j \ne i} \pi_j(a_j^{(t)} \mid s^{(t)})
        \, p(o_i^{(t)} = 1 \mid s^{(t)}, a^{(t)}) \prod_{t=0}^{H-2} p(s^{(t+1)} \mid s^{(t)}, a^{(t)}),

    q_{\theta_i}(\tau) = p(s^{(0)}) \prod_{t} \prod_{j} \pi_j(a_j^{(t)} \mid s^{(t)}) \prod_{t} p(s^{(t+1)} \mid s^{(t)}, a^{(t)}).

The edge ``u -> v`` means "u is an argument of v's factor". It is found in two steps, both from running the model:

1. *provenance* (:func:`pyro.infer.inspect.get_dependencies`): every sampled value is tagged with its site name
   and the tags flow through torch ops into ``log_prob`` of each later site. This is sound (no edge is missed)
   but tensor-level: ``torch.where(is_ego, 0, logits)`` (the ego's uniform prior, selected from the policy
   logits over the ego plate) inherits the provenance of ``s_t`` although no entry of it depends on ``s_t``.
2. *intervention*: an edge is dropped when replacing ``u`` by every alternative value (its support, or
   perturbations) while holding all other values fixed leaves :math:`\log p(v \mid \cdot)` unchanged, i.e.
   ``v``'s factor does not depend on ``u``. This removes ``s^{(t)} \to a_i^{(t)}`` and nothing else.

A simulator (a world with ``black_box = True``, e.g. :class:`~pgm_marl.models.worlds.SimulatorWorld`) is a
black box to provenance; its outputs are attributed to all of its inputs ``(s^{(t)}, a^{(t)})``, as provenance
does for any op. Its cached steps make interventions on its inputs invisible, so there only edges into action
sites are tested.
"""
from __future__ import annotations

import torch
import networkx as nx
from pyro import poutine
from pyro.infer.inspect import get_dependencies
from pyro.ops.provenance import ProvenanceTensor, detach_provenance, get_provenance
from pyro.poutine.runtime import NonlocalExit

from .agent_mdp import agent_model, ego_indices
from .distributions import SimulatorStep
from .guide import policy_guide

__all__ = ["model_graph", "guide_graph", "draw_model_graph"]

_KINDS = ("state", "own_action", "other_action", "optimality")


class _TrackedStep(SimulatorStep):
    """A simulator step whose (zero) log-density carries the provenance of the simulator's inputs."""

    def __init__(self, value, provenance):
        super().__init__(value)
        self.provenance = provenance

    def expand(self, batch_shape, _instance=None):
        return _TrackedStep(super().expand(batch_shape).value, self.provenance)

    def log_prob(self, value):
        return ProvenanceTensor(detach_provenance(super().log_prob(value)), self.provenance)


class _BlackBox:
    """Wraps a simulator world: its outputs depend on all its inputs (``s_t`` and ``a^t``)."""

    def __init__(self, world):
        self.world = world

    def __getattr__(self, name):
        return getattr(self.world, name)

    @staticmethod
    def _inputs(s, actions):
        prov = get_provenance(s).union(*(get_provenance(a) for a in actions))
        return detach_provenance(s), [detach_provenance(a) for a in actions], prov

    def log_likelihood(self, s, actions, egos, t):
        s, actions, prov = self._inputs(s, actions)
        return ProvenanceTensor(self.world.log_likelihood(s, actions, egos, t), prov)

    def transition(self, s, actions, t):
        s, actions, prov = self._inputs(s, actions)
        return _TrackedStep(self.world.transition(s, actions, t).value, prov)


def _alternatives(site):
    """Values other than the recorded one: the support if enumerable, else perturbations and fresh draws."""
    value, fn = detach_provenance(site["value"]), site["fn"]
    if fn.has_enumerate_support:
        cands = list(fn.enumerate_support(expand=False).reshape(-1))
    else:
        cands = [value.flip(-1), value + 1.0] + [fn.sample() for _ in range(2)]
    cands = [c.expand(value.shape) for c in cands]
    return [c for c in cands if not torch.equal(c, value)]


def _depends(model, args, kwargs, base, parent, child) -> bool:
    """Does ``log p(child | .)`` change when ``parent`` is replaced, all other recorded values held fixed?"""
    value = base.nodes[child]["value"]
    before = base.nodes[child]["fn"].log_prob(value)
    data = {n: m["value"] for n, m in base.nodes.items() if m["type"] == "sample" and "kind" in m["infer"]}
    for alt in _alternatives(base.nodes[parent]):
        run = poutine.escape(poutine.condition(model, {**data, parent: alt}), lambda m: m["name"] == child)
        try:
            run(*args, **kwargs)
        except NonlocalExit as stop:
            if not torch.allclose(stop.site["fn"].log_prob(value), before):
                return True
        except Exception:  # the intervened run cannot reach the child: keep the edge (cannot refute it)
            return True
    return False


def _graph(fn, world, policies, agent: int, refine: bool, kwargs) -> nx.DiGraph:
    if not isinstance(agent, int):
        raise ValueError(f"agent={agent!r}: the graph is agent i's model; accepted: an int in 0..{world.n_agents - 1}")
    ego_indices(agent, world.n_agents)  # validates the index
    opaque = world.black_box
    world = _BlackBox(world) if opaque else world
    args = (world, policies)
    kwargs = {"agent": agent, **kwargs}
    deps = get_dependencies(fn, args, kwargs)["prior_dependencies"]
    with torch.no_grad():
        base = poutine.trace(fn).get_trace(*args, **kwargs)
    g = nx.DiGraph(agent=agent, horizon=world.horizon, n_agents=world.n_agents, model=fn.__name__)
    for name, site in base.nodes.items():
        if site["type"] != "sample" or "kind" not in site["infer"]:
            continue
        info, t = site["infer"], site["infer"]["t"]
        kind = {"state": "state", "optimality": "optimality"}.get(info["kind"])
        attrs = {"t": t, "observed": bool(site["is_observed"])}
        if kind is None:
            j = info["agent"]
            kind = "own_action" if j == agent else "other_action"
            attrs.update(agent=j, label=rf"$a_{j}^{{({t})}}$")
        else:
            attrs["label"] = rf"$s^{{({t})}}$" if kind == "state" else rf"$o_{agent}^{{({t})}}$"
        g.add_node(name, kind=kind, environment=kind in ("state", "other_action"), **attrs)
    for child, parents in deps.items():
        for parent in parents:
            if parent == child:
                continue
            test = refine and (not opaque or g.nodes[child]["kind"].endswith("action"))
            if not test or _depends(fn, args, kwargs, base, parent, child):
                g.add_edge(parent, child)
    return g


def model_graph(world, policies, agent: int, refine: bool = True, **model_kwargs) -> nx.DiGraph:
    """Figure 1 for agent ``agent``: the sites of :func:`agent_model` and the arguments of their factors (eq. 2-3).

    Nodes are site names with attributes ``kind`` (one of ``"state"``, ``"own_action"``, ``"other_action"``,
    ``"optimality"``), ``observed``, ``t``, ``agent`` (actions), ``label`` (mathtext) and ``environment``
    (True for :math:`s^{(t)}` and :math:`a_{-i}^{(t)}`, the box of Figure 1). ``refine=False`` keeps the raw
    provenance edges (with :math:`s^{(t)} \\to a_i^{(t)}`). ``model_kwargs`` go to :func:`agent_model`.
    """
    return _graph(agent_model, world, policies, agent, refine, model_kwargs)


def guide_graph(world, policies, agent: int, refine: bool = True, **guide_kwargs) -> nx.DiGraph:
    """The factorization of ``q_{theta_i}`` (eq. 4), read off :func:`policy_guide` like :func:`model_graph`."""
    return _graph(policy_guide, world, policies, agent, refine, guide_kwargs)


def _positions(g: nx.DiGraph) -> dict:
    """Layered layout: x grows with t; rows (top to bottom) o_i, a_i, a_j (j != i), s."""
    n, ego = g.graph["n_agents"], g.graph["agent"]
    others = [j for j in range(n) if j != ego]
    pos = {}
    for v, d in g.nodes(data=True):
        x0 = 3.0 * d["t"]
        if d["kind"] == "state":
            pos[v] = (x0, 0.0)
        elif d["kind"] == "other_action":
            pos[v] = (x0 + 1.0, float(n - 1 - others.index(d["agent"])))
        elif d["kind"] == "own_action":
            pos[v] = (x0 + 1.0, float(n))
        else:
            pos[v] = (x0 + 2.0, n + 1.0)
    return pos


def draw_model_graph(graph: nx.DiGraph, path=None, ax=None, title: str | None = None):
    """Draw ``graph`` in a layered time-left-to-right layout; observed nodes shaded, environment boxes dashed.

    Saves to ``path`` (PNG, SVG, ... by extension) when given; returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    pos = _positions(graph)
    n, H = graph.graph["n_agents"], graph.graph["horizon"]
    if ax is None:
        fig, ax = plt.subplots(figsize=(2.2 + 2.4 * H, 1.6 + 1.1 * n))
    fig = ax.figure
    for t in range(H):  # the environment box of Figure 1: s^(t) and a_{-i}^(t)
        xs = [pos[v][0] for v, d in graph.nodes(data=True) if d["environment"] and d["t"] == t]
        ys = [pos[v][1] for v, d in graph.nodes(data=True) if d["environment"] and d["t"] == t]
        ax.add_patch(FancyBboxPatch((min(xs) - 0.45, min(ys) - 0.45), max(xs) - min(xs) + 0.9,
                                    max(ys) - min(ys) + 0.9, boxstyle="round,pad=0.05", fill=False,
                                    linestyle="--", edgecolor="tab:gray", zorder=0))
    colors = ["0.75" if d["observed"] else "white" for _, d in graph.nodes(data=True)]
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_color=colors, edgecolors="black", node_size=900)
    nx.draw_networkx_labels(graph, pos, ax=ax, labels=dict(graph.nodes(data="label")), font_size=11)
    for into_o, rad in ((False, 0.08), (True, -0.35)):  # bend s -> o away from the actions it would cross
        edges = [(u, v) for u, v in graph.edges if (graph.nodes[v]["kind"] == "optimality"
                                                   and graph.nodes[u]["kind"] == "state") == into_o]
        nx.draw_networkx_edges(graph, pos, ax=ax, edgelist=edges, node_size=900, arrowsize=12, width=0.9,
                               connectionstyle=f"arc3,rad={rad}", edge_color="0.25")
    ax.set_title(title or f"{graph.graph['model']}: agent {graph.graph['agent']}, H = {H}")
    ax.set_axis_off()
    ax.margins(0.08)
    if path is not None:
        fig.savefig(path, bbox_inches="tight")
    return fig

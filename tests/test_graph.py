"""Figure 1 graphs read off the model's trace (pgm_marl.models.graph) against the factorization of eq. 2-4."""
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402

from pgm_marl.models.graph import draw_model_graph, guide_graph, model_graph  # noqa: E402
from pgm_marl.models.tabular import TabularMarkovGame, random_policies  # noqa: E402
from pgm_marl.models.worlds import TabularPolicies, TabularWorld  # noqa: E402

H, N = 3, 2


@pytest.fixture(scope="module")
def tabular():
    game = TabularMarkovGame.random(n_states=4, action_sizes=(2, 3), horizon=H, seed=0)
    return TabularWorld(game), TabularPolicies(random_policies(game, seed=1))


def expected_edges(i, model=True):
    """By hand from eq. 2-3 (model of agent i) or eq. 4 (guide): parents of each factor, H = 3, two agents."""
    edges = set()
    for t in range(H):
        acts = [f"a_{j}_{t}" for j in range(N)]
        # pi_j(a_j | s) for j != i in the model (the ego's prior is uniform: no parent); every j in the guide
        edges |= {(f"s_{t}", a) for j, a in enumerate(acts) if j != i or not model}
        if model:  # p(o_i = 1 | s, a) = exp(r_i(s, a))
            edges |= {(f"s_{t}", f"o_{t}")} | {(a, f"o_{t}") for a in acts}
        if t + 1 < H:  # p(s' | s, a)
            edges |= {(f"s_{t}", f"s_{t + 1}")} | {(a, f"s_{t + 1}") for a in acts}
    return edges


@pytest.mark.parametrize("estimator", ["reparam", "score"])
@pytest.mark.parametrize("i", [0, 1])
def test_model_edges_are_eq_2_3(tabular, i, estimator):
    g = model_graph(*tabular, i, estimator=estimator)
    assert set(g.edges) == expected_edges(i)
    assert nx_is_dag(g)


@pytest.mark.parametrize("i", [0, 1])
def test_raw_provenance_adds_only_state_to_own_action(tabular, i):
    raw = set(model_graph(*tabular, i, refine=False).edges)
    assert raw - expected_edges(i) == {(f"s_{t}", f"a_{i}_{t}") for t in range(H)}
    assert expected_edges(i) <= raw


@pytest.mark.parametrize("i", [0, 1])
def test_guide_edges_are_eq_4(tabular, i):
    assert set(guide_graph(*tabular, i).edges) == expected_edges(i, model=False)


def test_node_attributes(tabular):
    g = model_graph(*tabular, 1)
    assert set(g.nodes) == {f"s_{t}" for t in range(H)} | {f"o_{t}" for t in range(H)} | {
        f"a_{j}_{t}" for j in range(N) for t in range(H)}
    for t in range(H):
        s, own, other, o = (g.nodes[n] for n in (f"s_{t}", f"a_1_{t}", f"a_0_{t}", f"o_{t}"))
        assert (s["kind"], own["kind"], other["kind"], o["kind"]) == ("state", "own_action", "other_action", "optimality")
        assert all(d["t"] == t for d in (s, own, other, o))
        assert (s["environment"], other["environment"], own["environment"], o["environment"]) == (True, True, False, False)
        assert o["observed"] and not (s["observed"] or own["observed"] or other["observed"])
        assert (own["agent"], other["agent"]) == (1, 0)
        assert o["label"] == f"$o_1^{{({t})}}$" and s["label"] == f"$s^{{({t})}}$"


def test_rejects_several_egos(tabular):
    with pytest.raises(ValueError, match="agent"):
        model_graph(*tabular, None)


@pytest.mark.parametrize("ext", ["png", "svg"])
def test_draw_writes_file(tabular, tmp_path, ext):
    path = tmp_path / f"fig1.{ext}"
    fig = draw_model_graph(model_graph(*tabular, 0), path)
    assert path.stat().st_size > 1000 and fig.axes
    if ext == "png":
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert b"<svg" in path.read_bytes()[:2000]


def test_example_draws_tabular_and_mpe(tmp_path):
    pytest.importorskip("mpe2")
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, str(root / "examples" / "draw_model.py"), "--out", str(tmp_path)],
                         cwd=root, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    for name in ("tabular_agent0.png", "tabular_agent1.png", "spread_agent0.png"):
        assert (tmp_path / name).stat().st_size > 1000


def nx_is_dag(g):
    import networkx as nx

    return nx.is_directed_acyclic_graph(g)

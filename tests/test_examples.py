"""Every example runs (tiny budgets). derive_variant and draw_model have their own tests."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_elbo_on_tabular_game_example_runs():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "elbo_on_tabular_game.py"), "--particles", "500"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "exact ELBO_i per agent" in out.stdout and "SVI steps" in out.stdout


def test_derive_optimistic_example_runs():
    """The optimistic guide in the open (SVI vs exact enumeration), its preset, the climbing-game table (tiny)."""
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "derive_optimistic.py"), "--tiny"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "log p(o_0 = 1)" in out.stdout and "differs from masac in ['guide', 'others']" in out.stdout
    assert out.stdout.count("(a") >= 6  # a joint action for each of the six algorithms

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

"""benchmarks/plot_runs.py: every group of a figure can be told apart, and a crowded figure still gets a legend."""
import sys
from pathlib import Path

import matplotlib.image
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from plot_runs import LEGEND_INSIDE, group_styles, load_group, plot  # noqa: E402


def test_each_group_has_its_own_colour_and_line_style_and_none_is_the_baselines_grey():
    styles = group_styles(36)
    assert len({(s["color"], s["linestyle"]) for s in styles}) == 36
    assert "C7" not in {s["color"] for s in styles}  # C7 is grey, the baseline's dashes
    assert group_styles(9) == styles[:9] and {s["linestyle"] for s in styles[:9]} == {"-"}  # solid first


def test_more_groups_than_styles_is_a_one_line_error():
    with pytest.raises(SystemExit, match="37 groups: at most 36"):
        group_styles(37)


def _run(folder: Path, returns) -> None:
    folder.mkdir(parents=True)
    rows = ["episode,env_steps,wall_seconds,return/all"]
    rows += [f"{100 * (k + 1)},{2500 * (k + 1)},{1.5 * (k + 1)},{r}" for k, r in enumerate(returns)]
    (folder / "metrics.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("count", [2, LEGEND_INSIDE + 2])
def test_plot_writes_the_figure_with_the_legend_inside_or_below(tmp_path, count):
    groups = []
    for g in range(count):
        for seed in range(2):
            _run(tmp_path / f"g{g}_s{seed}", [-30.0 + g + seed, -20.0 + g, -15.0 + g])
        groups.append(load_group(f"group {g}", str(tmp_path / f"g{g}_s*"), None, last=2))
    out = tmp_path / "fig.png"
    plot(groups, out, None, -25.0, "random", None, axes=("env_steps", "wall_seconds"))
    height, width = matplotlib.image.imread(out).shape[:2]
    # two panels of 7 x 4.5 inches at 120 dpi, cropped to what is drawn; a legend below makes the figure taller
    assert width > 1200
    assert (height > 560) == (count > LEGEND_INSIDE)

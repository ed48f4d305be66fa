import json

import pytest

from napari_cxdi.cli import main
from napari_cxdi.io import open_movie, read_table


def test_simulate_and_info(tmp_path, capsys):
    out = tmp_path / "aunp.cxi"
    assert main(["simulate", "aunp", "-o", str(out), "--frames", "3", "--size", "64", "--seed", "4"]) == 0
    movie = open_movie(out)
    assert movie.shape == (3, 64, 64) and movie.probe.shape[0] == 4
    assert len(read_table(out, "trajectories")) > 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [3, 64, 64] and info["pixel_size_nm"] == pytest.approx(27.035, abs=0.01)


def test_simulate_match_fluence_lowers_the_photons(tmp_path, capsys):
    full, matched = tmp_path / "full.cxi", tmp_path / "matched.cxi"
    assert main(["simulate", "chart", "-o", str(full), "--frames", "1", "--size", "64", "--no-noise"]) == 0
    assert main(["simulate", "chart", "-o", str(matched), "--frames", "1", "--size", "64", "--no-noise", "--match-fluence"]) == 0
    ratio = float(open_movie(matched).data.sum()) / float(open_movie(full).data.sum())
    assert 0.02 < ratio < 0.05  # (0.93 um / 5 um)^2: the chart's probe shrunk to half of 64 px


def test_chart_and_errors(tmp_path, capsys):
    out = tmp_path / "chart.cxi"
    assert main(["simulate", "chart", "-o", str(out), "--frames", "2", "--size", "64"]) == 0
    assert main(["simulate", "chart", "-o", str(out), "--frames", "2", "--size", "64"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.h5")]) == 2
    assert "missing.h5: file not found" in capsys.readouterr().err
    assert main(["simulate", "aunp", "-o", str(tmp_path / "x.cxi"), "--frames", "0"]) == 2

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


def test_chart_and_errors(tmp_path, capsys):
    out = tmp_path / "chart.cxi"
    assert main(["simulate", "chart", "-o", str(out), "--frames", "2", "--size", "64"]) == 0
    assert main(["simulate", "chart", "-o", str(out), "--frames", "2", "--size", "64"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.h5")]) == 2
    assert "missing.h5: file not found" in capsys.readouterr().err
    assert main(["simulate", "aunp", "-o", str(tmp_path / "x.cxi"), "--frames", "0"]) == 2

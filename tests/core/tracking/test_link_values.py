"""Linking by value: default pixel size and memory, output columns and dtypes, ties in the renumbering,
only y and x as positions, and no side effects on logging (issue 20)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from napari_cxdi.tracking import link


def _line(n_frames=4, step=1.0, skip=()):
    rows = [(t, 5.0 + step * t, 5.0) for t in range(n_frames) if t not in skip]
    return pd.DataFrame(rows, columns=["frame", "y", "x"])


def test_default_pixel_size_and_memory():
    f = _line(step=1.0)
    # default pixel size 1 nm: 1.5 nm is 1.5 px, a 1 px step links
    assert link.link_tracks(f, 1.5)["particle"].nunique() == 1
    assert link.link_tracks(f, 0.9)["particle"].nunique() == 4
    # default memory 1: one missed frame is bridged, two are not
    assert link.link_tracks(_line(6, skip=(2,)), 2.5)["particle"].nunique() == 1
    assert link.link_tracks(_line(6, skip=(2, 3)), 3.5)["particle"].nunique() == 2
    assert link.link_tracks(_line(6, skip=(2, 3)), 3.5, memory=2)["particle"].nunique() == 1


def test_output_columns_index_and_dtypes():
    f = _line()
    f["diameter_nm"] = 50.0
    f.index = [10, 11, 12, 13]  # a non-default index is not carried into the output as a column
    out = link.link_tracks(f, 1.5)
    assert out.columns.tolist() == ["frame", "y", "x", "diameter_nm", "particle"]
    assert out.index.tolist() == [0, 1, 2, 3] and out["particle"].dtype.kind == "i"
    empty = link.link_tracks(f.iloc[:0], 1.5)
    assert empty.columns.tolist() == ["frame", "y", "x", "diameter_nm", "particle"]
    assert empty["particle"].dtype.kind == "i"
    t = link.filter_tracks(pd.DataFrame({"particle": [4, 4, 9], "frame": [0, 1, 0], "y": [0.0, 1.0, 5.0], "x": [0.0] * 3}))
    assert t.columns.tolist() == ["particle", "frame", "y", "x"] and t["particle"].dtype.kind == "i"
    tab = link.track_table(t.iloc[:0])
    assert all(tab[c].dtype == float for c in tab.columns)
    assert link.point_speeds(t).dtype == np.float64


def test_a_z_column_is_not_a_position():
    f = _line()
    f["z"] = [0.0, 100.0, 0.0, 100.0]  # e.g. a focus value: linking uses y and x only
    assert link.link_tracks(f, 1.5)["particle"].nunique() == 1


def test_renumbering_breaks_ties_by_the_old_id():
    # 20 tracks of 2 detections; first frames 0..2 with many ties: new ids follow (first frame, old id)
    first = np.random.default_rng(0).integers(0, 3, 20)
    rows = []
    for p, f0 in enumerate(first):
        rows += [(p, int(f0), float(p), 0.0), (p, int(f0) + 1, float(p), 1.0)]
    t = pd.DataFrame(rows, columns=["particle", "frame", "y", "x"])
    out = link.filter_tracks(t)
    order = sorted(range(20), key=lambda p: (first[p], p))
    expected = {old: new for new, old in enumerate(order)}
    got = out.groupby("particle")["y"].first()  # y holds the old id
    assert {int(y): int(new) for new, y in got.items()} == expected


def test_linking_does_not_change_the_root_logger():
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.DEBUG)
        link.link_tracks(_line(), 1.5)
        assert root.level == logging.DEBUG
        assert logging.getLogger("trackpy").level == logging.WARNING
    finally:
        root.setLevel(level)

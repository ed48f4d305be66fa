"""A dock's progress signal is coalesced (a Qt progress bar repaints synchronously on every value)."""

import time

from napari_cxdi.sessions._base import RunSession


def test_progress_is_coalesced_but_first_last_and_new_totals_always_arrive():
    s = RunSession()
    got = []
    s.progress_changed.connect(lambda d, t: got.append((d, t)))
    for i in range(101):
        s.set_progress(i, 100)
    assert got[0] == (0, 100) and got[-1] == (100, 100)
    assert len(got) <= 3  # 101 updates within far less than 0.1 s
    s.set_progress(3, 50)  # a new total (a new stage) is shown at once
    assert got[-1] == (3, 50)
    time.sleep(s.progress_interval_s + 0.02)
    s.set_progress(7, 50)  # after the interval an intermediate value goes through
    assert got[-1] == (7, 50)
    s.set_progress(7, 50)  # no duplicates
    assert got.count((7, 50)) == 1
    s.set_progress(0, 0)  # reset after cancel
    assert got[-1] == (0, 0)

"""Live sessions know the run's pixel size (from the events, or from a live output when resuming)."""

import numpy as np

from napari_cxdi.live import LiveOutput, LiveSession, read_live_output


def _event(start, n=2, m=8, **extra):
    return {"event": "frames", "start": start, "counts": np.ones((n, m, m), np.float32),
            "objects": np.ones((n, m, m), np.complex64), "tracks": None, **extra}


def test_session_takes_the_pixel_size_from_the_events():
    s = LiveSession()
    assert s.pixel_size_nm is None
    assert s.add(_event(0, pixel_size_nm=None)) and s.pixel_size_nm is None
    assert s.add(_event(2, pixel_size_nm=12.5)) and s.pixel_size_nm == 12.5
    assert s.add(_event(4)) and s.pixel_size_nm == 12.5  # an event without one keeps it


def test_live_output_carries_the_pixel_size_back(tmp_path):
    m = 8
    for px, expected in ((17.5, 17.5), (None, None)):
        path = tmp_path / f"out_{px}.cxi"
        out = LiveOutput.open(path, source=tmp_path / "src.h5", m=m, probe=np.ones((1, m, m), np.complex64),
                              config={}, metadata={"pixel_size_nm": px} if px else {})
        out.close(complete=True)
        data = read_live_output(path)
        assert (data["pixel_size_nm"] is None) if expected is None else np.isclose(data["pixel_size_nm"], expected)
        s = LiveSession()
        s.load(path)
        assert s.pixel_size_nm == (None if expected is None else data["pixel_size_nm"])

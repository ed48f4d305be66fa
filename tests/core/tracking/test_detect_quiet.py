"""trackpy's per-frame chatter ("No maxima survived ...", "All local maxima were in the margins") must not
reach the user: an empty frame is reported by its count (0) in the progress events and the table."""

import warnings

import numpy as np

from napari_cxdi.progress import drain
from napari_cxdi.tracking.detect import DetectionConfig, iter_detect


def test_trackpy_detection_of_empty_frames_warns_nothing_and_counts_zero():
    rng = np.random.default_rng(0)
    movie = rng.normal(0.0, 0.01, (3, 64, 64))
    movie[1, 28:36, 28:36] -= 1.0  # one dark particle in frame 1 only; frames 0 and 2 are empty
    events = []
    gen = iter_detect(movie, DetectionConfig(method="trackpy", diameter_nm=80.0, min_diameter_nm=1.0),
                      pixel_size_nm=10.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = drain(gen, events.append)
    assert [str(w.message) for w in caught if w.category is UserWarning] == []
    counts = [e["count"] for e in events if e.get("event") == "progress"]
    assert counts[0] == 0 and counts[2] == 0 and counts[1] >= 1
    assert set(table["frame"]) == {1}
    # the filter is scoped to the detection: a user's own warnings still show afterwards
    with warnings.catch_warnings(record=True) as after:
        warnings.simplefilter("always")
        warnings.warn("mine", UserWarning)
    assert [str(w.message) for w in after] == ["mine"]

"""Value tests of io/validate.py (issue 20, mutation testing): each check's typed error with its exact
message (file, frame, pixel), the boundaries that pass, the streaming summary and its cache.
"""

from __future__ import annotations

import os

import dask.array as da
import numpy as np
import pytest

from napari_cxdi.errors import DataValidationError, InputFileError, ProbeMismatchError
from napari_cxdi.io import validate
from napari_cxdi.io.mask import DetectorMask
from napari_cxdi.progress import drain
from napari_cxdi.io.movie import Movie
from napari_cxdi.io.validate import (
    MAX_FRAME_SIDE, MAX_FRAMES, as_frame_stack, check_counts, check_dtype, check_measured, check_movie, check_probe,
    check_readable, iter_check_movie,
)


@pytest.fixture(autouse=True)
def _empty_cache():
    validate._CHECKED.clear()
    yield
    validate._CHECKED.clear()


def test_check_readable(tmp_path):
    with pytest.raises(InputFileError, match="file not found$"):
        check_readable(tmp_path / "none")
    os.symlink(tmp_path / "gone", tmp_path / "link")
    with pytest.raises(InputFileError, match=rf"is a symbolic link to a missing file \({tmp_path / 'gone'}\)"):
        check_readable(tmp_path / "link")
    with pytest.raises(InputFileError, match="is a folder, not a file; choose the movie file inside it"):
        check_readable(tmp_path)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(InputFileError, match=r"the file is empty \(0 bytes\)") as info:
        check_readable(tmp_path / "empty")
    assert info.value.path == str(tmp_path / "empty")
    (tmp_path / "one").write_bytes(b"x")
    check_readable(tmp_path / "one")
    check_readable(str(tmp_path / "one"))


def test_as_frame_stack():
    assert as_frame_stack((8, 9), "w") == (1, 8, 9)
    assert as_frame_stack([3, 8, 9], "w") == (3, 8, 9)
    assert as_frame_stack((3, 1, 8, 9), "w") == (3, 8, 9)
    assert as_frame_stack((np.int64(2), 2, 2), "w") == (2, 2, 2) and type(as_frame_stack((np.int64(2), 2, 2), "w")[0]) is int
    assert as_frame_stack((MAX_FRAMES, MAX_FRAME_SIDE, 2), "w") == (MAX_FRAMES, MAX_FRAME_SIDE, 2)
    assert (MAX_FRAMES, MAX_FRAME_SIDE) == (10_000_000, 65_536)
    with pytest.raises(DataValidationError, match=r"w: expected a diffraction movie \[frames, H, W\], got 4-D data of shape \(3, 2, 8, 9\)"):
        as_frame_stack((3, 2, 8, 9), "w")
    with pytest.raises(DataValidationError, match="got 1-D data of shape"):
        as_frame_stack((9,), "w")
    with pytest.raises(DataValidationError, match=r"w: the movie is empty \(shape \(0, 8, 9\)\)"):
        as_frame_stack((0, 8, 9), "w")
    for shape in ((3, 0, 9), (3, 1, 0, 9), (8, 0)):
        with pytest.raises(DataValidationError, match="the movie is empty"):
            as_frame_stack(shape, "w")
    for shape in ((MAX_FRAMES + 1, 8, 8), (2, MAX_FRAME_SIDE + 1, 8), (2, 8, MAX_FRAME_SIDE + 1), (2, 1, 8), (2, 8, 1)):
        with pytest.raises(DataValidationError, match=r"w: declared shape .* is not a plausible diffraction movie \(at most "
                                                      r"10000000 frames of at most 65536 pixels a side, at least 2x2\); the file is probably corrupt"):
            as_frame_stack(shape, "w")


def test_check_dtype():
    for ok in (np.uint8, np.int32, np.float32, np.float64, np.bool_):
        check_dtype(np.dtype(ok), "w")
    with pytest.raises(DataValidationError, match=r"w: diffraction counts must be real, the data are complex \(complex64\)"):
        check_dtype(np.dtype(np.complex64), "w")
    with pytest.raises(DataValidationError, match=r"w: diffraction counts must be numeric, got dtype <U3"):
        check_dtype(np.dtype("U3"), "w")
    with pytest.raises(DataValidationError, match="must be numeric"):
        check_dtype(np.dtype(object), "w")


def test_check_measured():
    frames = np.ones((3, 2, 2), np.float32)
    check_measured(frames, DetectorMask(), "w")
    frames[1] = np.nan
    frames[1, 0, 0] = -2.0
    with pytest.raises(DataValidationError, match=r"w: frame 11 has no measured pixel \(3 NaN or infinite, 1 negative counts, "
                                                  r"the rest masked or invalid\); check the dataset and the mask"):
        check_measured(frames, DetectorMask(), "w", first_frame=10)
    ints = np.array([[[65535, 3], [4, 5]], [[1, 1], [1, 1]]], np.uint16)
    bad = np.array([[False, True], [True, True]])
    with pytest.raises(DataValidationError, match=r"frame 0 has no measured pixel \(0 NaN or infinite, 0 negative counts"):
        check_measured(ints, DetectorMask.for_dtype(np.uint16, bad=bad), "w")
    check_measured(ints, DetectorMask.for_dtype(np.uint16), "w")
    signed = np.full((1, 2, 2), -1, np.int16)
    with pytest.raises(DataValidationError, match=r"\(0 NaN or infinite, 4 negative counts"):
        check_measured(signed, DetectorMask(), "w")


def test_check_counts_messages():
    f = np.ones((3, 4, 5), np.float32)
    check_counts(f, "w")
    f[2, 1, 3] = np.nan
    f[2, 3, 0] = np.inf
    with pytest.raises(DataValidationError, match=r"w: frame 7 contains NaN or infinite counts \(first at pixel y=1, x=3; 2 pixels "
                                                  r"in this block\); mask those pixels or fix the file"):
        check_counts(f, "w", first_frame=5)
    with pytest.raises(DataValidationError, match=r"frame 2 contains NaN or infinite counts \(first at pixel y=3, x=0; 1 pixels"):
        check_counts(f, "w", allow_unmeasured=True)
    mask = np.zeros((4, 5), bool)
    mask[1, 3] = mask[3, 0] = True
    check_counts(f, "w", mask=mask)
    check_counts(f[2], "w", mask=mask)  # 2-D: one frame
    g = np.ones((2, 3, 3), np.int32)
    g[1, 2, 1] = -7
    g[1, 2, 2] = -1
    with pytest.raises(DataValidationError, match=r"w: frame 4 contains negative counts \(first at pixel y=2, x=1: -7\); mask or clip detector gaps first"):
        check_counts(g, "w", first_frame=3)
    m = np.zeros((3, 3), bool)
    m[2, 1:] = True
    check_counts(g, "w", mask=m)
    m[2, 2] = False
    with pytest.raises(DataValidationError, match=r"y=2, x=2: -1\)"):
        check_counts(g, "w", mask=m)
    neg = np.ones((1, 2, 2), np.float64)
    neg[0, 1, 1] = -0.5
    with pytest.raises(DataValidationError, match=r"y=1, x=1: -0\.5"):
        check_counts(neg, "w")
    nan_neg = np.full((1, 2, 2), np.nan)
    nan_neg[0, 0, 1] = -1.0
    with pytest.raises(DataValidationError, match="negative counts"):
        check_counts(nan_neg, "w", allow_unmeasured=True)
    check_counts(np.full((1, 2, 2), 65535, np.uint16), "w")
    with pytest.raises(DataValidationError, match=r"w: diffraction counts must be real, the data are complex \(complex128\)"):
        check_counts(np.ones((1, 2, 2), complex), "w")


def test_check_probe():
    p = np.ones((2, 8, 9), np.complex128)
    out = check_probe(p, (5, 8, 9))
    assert out.dtype == np.complex64 and out.shape == (2, 8, 9)
    assert check_probe(np.ones((8, 9)), (8, 9)).shape == (1, 8, 9)
    with pytest.raises(ProbeMismatchError, match=r"P: probe frames are 8x9 but the diffraction frames are 8x10"):
        check_probe(p, (3, 8, 10), where="P")
    with pytest.raises(ProbeMismatchError, match=r"probe: probe frames are 8x9 but the diffraction frames are 9x9"):
        check_probe(p, (9, 9))
    with pytest.raises(ProbeMismatchError, match=r"P: a probe must be numeric \(complex\), got dtype <U1"):
        check_probe(np.array([["a"]]), (1, 1), where="P")
    for bad in (np.ones(9), np.ones((1, 2, 8, 9)), np.ones((0, 8, 9)), np.ones((1, 1, 9)), np.ones((1, 9, 1))):
        with pytest.raises(ProbeMismatchError, match=r"P: a probe must be \[modes, H, W\] \(H, W >= 2\), got shape"):
            check_probe(bad, (8, 9), where="P")
    assert check_probe(np.ones((1, 2, 2)), (2, 2)).shape == (1, 2, 2)
    q = p.copy()
    q[1, 2, 3] = np.inf
    with pytest.raises(DataValidationError, match="P: the probe contains NaN or infinite values"):
        check_probe(q, (8, 9), where="P")
    with pytest.raises(DataValidationError, match="P: the probe is zero everywhere"):
        check_probe(np.zeros((1, 8, 9)), (8, 9), where="P")


def _drain(gen):
    """(events, result) of a progress generator, through the project's own drain."""
    events = []
    return events, drain(gen, events.append)


def test_iter_check_movie_progress_and_summary():
    data = np.zeros((5, 3, 3), np.float32)
    data[:, 1, 1] = [1, 2, 3, 4, 5]
    data[4, 0, 0] = 7
    events, summary = _drain(iter_check_movie(data, "w", block=2))
    assert [e["done"] for e in events] == [0, 2, 4, 5] and all(e["total"] == 5 for e in events)
    assert all(e["event"] == "progress" and e["stage"] == "validate" for e in events)
    assert summary == {"frames": 5, "total_counts": 22.0, "max_count": 7.0, "invalid_pixels": 0, "invalid_frames": 0}
    mask = np.zeros((3, 3), bool)
    mask[0, 0] = True
    assert check_movie(data, "w", mask=mask)["max_count"] == 5.0
    assert check_movie(data[0, :, :] + 2, "w")["frames"] == 1
    lazy = da.from_array(data, chunks=(1, 3, 3))
    assert check_movie(lazy, "w") == summary
    assert check_movie(Movie(data), "w") == summary
    with pytest.raises(DataValidationError, match=r"w: all 5 frames are zero \(no counts\); check the dataset, the exposure or the detector mask"):
        check_movie(np.zeros((5, 3, 3)), "w")
    only = np.zeros((2, 3, 3))
    only[:, 0, 0] = 4
    with pytest.raises(DataValidationError, match=r"all 2 frames are zero \(no counts outside the mask\)"):
        check_movie(only, "w", mask=mask)
    with pytest.raises(DataValidationError, match=r"w: expected a movie \[frames, H, W\], got shape \(2, 2, 3, 3\)"):
        check_movie(np.ones((2, 2, 3, 3)), "w")
    with pytest.raises(DataValidationError, match=r"got shape \(0, 3, 3\)"):
        check_movie(np.ones((0, 3, 3)), "w")
    with pytest.raises(DataValidationError, match=r"w: the mask is \(2, 2\), the frames are \(3, 3\)"):
        check_movie(data, "w", mask=np.zeros((2, 2), bool))
    with pytest.raises(DataValidationError, match="must be real"):
        check_movie(np.ones((1, 3, 3), complex), "w")
    bad = data.copy()
    bad[3, 2, 1] = np.nan
    with pytest.raises(DataValidationError, match="w: frame 3 contains NaN"):
        check_movie(bad, "w")
    with pytest.raises(DataValidationError, match="^movie: frame 3"):
        check_movie(bad)
    with pytest.raises(DataValidationError, match=r"^m\.npy: frame 3"):
        check_movie(Movie(bad, path="m.npy"))


def test_iter_check_movie_with_a_detector_mask():
    data = np.ones((4, 3, 3), np.uint16) * 2
    data[1, 0, 1] = 65535  # gap sentinel in a good pixel
    data[2, 2, 2] = 65535  # in the static bad pixel: not counted
    data[3, 1, 0] = 900  # saturated
    bad = np.zeros((3, 3), bool)
    bad[2, 2] = True
    dm = DetectorMask.for_dtype(np.uint16, saturation=800, bad=bad)
    s = check_movie(data, "w", mask=dm)
    assert s["invalid_pixels"] == 2 and s["invalid_frames"] == 2
    assert s["total_counts"] == 2.0 * (4 * 8 - 2) and s["max_count"] == 2.0
    s = check_movie(data, "w", mask=DetectorMask.for_dtype(np.uint16, saturation=800))
    assert s["invalid_pixels"] == 3 and s["invalid_frames"] == 3 and s["total_counts"] == 2.0 * (4 * 9 - 3)
    with pytest.raises(DataValidationError, match="must be real"):
        check_movie(np.ones((1, 3, 3), complex), "w", mask=DetectorMask())
    dead = np.ones((3, 3, 3), np.float32)
    dead[2] = np.nan
    with pytest.raises(DataValidationError, match="w: frame 2 has no measured pixel"):
        check_movie(dead, "w", mask=DetectorMask(), )


def test_results_are_cached_per_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npy"
    data = np.ones((2, 3, 3), np.float32)
    np.save(path, data)
    movie = Movie(data, path=path, dataset="d")
    first = check_movie(movie)
    assert first["total_counts"] == 18.0 and len(validate._CHECKED) == 1
    key = next(iter(validate._CHECKED))
    assert key[0] == os.path.realpath(path) and key[1] == "d" and key[3] == path.stat().st_size and key[4] is None
    movie.data = np.full((2, 3, 3), np.nan, np.float32)  # the same file: not read again
    assert check_movie(movie) == first
    events, summary = _drain(iter_check_movie(movie))
    assert events == [] and summary == first
    summary["frames"] = 99  # a copy is returned
    assert check_movie(movie)["frames"] == 2
    mask = np.zeros((3, 3), bool)
    mask[0, 0] = True
    movie.data = data
    assert check_movie(movie, mask=mask)["total_counts"] == 16.0 and len(validate._CHECKED) == 2
    assert next(reversed(validate._CHECKED))[4] is not None
    assert check_movie(Movie(data, path=tmp_path / "gone.npy"))["total_counts"] == 18.0  # no file: not cached
    assert len(validate._CHECKED) == 2
    monkeypatch.setattr(validate, "_CACHE_SIZE", 2)
    np.save(tmp_path / "n.npy", data)
    check_movie(Movie(data, path=tmp_path / "n.npy"))
    assert len(validate._CHECKED) == 2 and key not in validate._CHECKED  # the oldest dropped
    check_movie(Movie(data))  # no path: never cached
    assert len(validate._CHECKED) == 2


def test_validate_survivors_of_the_first_run(tmp_path):
    with pytest.raises(InputFileError) as info:
        check_readable(tmp_path / "none")
    assert info.value.path == str(tmp_path / "none")
    bad = np.array([[False, True]])
    with pytest.raises(DataValidationError, match=r"frame 0 has no measured pixel \(1 NaN or infinite, 0 negative counts"):
        check_measured(np.array([[[np.nan, 0.0]]]), DetectorMask(bad=bad), "w")  # a zero under the mask is not negative
    f = np.ones((1, 2, 2), np.float32)
    f[0, 0, 0] = np.nan
    check_counts(f, "w", mask=np.array([[1, 0], [0, 0]], np.uint8))  # an integer mask works like a bool one
    g = np.ones((1, 2, 2), np.float32)
    g[0, 1, 0] = -2.0
    with pytest.raises(DataValidationError, match=r"y=1, x=0: -2\.0"):
        check_counts(g, "w")  # float32 negatives too
    data = np.ones((40, 2, 2), np.float32) * 0.25
    events = []
    s = check_movie(data, "w", progress=events.append)
    assert [e["done"] for e in events] == [0, 16, 32, 40] and s["max_count"] == 0.25  # default blocks of 16
    one = np.zeros((3, 2, 2))
    one[1, 0, 0] = 1.0
    assert check_movie(one, "w")["total_counts"] == 1.0  # one count is enough
    big = np.zeros((1, 2, 2), np.float32)
    big[0] = [[2.0**24, 1.0], [1.0, 1.0]]
    assert check_movie(big, "w")["total_counts"] == 2.0**24 + 3  # summed in float64
    with pytest.raises(DataValidationError, match=r"^w: diffraction counts must be numeric"):
        check_movie(np.array([[["a", "b"], ["c", "d"]]]), "w")
    with pytest.raises(DataValidationError, match=r"^w: diffraction counts must be real"):
        check_movie(np.ones((1, 2, 2), complex), "w")
    m8 = np.zeros((2, 2), np.uint8)
    m8[0, 0] = 1
    nan = np.ones((2, 2, 2), np.float32)
    nan[1, 0, 0] = np.nan
    assert check_movie(nan, "w", mask=m8)["total_counts"] == 6.0
    # blocks: frame numbers, masks and invalid counts carry across blocks
    dead = np.ones((4, 2, 2), np.float32)
    dead[3] = np.nan
    with pytest.raises(DataValidationError, match="w: frame 3 has no measured pixel"):
        _drain(iter_check_movie(dead, "w", mask=DetectorMask(), block=2))
    with pytest.raises(DataValidationError, match="w: frame 3 contains NaN"):
        _drain(iter_check_movie(dead, "w", block=2))
    masked = np.ones((4, 2, 2), np.float32)
    masked[3, 0, 0] = np.nan
    _, s = _drain(iter_check_movie(masked, "w", mask=m8.astype(bool), block=2))
    assert s["total_counts"] == 12.0
    inv = np.ones((4, 2, 2), np.float32)
    inv[0, 0, 1] = inv[3, 1, 1] = inv[3, 1, 0] = np.nan
    _, s = _drain(iter_check_movie(inv, "w", mask=DetectorMask(), block=2))
    assert (s["invalid_pixels"], s["invalid_frames"]) == (3, 2)


def test_cache_keys_tell_masks_apart(tmp_path):
    path = tmp_path / "m.npy"
    data = np.ones((1, 2, 2), np.float32)
    np.save(path, data)
    movie = Movie(data, path=path)
    a, b = np.zeros((2, 2), bool), np.zeros((2, 2), bool)
    a[0, 0], b[1, 1] = True, True
    b[0, 1] = True
    assert check_movie(movie, mask=a)["total_counts"] == 3.0
    assert check_movie(movie, mask=b)["total_counts"] == 2.0


def test_check_readable_paths_and_exact_problems(tmp_path, monkeypatch):
    os.symlink(tmp_path / "gone", tmp_path / "link")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "ok").write_bytes(b"x")
    cases = [
        (tmp_path / "link", f"is a symbolic link to a missing file ({tmp_path / 'gone'})"),
        (tmp_path, "is a folder, not a file; choose the movie file inside it"),
        (tmp_path / "empty", "the file is empty (0 bytes)"),
    ]
    for path, problem in cases:
        with pytest.raises(InputFileError) as info:
            check_readable(path)
        assert (info.value.path, info.value.problem) == (str(path), problem)
    with monkeypatch.context() as m:
        m.setattr(validate.os, "access", lambda p, mode: False)
        with pytest.raises(InputFileError) as info:
            check_readable(tmp_path / "ok")
    assert (info.value.path, info.value.problem) == (
        str(tmp_path / "ok"), "permission denied: you may not read this file (check its permissions)")

    def fail(p):
        raise OSError("I/O error")
    with monkeypatch.context() as m:
        m.setattr(validate.os.path, "getsize", fail)
        with pytest.raises(InputFileError) as info:
            check_readable(tmp_path / "ok")
    assert (info.value.path, info.value.problem) == (str(tmp_path / "ok"), "cannot be read: I/O error")


"""Fuzzing the readers and commands with damaged and unusual inputs (a fast sample; the benchmark
``benchmarks/bench_robustness.py`` runs >= 1000 cases in crash-isolated workers).

Every entry point must answer a typed CXDIError or succeed: never an untyped exception, never accept
a bad input silently, never return a wrong frame count, never change an input.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
import fuzz_corpus as fc  # noqa: E402

from napari_cxdi.errors import CXDIError, DataValidationError, InputFileError  # noqa: E402

FAST_TARGETS = ("open", "info", "probe", "validate", "napari", "track", "scann")
FAST_KINDS = [k for k in fc.GENERATORS]


def _assert_clean(records):
    bad = [r for r in records if r["outcome"] not in ("ok", "typed")]
    assert not bad, bad


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(FAST_KINDS), seed=st.integers(0, 2**31 - 1), index=st.integers(0, 20))
def test_fuzzed_inputs_are_typed_or_read(tmp_path_factory, kind, seed, index):
    folder = tmp_path_factory.mktemp("fuzz")
    case = fc.make_case(folder / "case", kind, seed, index)
    _assert_clean(fc.run_case(case, folder, targets=FAST_TARGETS))


@pytest.mark.parametrize("kind", ["valid", "nan", "giant-declared", "tiff", "denied"])
def test_reconstruct_and_speckle_cli_on_fuzzed_inputs(tmp_path, kind):
    kind = {"denied": "permission-denied"}.get(kind, kind)
    for index in range(2):
        case = fc.make_case(tmp_path / f"c{index}", kind, seed=index, index=index)
        _assert_clean(fc.run_case(case, tmp_path, targets=("reconstruct", "speckle")))


def test_the_corpus_covers_every_kind_and_target(tmp_path):
    cases = fc.generate(tmp_path, len(fc.GENERATORS), seed=3)
    assert {c.kind for c in cases} >= {"empty", "random", "truncated", "bitflip", "wrong-dtype", "wrong-rank",
                                       "giant-declared", "nan", "negative", "linked", "permission-denied"}
    assert set().union(*(c.expect for c in cases)) == set(fc.TARGETS)


def test_silent_acceptance_is_detected(tmp_path):
    """The harness itself can fail: a reject case that an entry point accepts is reported."""
    case = fc.make_case(tmp_path, "valid", seed=1)
    case.expect = {"open": "reject"}
    assert fc.run_case(case, tmp_path, targets=("open",))[0]["outcome"] == "silent"


# -- specific regressions from the issue ----------------------------------------------------------------
def test_tiff_one_page_per_frame_reads_every_frame(tmp_path):
    import tifffile

    from napari_cxdi.io import open_movie

    frames = np.arange(5 * 8 * 8, dtype=np.uint16).reshape(5, 8, 8)
    for k, frame in enumerate(frames):
        tifffile.imwrite(tmp_path / "pages.tif", frame, append=k > 0)
    movie = open_movie(tmp_path / "pages.tif")
    assert movie.shape == (5, 8, 8)
    assert np.array_equal(movie.frames(0, 5), frames)


def test_rgb_tiff_refused(tmp_path):
    import tifffile

    from napari_cxdi.io import open_movie

    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    with pytest.raises(DataValidationError, match="colour samples"):
        open_movie(tmp_path / "rgb.tif")


def test_nan_in_an_unsampled_frame_is_found_by_the_full_check(tmp_path):
    from napari_cxdi.io import open_movie
    from napari_cxdi.io.validate import check_movie, iter_check_movie

    counts = np.ones((9, 8, 8), np.float32)
    counts[3, 2, 5] = np.nan  # not frame 0, 4 or 8: the quick open_movie sample misses it
    np.save(tmp_path / "m.npy", counts)
    movie = open_movie(tmp_path / "m.npy")
    events = []
    with pytest.raises(DataValidationError, match=r"frame 3 .*y=2, x=5"):
        check_movie(movie, progress=events.append)
    assert events and events[0]["stage"] == "validate"
    mask = np.zeros((8, 8), bool)
    mask[2, 5] = True  # a masked pixel may hold anything
    summary = check_movie(movie, mask=mask)
    assert summary["frames"] == 9 and summary["total_counts"] == pytest.approx(9 * 63)  # pixel (2, 5) masked in every frame
    # cached per file: a second pass yields nothing
    assert list(iter_check_movie(movie, mask=mask)) == []


def test_all_zero_movie_refused_before_training(tmp_path):
    from napari_cxdi import api

    np.save(tmp_path / "zero.npy", np.zeros((6, 16, 16), np.float32))
    with pytest.raises(DataValidationError, match="all 6 frames are zero"):
        api.train(str(tmp_path / "zero.npy"), np.ones((1, 16, 16), np.complex64), epochs=1, device="cpu")


def test_permission_denied_and_folder_are_typed(tmp_path):
    from napari_cxdi.io import movie_info, open_movie

    np.save(tmp_path / "m.npy", np.ones((2, 8, 8), np.float32))
    with fc.permission_denied(str(tmp_path / "m.npy"), True):
        with pytest.raises(InputFileError, match="permission denied"):
            open_movie(tmp_path / "m.npy")
    (tmp_path / "d.cxi").mkdir()
    with pytest.raises(InputFileError, match="folder"):
        movie_info(tmp_path / "d.cxi")


def test_corrupt_metadata_json_and_bad_geometry_are_typed(tmp_path):
    import h5py

    from napari_cxdi.io import movie_info, write_cxi

    write_cxi(tmp_path / "a.cxi", counts=np.ones((2, 8, 8), np.float32))
    with h5py.File(tmp_path / "a.cxi", "a") as f:
        del f["entry_1/napari_cxdi/metadata_json"]
        f["entry_1/napari_cxdi/metadata_json"] = "{oops"
    with pytest.raises(InputFileError, match="not valid JSON"):
        movie_info(tmp_path / "a.cxi")
    write_cxi(tmp_path / "b.cxi", counts=np.ones((2, 8, 8), np.float32))
    with h5py.File(tmp_path / "b.cxi", "a") as f:
        f["entry_1/instrument_1/detector_1/x_pixel_size"] = np.nan
    with pytest.raises(InputFileError, match="detector_pixel_um"):
        movie_info(tmp_path / "b.cxi")


def test_dangling_link_named(tmp_path):
    import h5py

    from napari_cxdi.io import movie_info

    with h5py.File(tmp_path / "m.cxi", "w") as f:
        f["entry_1/data_1/data"] = h5py.ExternalLink("lost.h5", "/data")
    with pytest.raises(InputFileError, match="lost.h5"):
        movie_info(tmp_path / "m.cxi")


def test_giant_declared_shape_is_never_allocated(tmp_path):
    import h5py

    from napari_cxdi.io import movie_info

    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.create_dataset("data", shape=(10**9, 10**6, 10**6), dtype="f4", chunks=(1, 64, 64))
    with pytest.raises(DataValidationError, match="not a plausible"):
        movie_info(tmp_path / "g.h5")


def test_unavailable_filter_is_explained(tmp_path, monkeypatch):
    from napari_cxdi.io import lazy

    source = lazy.H5FrameSource(tmp_path / "x.h5", "/data", (2, 8, 8), np.float32)

    class Broken:
        def __init__(self, *a, **k):
            raise OSError("Can't read data (required filter 'bitshuffle; see https://...' is not registered)")

    monkeypatch.setattr(lazy.h5py, "File", Broken)
    with pytest.raises(InputFileError, match="HDF5 filter that is not available"):
        source[0:1]


def test_cxdi_error_is_the_only_failure_type_of_info_cli(tmp_path, capsys):
    from napari_cxdi.cli import main

    (tmp_path / "bad.cxi").write_bytes(os.urandom(300))
    assert main(["info", str(tmp_path / "bad.cxi")]) == 2
    assert "bad.cxi" in capsys.readouterr().err
    assert issubclass(InputFileError, CXDIError)

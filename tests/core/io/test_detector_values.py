"""Value tests of io/detector.py (issue 20, mutation testing): beam centre from the file, centre estimate,
crop window, binning, block sizes, prepared movies and the ``info`` report, on tiny hand-checked inputs.

Fast (no reconstruction): the slow end-to-end detector tests are in test_real_detector.py.
"""

from __future__ import annotations

import dask.array as da
import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_cxdi.errors import ConfigError, DataValidationError
from napari_cxdi.io import open_movie
from napari_cxdi.io.detector import (
    BLOCK_BYTES, MAX_BLOCK_FRAMES, BeamCentre, CropWindow, _process, bin_frames, bin_mask, block_frames,
    centre_crop_probe, crop_window, detector_report, estimate_centre, plan_crop, prepare_movie, read_centre_hdf5,
    resolve_centre, summed_pattern,
)
from napari_cxdi.io.mask import DetectorMask
from napari_cxdi.io.movie import Movie
from napari_cxdi.physics.geometry import Geometry


# -- beam centre recorded in the file --------------------------------------------------------------

def _h5(tmp_path, build, name="c.h5"):
    path = tmp_path / name
    with h5py.File(path, "w") as f:
        build(f)
    return h5py.File(path, "r")


def test_nexus_centre_in_pixels_and_its_source(tmp_path):
    def build(f):
        f["entry/instrument/detector/beam_center_x"] = 12.5
        f["entry/instrument/detector/beam_center_y"] = np.array([7.25, 99.0])
    with _h5(tmp_path, build) as f:
        c = read_centre_hdf5(f, "nexus")
    assert c == BeamCentre(7.25, 12.5, "file:/entry/instrument/detector/beam_center_x,y")
    assert c.as_tuple() == (7.25, 12.5) and isinstance(c.y, float)


def test_detector_specific_and_nxdetector_groups(tmp_path):
    def build(f):
        f["entry/instrument/detector/detectorSpecific/beam_center_x"] = 3.0
        f["entry/instrument/detector/detectorSpecific/beam_center_y"] = 4.0
    with _h5(tmp_path, build) as f:
        assert read_centre_hdf5(f, "eiger") == BeamCentre(4.0, 3.0, "file:/entry/instrument/detector/detectorSpecific/beam_center_x,y")

    for nx_class in ("NXdetector", b"NXdetector"):
        def build2(f, nx_class=nx_class):
            f.create_group("entry/instrument/source").attrs["NX_class"] = "NXsource"
            f["entry/instrument/notgroup"] = 1.0
            g = f.create_group("entry/instrument/eiger")
            g.attrs["NX_class"] = nx_class
            g["beam_center_x"] = 5.0
            g["beam_center_y"] = 6.0
        with _h5(tmp_path, build2, f"n{len(nx_class)}{type(nx_class).__name__}.h5") as f:
            assert read_centre_hdf5(f, "nexus") == BeamCentre(6.0, 5.0, "file:/entry/instrument/eiger/beam_center_x,y")

    def build3(f):  # a group that is not an NXdetector is not searched
        g = f.create_group("entry/instrument/other")
        g.attrs["NX_class"] = "NXmonochromator"
        g["beam_center_x"] = 5.0
        g["beam_center_y"] = 6.0
    with _h5(tmp_path, build3, "other.h5") as f:
        assert read_centre_hdf5(f, "nexus") is None


def test_the_first_base_wins(tmp_path):
    def build(f):
        f["entry/instrument/detector/beam_center_x"] = 1.0
        f["entry/instrument/detector/beam_center_y"] = 2.0
        f["entry/instrument/detector/detectorSpecific/beam_center_x"] = 10.0
        f["entry/instrument/detector/detectorSpecific/beam_center_y"] = 20.0
    with _h5(tmp_path, build) as f:
        assert read_centre_hdf5(f, "nexus").as_tuple() == (2.0, 1.0)


@pytest.mark.parametrize("unit, value, expected", [
    ("mm", 1.5, 1.5e-3 / 75e-6), (b"mm", 1.5, 1.5e-3 / 75e-6), (" MM ", 1.5, 1.5e-3 / 75e-6),
    ("m", 1.5e-3, 1.5e-3 / 75e-6), ("um", 1500.0, 1.5e-3 / 75e-6), ("pixel", 20.0, 20.0), ("mrad", 20.0, 20.0),
])
def test_centre_in_lengths_is_converted_with_the_pixel_size(tmp_path, unit, value, expected):
    def build(f):
        d = f.create_group("entry/instrument/detector")
        d["beam_center_x"] = value
        d["beam_center_x"].attrs["units"] = unit
        d["beam_center_y"] = 2 * value
        d["x_pixel_size"] = 75e-6
    with _h5(tmp_path, build) as f:
        c = read_centre_hdf5(f, "nexus")
    assert c.x == pytest.approx(expected, rel=1e-12) and c.y == pytest.approx(2 * expected, rel=1e-12)


def test_pixel_size_of_the_detector_group_is_the_fallback(tmp_path):
    def build(f):
        f["entry/instrument/detector/x_pixel_size"] = 50e-6
        s = f.create_group("entry/instrument/detector/detectorSpecific")
        s["beam_center_x"] = 1.0
        s["beam_center_x"].attrs["units"] = "mm"
        s["beam_center_y"] = 2.0
    with _h5(tmp_path, build) as f:
        c = read_centre_hdf5(f, "nexus")
    assert (c.y, c.x) == (pytest.approx(40.0), pytest.approx(20.0))
    assert c.source == "file:/entry/instrument/detector/detectorSpecific/beam_center_x,y"

    def build2(f):  # the group's own pixel size wins over the detector's
        f["entry/instrument/detector/x_pixel_size"] = 50e-6
        s = f.create_group("entry/instrument/detector/detectorSpecific")
        s["beam_center_x"] = 1.0
        s["beam_center_x"].attrs["units"] = "mm"
        s["beam_center_y"] = 2.0
        s["x_pixel_size"] = 100e-6
    with _h5(tmp_path, build2, "own.h5") as f:
        assert read_centre_hdf5(f, "nexus").as_tuple() == (pytest.approx(20.0), pytest.approx(10.0))


def test_a_length_without_pixel_size_falls_through(tmp_path):
    def build(f):
        d = f.create_group("entry/instrument/detector")
        d["beam_center_x"] = 1.0
        d["beam_center_x"].attrs["units"] = "mm"
        d["beam_center_y"] = 2.0
        s = d.create_group("detectorSpecific")
        s["beam_center_x"] = 30.0
        s["beam_center_y"] = 40.0
    with _h5(tmp_path, build) as f:
        assert read_centre_hdf5(f, "nexus").as_tuple() == (40.0, 30.0)

    def build2(f):
        d = f.create_group("entry/instrument/detector")
        d["beam_center_x"] = 1.0
        d["beam_center_x"].attrs["units"] = "mm"
        d["beam_center_y"] = 2.0
    with _h5(tmp_path, build2, "none.h5") as f:
        assert read_centre_hdf5(f, "nexus") is None


@pytest.mark.parametrize("case", ["only_x", "only_y", "text", "empty", "group", "nothing"])
def test_incomplete_nexus_centre_is_none(tmp_path, case):
    def build(f):
        d = f.create_group("entry/instrument/detector")
        if case == "only_x":
            d["beam_center_x"] = 1.0
        elif case == "only_y":
            d["beam_center_y"] = 1.0
        elif case == "text":
            d["beam_center_x"] = "12"
            d["beam_center_y"] = 3.0
        elif case == "empty":
            d["beam_center_x"] = np.zeros(0)
            d["beam_center_y"] = 3.0
        elif case == "group":
            d.create_group("beam_center_x")
            d["beam_center_y"] = 3.0
    with _h5(tmp_path, build) as f:
        assert read_centre_hdf5(f, "nexus") is None
    if case == "nothing":
        with _h5(tmp_path, lambda f: f.create_dataset("entry/instrument", data=1.0), "ds.h5") as f:
            assert read_centre_hdf5(f, "nexus") is None


def test_cxi_corner_position_with_pixel_sizes(tmp_path):
    def build(f):
        d = f.create_group("entry_1/instrument_1/detector_1")
        d["corner_position"] = np.array([-30 * 50e-6, -33 * 100e-6, 5.0])
        d["x_pixel_size"] = 50e-6
        d["y_pixel_size"] = 100e-6
    with _h5(tmp_path, build, "a.cxi") as f:
        c = read_centre_hdf5(f, "cxi")
        assert read_centre_hdf5(f, "nexus") is None  # a NeXus reader does not read CXI corners
    assert (c.y, c.x) == (pytest.approx(33.0), pytest.approx(30.0))
    assert c.source == "file:/entry_1/instrument_1/detector_1/corner_position"

    def build2(f):  # only x_pixel_size: square pixels
        d = f.create_group("entry_1/instrument_1/detector_1")
        d["corner_position"] = np.array([-30 * 50e-6, -33 * 50e-6])
        d["x_pixel_size"] = 50e-6
    with _h5(tmp_path, build2, "b.cxi") as f:
        assert read_centre_hdf5(f, "cxi").as_tuple() == (pytest.approx(33.0), pytest.approx(30.0))


@pytest.mark.parametrize("case", ["no_corner", "short", "no_pixel", "singular"])
def test_cxi_corner_without_enough_geometry_is_none(tmp_path, case):
    def build(f):
        d = f.create_group("entry_1/instrument_1/detector_1")
        if case != "no_corner":
            d["corner_position"] = np.array([1e-3]) if case == "short" else np.array([1e-3, 2e-3, 5.0])
        if case in ("short", "no_corner"):
            d["x_pixel_size"] = 50e-6
        if case == "singular":
            d["basis_vectors"] = np.array([[1e-4, 0.0, 0.0], [2e-4, 0.0, 0.0]])
            d["x_pixel_size"] = 50e-6
    with _h5(tmp_path, build, "c.cxi") as f:
        assert read_centre_hdf5(f, "cxi") is None


@pytest.mark.parametrize("transpose", [False, True])
def test_cxi_basis_vectors(tmp_path, transpose):
    # a frame row step moves -y by 100 um, a column step moves +x by 50 um (and some z, ignored)
    basis = np.array([[0.0, -100e-6, 1e-6], [50e-6, 0.0, 2e-6]])
    corner = np.array([-12 * 50e-6, 7 * 100e-6, 5.0])  # the beam (0, 0) is 7 rows and 12 columns in

    def build(f):
        d = f.create_group("entry_1/instrument_1/detector_1")
        d["corner_position"] = corner
        d["basis_vectors"] = basis.T if transpose else basis
        d["x_pixel_size"] = 1.0  # ignored when basis vectors are given
    with _h5(tmp_path, build, "b.cxi") as f:
        c = read_centre_hdf5(f, "cxi")
    assert (c.y, c.x) == (pytest.approx(7.0), pytest.approx(12.0))
    assert c.source == "file:/entry_1/instrument_1/detector_1/corner_position"


def test_cxi_basis_of_another_shape_falls_back_to_pixel_sizes(tmp_path):
    def build(f):
        d = f.create_group("entry_1/instrument_1/detector_1")
        d["corner_position"] = np.array([-4e-4, -6e-4, 1.0])
        d["basis_vectors"] = np.ones((3, 3))
        d["x_pixel_size"] = 1e-4
    with _h5(tmp_path, build, "s.cxi") as f:
        assert read_centre_hdf5(f, "cxi").as_tuple() == (pytest.approx(6.0), pytest.approx(4.0))


# -- summed pattern and centre estimate ---------------------------------------------------------------

def test_summed_pattern_reads_evenly_spaced_frames_and_zeroes_unmeasured():
    data = np.zeros((10, 3, 4), np.uint16)
    data += np.arange(10, dtype=np.uint16)[:, None, None]
    data[:, 0, 0] = 65535  # the integer sentinel: unmeasured
    out = summed_pattern(Movie(data), max_frames=4)  # frames 0, 3, 6, 9
    assert out.dtype == np.float64 and out.shape == (3, 4)
    assert out[0, 0] == 0.0 and out[1, 1] == 18.0 and out[2, 3] == 18.0
    masked = Movie(data, mask=DetectorMask.for_dtype(np.uint16).with_bad(np.eye(3, 4, dtype=bool), "given"))
    out = summed_pattern(masked, max_frames=4)
    assert out[1, 1] == 0.0 and out[2, 2] == 0.0 and out[1, 2] == 18.0
    ones = Movie(np.ones((40, 2, 2), np.float32))
    assert summed_pattern(ones)[0, 0] == 32.0  # 32 distinct frames of 40
    assert summed_pattern(Movie(np.ones((3, 2, 2), np.float32)))[1, 1] == 3.0
    assert summed_pattern(Movie(np.ones((5, 2, 2), np.float32)), max_frames=1)[0, 1] == 1.0


def _blob(shape, cy, cx, sigma=2.5):
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    return 1000.0 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("cy, cx", [(15.0, 17.0), (14.3, 18.6), (16.5, 12.5), (12.8, 19.2)])
def test_estimated_centre_of_a_symmetric_pattern(cy, cx):
    pattern = _blob((31, 36), cy, cx)
    y, x, score = estimate_centre(pattern)
    assert abs(y - cy) < 0.1 and abs(x - cx) < 0.1
    assert 0.95 < score <= 1.0 + 1e-9


def test_centre_estimate_is_not_fooled_by_gaps_hot_pixels_or_nan():
    rng = np.random.default_rng(5)
    cy, cx = 20.0, 22.0
    half = rng.poisson(50, size=(41, 45)).astype(np.float64) * _blob((41, 45), cy, cx, 8) / 1000
    pattern = half + half[::-1, ::-1]  # symmetric about (20, 22)
    bad = np.zeros(pattern.shape, bool)
    bad[18:21, :] = True  # a gap through the beam
    pattern[bad] = 0.0
    pattern[3, 4] = 1e9  # an unflagged hot pixel
    pattern[30, 5] = np.nan
    pattern[31, 6] = -5.0
    y, x, score = estimate_centre(pattern, bad)
    assert abs(y - cy) < 0.25 and abs(x - cx) < 0.25 and score > 0.9


def test_centre_estimate_weighs_only_measured_pixels():
    # an asymmetric pattern where the wrongly filled region (bad) would pull the centre
    cy, cx = 16.0, 16.0
    pattern = _blob((33, 33), cy, cx, 3) + 1.0
    pattern[:, 25:] = 500.0  # junk on the right, flagged bad
    bad = np.zeros(pattern.shape, bool)
    bad[:, 25:] = True
    y, x, _ = estimate_centre(pattern, bad)
    assert abs(y - cy) < 0.1 and abs(x - cx) < 0.1


def test_centre_estimate_of_an_empty_pattern_is_a_config_error():
    with pytest.raises(ConfigError, match=r"no counts; give it \(--center Y,X\)"):
        estimate_centre(np.zeros((8, 8)))
    with pytest.raises(ConfigError, match="cannot estimate the beam centre"):
        estimate_centre(np.ones((8, 8)), np.ones((8, 8), bool))
    with pytest.raises(ConfigError, match="no counts"):
        estimate_centre(-np.ones((8, 8)))


def test_centre_estimate_at_the_frame_edge_is_an_error_not_a_guess():
    pattern = np.zeros((9, 9))
    pattern[0, 0] = 5.0  # a single count in the corner: the self-convolution peaks at (0, 0), the map's edge
    with pytest.raises(ConfigError, match=r"^cannot estimate the beam centre: the pattern's centre of symmetry lies at "
                                          r"the edge of what can be searched \(centres whose .*give it \(--center Y,X\)$"):
        estimate_centre(pattern)


# -- crop window ------------------------------------------------------------------------------------

def test_crop_window_geometry():
    w = CropWindow(2, 3, 4, 2)
    assert w.extent == 8 and w.to_dict() == {"y0": 2, "x0": 3, "size": 4, "bin": 2}
    assert w.fits((10, 11)) and not w.fits((9, 11)) and not w.fits((10, 10))
    assert not CropWindow(-1, 0, 4).fits((10, 10)) and not CropWindow(0, -1, 4).fits((10, 10))
    assert CropWindow(0, 0, 4).fits((4, 4)) and CropWindow(6, 6, 4).fits((10, 10))
    assert CropWindow(0, 0, 4).is_identity((4, 4)) and CropWindow(0, 0, 4).is_identity([4, 4])
    assert not CropWindow(0, 0, 4, 2).is_identity((8, 8)) and not CropWindow(0, 1, 4).is_identity((4, 4))
    assert not CropWindow(1, 0, 4).is_identity((4, 4)) and not CropWindow(0, 0, 4).is_identity((4, 5))
    assert CropWindow(0, 0, 4).bin == 1


def test_cut_fills_outside_the_detector():
    frames = np.arange(2 * 4 * 5, dtype=np.uint16).reshape(2, 4, 5)
    out = CropWindow(-1, 2, 4).cut(frames)
    assert out.dtype == np.float32 and out.shape == (2, 4, 4)
    assert np.isnan(out[:, 0, :]).all() and np.isnan(out[:, :, 3]).all()
    np.testing.assert_array_equal(out[:, 1:, :3], frames[:, 0:3, 2:5])
    inside = CropWindow(1, 1, 2).cut(frames, fill=-1.0)
    np.testing.assert_array_equal(inside, frames[:, 1:3, 1:3])
    away = CropWindow(10, 10, 2).cut(frames, fill=7.0)
    assert (away == 7.0).all()
    low = CropWindow(-3, -3, 4).cut(frames[0], fill=0.0)
    np.testing.assert_array_equal(low[3:, 3:], frames[0, :1, :1]) and np.testing.assert_array_equal(low[:3], 0)


def test_crop_window_origin_puts_the_beam_on_the_middle_pixel():
    assert crop_window((10.0, 20.0), (40, 40), 8) == CropWindow(6, 16, 8, 1)
    assert crop_window((10.5, 20.49), (40, 40), 8) == CropWindow(7, 16, 8, 1)  # rounds half up
    assert crop_window((10.0, 20.0), (40, 40), 8, 2) == CropWindow(2, 12, 8, 2)  # offset 4*2 + 0.5
    assert crop_window((10.0, 20.0), (40, 40), 9, 3) == CropWindow(-3, 7, 9, 3)  # offset 4*3 + 1


@settings(max_examples=40, deadline=None)
@given(cy=st.floats(0, 100), cx=st.floats(0, 100), m=st.integers(8, 40), b=st.integers(1, 4))
def test_window_centre_within_half_a_pixel_of_the_beam(cy, cx, m, b):
    w = crop_window((cy, cx), (101, 101), m, b)
    middle = (m // 2) * b + (b - 1) / 2
    assert -0.5 < w.y0 + middle - cy <= 0.5 and -0.5 < w.x0 + middle - cx <= 0.5
    assert (w.size, w.bin) == (m, b) and isinstance(w.y0, int) and isinstance(w.x0, int)


def test_largest_fitting_window_and_its_errors():
    assert crop_window((20.0, 30.0), (41, 61), None) == CropWindow(0, 10, 40, 1)
    assert crop_window((19.0, 30.0), (40, 60), None) == CropWindow(0, 11, 38, 1)  # 40 would start at -1
    assert crop_window((20.0, 30.0), (41, 61), None, 2) == CropWindow(0, 10, 20, 2)
    assert crop_window((4.0, 4.0), (9, 9), None) == CropWindow(0, 0, 8, 1)  # the smallest window
    assert crop_window((4.0, 4.0), (8, 8), None) == CropWindow(0, 0, 8, 1)
    with pytest.raises(ConfigError, match=r"beam centre \(3\.0, 4\.0\) is too close to the detector edge for an 8-pixel window"):
        crop_window((3.0, 4.0), (9, 9), None)
    with pytest.raises(ConfigError, match="give --crop-size"):
        crop_window((4.0, 4.0), (7, 7), None)
    with pytest.raises(ConfigError, match="binning must be a positive integer, got 0"):
        crop_window((4.0, 4.0), (40, 40), 8, 0)
    with pytest.raises(ConfigError, match="the crop size must be at least 8 pixels, got 7"):
        crop_window((20.0, 20.0), (40, 40), 7)
    assert crop_window((20.0, 20.0), (40, 40), 8).size == 8
    assert crop_window((20.0, 20.0), (40, 40), 8, 1).size == 8


# -- binning -----------------------------------------------------------------------------------------

def test_bin_frames_sums_and_scales_partial_bins():
    frames = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    assert bin_frames(frames, 1) is frames
    out = bin_frames(frames, 2)
    assert out.dtype == np.float32 and out.shape == (2, 2, 2)
    assert out[0, 0, 0] == 0 + 1 + 4 + 5 and out[1, 1, 0] == 24 + 25 + 28 + 29
    part = frames.copy()
    part[0, 0, 0] = np.nan
    part[0, 0, 1] = np.nan
    part[0, 2:4, 2:4] = np.nan
    out = bin_frames(part, 2)
    assert out[0, 0, 0] == pytest.approx((4 + 5) * 4 / 2) and np.isnan(out[0, 1, 1]) and out[0, 0, 1] == 2 + 3 + 6 + 7
    big = np.full((1, 3, 3), 2.0**24, np.float32)
    assert bin_frames(big, 3)[0, 0, 0] == 9 * 2.0**24  # summed in float64
    assert bin_frames(np.ones((3, 6), np.float32), 3).tolist() == [[9.0, 9.0]]


def test_bin_mask_is_bad_only_when_all_pixels_are():
    bad = np.zeros((4, 6), bool)
    assert bin_mask(bad, 1) is bad
    bad[0:2, 0:2] = True
    bad[2, 2] = True
    np.testing.assert_array_equal(bin_mask(bad, 2), [[True, False, False], [False, False, False]])


def test_process_masks_pads_and_bins():
    block = np.array([[[1, 2], [3, 65535]]], np.uint16)
    window = CropWindow(-1, 0, 2, 2)  # a 4x4 window, the block sits at rows 1:3, columns 0:2
    out = _process(block, window, DetectorMask.for_dtype(np.uint16), None, (1, 0))
    assert out.dtype == np.float32 and out.shape == (1, 2, 2)
    assert out[0, 0, 0] == pytest.approx((1 + 2) * 4 / 2) and out[0, 1, 0] == pytest.approx(3 * 4 / 1)
    assert np.isnan(out[0, :, 1]).all()
    bad = np.zeros((4, 4), bool)
    bad[1, 0:2] = True
    out = _process(block, window, DetectorMask.for_dtype(np.uint16), bad, (1, 0))
    assert np.isnan(out[0, 0, 0]) and out[0, 1, 0] == 12.0
    bad[1, 1] = False
    out = _process(block, window, DetectorMask.for_dtype(np.uint16), bad, (1, 0))
    assert out[0, 0, 0] == 8.0
    same = _process(np.array([[[1, 2], [3, 4]]], np.uint16), CropWindow(0, 0, 2), DetectorMask(), None, (0, 0))
    np.testing.assert_array_equal(same, [[[1, 2], [3, 4]]])


def test_block_frames():
    assert (BLOCK_BYTES, MAX_BLOCK_FRAMES) == (4 << 20, 32)
    assert block_frames(64 * 64, 2) == 32
    assert block_frames(512 * 512, 2) == 4  # float32 while processed: 1 MiB a frame
    assert block_frames(512 * 512, 8) == 2
    assert block_frames(300 * 300, 4) == 11
    assert block_frames(2048 * 2048, 4) == 1 and block_frames(0, 4) == 32
    assert isinstance(block_frames(300 * 300, 4), int)


# -- centre resolution and crop planning -----------------------------------------------------------

def _movie(h=20, w=24, n=3, centre=None, **meta):
    data = np.zeros((n, h, w), np.float32)
    data[:, 5, 7] = 4.0  # hot at (5, 7), (15, 17) by symmetry: centre (10, 12)
    data[:, 15, 17] = 4.0
    return Movie(data, metadata=meta, beam_centre=centre)


def test_resolve_centre_order_and_bounds():
    m = _movie(centre=BeamCentre(3.0, 4.0, "file:/x"))
    assert resolve_centre(m, (5, 6)) == BeamCentre(5.0, 6.0, "given")
    assert resolve_centre(m, (-0.5, 23.5)) == BeamCentre(-0.5, 23.5, "given")
    assert resolve_centre(m, (19.5, -0.5)).as_tuple() == (19.5, -0.5)
    for bad in ((-0.6, 5), (5, -0.6), (19.6, 5), (5, 23.6)):
        with pytest.raises(ConfigError, match=rf"beam centre \({float(bad[0])}, {float(bad[1])}\) is outside the 20x24 detector"):
            resolve_centre(m, bad)
    assert resolve_centre(m) == BeamCentre(3.0, 4.0, "file:/x")
    for edge in ((-0.5, -0.5), (19.5, 23.5)):
        assert resolve_centre(_movie(centre=BeamCentre(*edge, "file:/x"))).as_tuple() == edge
    for off in ((-0.6, 4.0), (3.0, -0.6), (19.6, 4.0), (3.0, 23.6)):
        c = resolve_centre(_movie(centre=BeamCentre(*off, "file:/x")), estimate=False)
        assert c == BeamCentre(10.0, 12.0, "frame centre")
    assert resolve_centre(_movie(h=21, w=25), estimate=False) == BeamCentre(10.0, 12.0, "frame centre")
    est = resolve_centre(_movie())
    assert est.source == "estimated" and est.as_tuple() == (pytest.approx(10.0, abs=0.05), pytest.approx(12.0, abs=0.05))


def test_resolve_centre_estimate_uses_the_movie_mask():
    m = _movie()
    m.data[:, 0, 0] = 1000.0  # would pull the estimate; masked, it does not
    bad = np.zeros((20, 24), bool)
    bad[0, 0] = True
    m.mask = DetectorMask().with_bad(bad, "given")
    assert resolve_centre(m).as_tuple() == (pytest.approx(10.0, abs=0.05), pytest.approx(12.0, abs=0.05))


def test_plan_crop_takes_a_centred_square_frame_whole():
    sq = Movie(np.ones((2, 16, 16), np.float32))
    c, w = plan_crop(sq)
    assert c == BeamCentre(8.0, 8.0, "frame centre") and w == CropWindow(0, 0, 16, 1)
    assert plan_crop(sq, 16)[1] == CropWindow(0, 0, 16, 1)
    assert plan_crop(sq, 8, 2) == (BeamCentre(8.0, 8.0, "frame centre"), CropWindow(0, 0, 8, 2))
    for y, x in ((7.0, 9.0), (9.0, 7.0), (8.0, 8.0)):  # a recorded centre within 1 px of the middle
        s = Movie(np.ones((2, 16, 16), np.float32), beam_centre=BeamCentre(y, x, "file:/c"))
        assert plan_crop(s)[1] == CropWindow(0, 0, 16, 1)
    moved = Movie(np.ones((2, 16, 16), np.float32), beam_centre=BeamCentre(6.0, 8.0, "file:/c"))
    c, w = plan_crop(moved, 8)
    assert c.source == "file:/c" and w == CropWindow(2, 4, 8, 1)
    moved_x = Movie(np.ones((2, 16, 16), np.float32), beam_centre=BeamCentre(8.0, 10.0, "file:/c"))
    assert plan_crop(moved_x, 8) == (BeamCentre(8.0, 10.0, "file:/c"), CropWindow(4, 6, 8, 1))
    # a smaller size, a given centre or a non-square frame: the centre is resolved
    assert plan_crop(sq, 8, estimate=False) == (BeamCentre(8.0, 8.0, "frame centre"), CropWindow(4, 4, 8, 1))
    assert plan_crop(sq, None, centre=(8, 8))[0].source == "given"
    rect = Movie(np.ones((2, 16, 18), np.float32))
    assert plan_crop(rect, 8, estimate=False) == (BeamCentre(8.0, 9.0, "frame centre"), CropWindow(4, 5, 8, 1))


# -- prepared movies ------------------------------------------------------------------------------

def _frames(n=4, h=12, w=14):
    return (np.arange(n * h * w, dtype=np.uint16).reshape(n, h, w) % 97).astype(np.uint16)


def _check_prepared(prepared, frames, window, bad=None):
    expected = window.cut(frames.astype(np.float32))
    if bad is not None:
        expected[:, window.cut(bad.astype(np.float32), fill=1.0) > 0] = np.nan
    expected[:, np.isnan(expected).all(axis=0)] = np.nan
    want = bin_frames(expected, window.bin)
    got = prepared.data.compute()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=1e-6)


@pytest.mark.parametrize("source", ["numpy", "hdf5"])
def test_prepare_movie_values_numpy_and_hdf5(tmp_path, source):
    frames = _frames()
    frames[1, 5, 5] = 65535  # an invalid value in one frame
    if source == "hdf5":
        with h5py.File(tmp_path / "m.h5", "w") as f:
            f.create_dataset("entry/data/data", data=frames, chunks=(1, 12, 14))
        movie = open_movie(tmp_path / "m.h5", validate=False)
        assert not isinstance(movie.data, np.ndarray)
    else:
        movie = Movie(frames, path=tmp_path / "m.npy", dataset="d", format="numpy", metadata={"note": 1})
    window = CropWindow(-2, 3, 4, 2)
    prepared = prepare_movie(movie, window=window, centre=(4, 10))
    assert prepared.shape == (4, 4, 4) and prepared.prepared and prepared.is_lazy and prepared.data.dtype == np.float32
    got = prepared.data.compute()
    # the invalid pixel (5, 5) is in bin (3, 1) (detector rows 4:6, columns 5:7): 3 of 4 measured
    assert got[0, 3, 1] == pytest.approx(frames[0, 4:6, 5:7].astype(np.float64).sum())
    three = frames[1, 4:6, 5:7].astype(np.float64).sum() - 65535
    assert got[1, 3, 1] == pytest.approx(three * 4 / 3) and got[2, 3, 0] == pytest.approx(frames[2, 4:6, 3:5].astype(np.float64).sum())
    # rows -2..-1 are off the detector: bin row 0 is unmeasured
    assert np.isnan(got[:, 0, :]).all() and np.isfinite(got[:, 1:, :]).all()
    assert got[3, 1, 2] == pytest.approx(frames[3, 0:2, 7:9].astype(np.float64).sum())
    np.testing.assert_array_equal(prepared.mask.bad, [[True] * 4, [False] * 4, [False] * 4, [False] * 4])
    assert prepared.beam_centre == BeamCentre(2.0, 2.0, "window")
    crop = prepared.metadata["crop"]
    assert crop == {"y0": -2, "x0": 3, "size": 4, "bin": 2, "centre_y": 4.0, "centre_x": 10.0, "centre_source": "given",
                    "detector_shape": [12, 14]}
    assert prepared.path == movie.path and prepared.dataset == movie.dataset and prepared.format == movie.format


def test_prepare_movie_with_masks_and_planned_window(tmp_path):
    frames = _frames()
    file_bad = np.zeros((12, 14), bool)
    file_bad[5, 6] = True
    movie = Movie(frames, mask=DetectorMask.for_dtype(np.uint16).with_bad(file_bad, "file.h5"))
    extra = np.zeros((12, 14), bool)
    extra[6, 7] = True
    p = prepare_movie(movie, size=8, centre=(6, 7), mask=extra)
    window = CropWindow(2, 3, 8, 1)
    assert p.metadata["crop"]["y0"] == 2 and p.metadata["crop"]["x0"] == 3
    _check_prepared(p, frames, window, file_bad | extra)
    assert p.mask.bad.sum() == 2 and p.mask.bad[3, 3] and p.mask.bad[4, 4] and p.mask.sources == ["file.h5", "given"]
    q = prepare_movie(movie, size=8, centre=(6, 7), use_file_mask=False)
    _check_prepared(q, frames, window)
    assert not q.mask.bad.any() and q.mask.sources == []
    with pytest.raises(ConfigError, match="the mask is 3x4 but the detector frames are 12x14"):
        prepare_movie(movie, mask=np.zeros((3, 4), bool))
    wrong = Movie(frames, mask=DetectorMask(bad=np.zeros((3, 3), bool)))
    with pytest.raises(DataValidationError, match="movie: the mask is 3x3"):
        prepare_movie(wrong, size=8)
    with pytest.raises(ConfigError, match=r"the crop window \{'y0': 20, 'x0': 0, 'size': 8, 'bin': 1\} does not overlap the 12x14 detector"):
        prepare_movie(Movie(frames), window=CropWindow(20, 0, 8))
    with pytest.raises(ConfigError, match="does not overlap"):
        prepare_movie(Movie(frames), window=CropWindow(0, -8, 8))


def test_prepare_movie_window_centre_and_geometry_metadata():
    frames = _frames(2, 16, 16)
    meta = {"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 75.0}
    p = prepare_movie(Movie(frames, metadata=dict(meta)), window=CropWindow(1, 2, 4, 3))
    crop = p.metadata["crop"]
    assert (crop["centre_y"], crop["centre_x"], crop["centre_source"]) == (1 + 6 + 1.0, 2 + 6 + 1.0, "window")
    assert p.metadata["detector_pixel_um"] == 225.0 and p.metadata["energy_kev"] == 8.0
    q = prepare_movie(Movie(_frames(2, 20, 20), metadata=dict(meta)), window=CropWindow(1, 2, 8, 2))
    assert (q.metadata["crop"]["centre_y"], q.metadata["crop"]["centre_x"]) == (9.5, 10.5)
    assert q.pixel_size_nm == pytest.approx(Geometry(8.0, 5.0, 150.0, 8).pixel_size_nm)
    # a recorded centre is kept when a window is given
    rec = Movie(frames, beam_centre=BeamCentre(7.5, 8.25, "file:/c"))
    assert prepare_movie(rec, window=CropWindow(0, 0, 8, 2)).metadata["crop"]["centre_source"] == "file:/c"
    # a given object-plane pixel follows the window: dx = lambda z / (m p)
    px = prepare_movie(Movie(frames, metadata={"pixel_size_nm": 10.0}), size=8, centre=(8, 8))
    assert px.metadata["pixel_size_nm"] == pytest.approx(20.0) and "detector_pixel_um" not in px.metadata
    same = prepare_movie(Movie(frames, metadata={"pixel_size_nm": 10.0, "detector_pixel_um": 75.0}))
    assert same.metadata["pixel_size_nm"] == 10.0 and same.metadata["detector_pixel_um"] == 75.0
    np.testing.assert_array_equal(same.data.compute(), frames.astype(np.float32))
    assert same.mask.bad.shape == (16, 16) and not same.mask.bad.any()
    binned = prepare_movie(Movie(frames, metadata={"pixel_size_nm": 10.0, "detector_pixel_um": 75.0}), size=8, bin=2)
    assert binned.metadata["pixel_size_nm"] == 10.0 and binned.metadata["detector_pixel_um"] == 150.0
    assert binned.metadata["crop"]["bin"] == 2


def test_prepare_movie_keeps_frames_lazy_and_chunked(tmp_path):
    frames = _frames(40, 12, 14)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["data"] = frames
    movie = open_movie(tmp_path / "m.h5", validate=False)
    p = prepare_movie(movie, size=8, centre=(6, 7))
    assert p.data.chunks[0] == (32, 8)  # blocks of up to 32 frames
    got = p.data[33:35].compute()
    np.testing.assert_array_equal(got, frames[33:35, 2:10, 3:11].astype(np.float32))
    lazy = Movie(da.from_array(frames, chunks=(5, 12, 14)))
    q = prepare_movie(lazy, size=8, centre=(6, 7))
    assert q.data.chunks == ((5,) * 8, (8,), (8,))
    np.testing.assert_array_equal(q.data.compute(), frames[:, 2:10, 3:11].astype(np.float32))


# -- probe fitting and the info report -------------------------------------------------------------

def test_centre_crop_probe():
    p = (np.arange(2 * 6 * 6) + 1j).reshape(2, 6, 6).astype(np.complex64)
    same, note = centre_crop_probe(p, 6)
    assert same is p and note is None
    small, note = centre_crop_probe(p, 4)
    np.testing.assert_array_equal(small, p[:, 1:5, 1:5])
    assert note == "the probe (6x6) was cropped to the 4x4 window, centred" and small.dtype == np.complex64
    big, note = centre_crop_probe(p, 9)
    assert note == "the probe (6x6) was padded to the 9x9 window, centred" and big.shape == (2, 9, 9)
    np.testing.assert_array_equal(big[:, 1:7, 1:7], p)
    assert big[:, 0].sum() == 0 and big[:, 7:].sum() == 0 and big[:, :, 0].sum() == 0 and big[:, :, 7:].sum() == 0
    rect = np.ones((1, 4, 8))
    out, note = centre_crop_probe(rect, 6)
    assert note.startswith("the probe (4x8) was padded") and out[0, 0].sum() == 0 and out[0, 1:5].sum() == 4 * 6


def test_detector_report_values():
    data = np.zeros((3, 40, 40), np.float32)
    data[:, 10, 10] = data[:, 30, 30] = 5.0
    data[:, 3, 35] = 1e6  # an isolated hot pixel
    meta = {"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 75.0}
    m = Movie(data, metadata=meta, mask=DetectorMask().with_bad(np.eye(40, dtype=bool), "m.npy"))
    info = detector_report(m, size=16, bin=2, centre=(20, 20))
    assert info["beam_centre_yx"] == "20.00, 20.00" and info["beam_centre_source"] == "given"
    assert info["crop"] == "32x32 px at (y 4, x 4), binned 2x2 -> 16x16 frames"
    assert info["cropped_pixel_size_nm"] == round(Geometry(8.0, 5.0, 150.0, 16).pixel_size_nm, 4)
    assert info["mask_pixels"] == 40 and info["mask_sources"] == "m.npy"
    assert info["hot_pixel_candidates"] == 1
    plain = detector_report(Movie(data, metadata={"pixel_size_nm": 3.0}), size=16, centre=(20.3, 20.6), hot_pixels=False)
    assert plain["crop"] == "16x16 px at (y 12, x 13) -> 16x16 frames" and "hot_pixel_candidates" not in plain
    assert plain["beam_centre_yx"] == "20.30, 20.60" and "mask_pixels" not in plain
    assert plain["cropped_pixel_size_nm"] == 7.5
    out = detector_report(Movie(data), size=16, centre=(2, 20), hot_pixels=False)
    assert out["crop"] == "16x16 px at (y -6, x 12) -> 16x16 frames (extends beyond the detector: outside pixels unmeasured)"
    assert out["cropped_pixel_size_nm"].startswith("unknown (no geometry: sizes in pixels; give --energy-kev")
    partial = detector_report(Movie(data, metadata={"energy_kev": 8.0, "distance_m": 5.0}), size=16, centre=(20, 20),
                              hot_pixels=False)
    assert partial["cropped_pixel_size_nm"].startswith("unknown")
    no_mask = detector_report(Movie(data), size=16, centre=(20, 20))
    assert no_mask["hot_pixel_candidates"] == 3  # the two 5-count pixels are no longer masked


# -- survivors of the first mutation run (each test names what it pins down) ---------------------

def test_plan_crop_square_frame_rules():
    def movie(n, centre=None):
        return Movie(np.ones((2, n, n), np.float32), beam_centre=None if centre is None else BeamCentre(*centre, "file:/c"))

    # a square frame whose recorded centre is far off is not taken whole
    assert plan_crop(movie(16, (4.0, 4.0))) == (BeamCentre(4.0, 4.0, "file:/c"), CropWindow(0, 0, 8, 1))
    # both coordinates must be within 1 px of the middle
    for off in ((8.0, 4.0), (4.0, 8.0), (10.0, 8.0), (8.0, 10.0), (6.0, 8.0), (8.0, 6.0)):
        c, w = plan_crop(movie(16, off))
        assert c.source == "file:/c" and w != CropWindow(0, 0, 16, 1), off
    # the middle of an odd frame is pixel N // 2 (7 of 15), not 7.5
    for rec in ((6.2, 7.0), (7.0, 6.2)):
        assert plan_crop(movie(15, rec)) == (BeamCentre(7.0, 7.0, "frame centre"), CropWindow(0, 0, 15, 1)), rec
    assert plan_crop(movie(15)) == (BeamCentre(7.0, 7.0, "frame centre"), CropWindow(0, 0, 15, 1))
    assert plan_crop(movie(27), None, 3) == (BeamCentre(13.0, 13.0, "frame centre"), CropWindow(0, 0, 9, 3))


def test_plan_crop_estimates_by_default():
    rect = _movie()  # 20 x 24 with a pattern symmetric about (10, 12), no recorded centre
    c, w = plan_crop(rect, 8)
    assert c.source == "estimated" and (c.y, c.x) == (pytest.approx(10.0, abs=0.05), pytest.approx(12.0, abs=0.05))
    assert w == CropWindow(6, 8, 8, 1)
    c, _ = plan_crop(_movie(centre=BeamCentre(-5.0, 3.0, "file:/bad")), 8)  # a recorded centre off the detector
    assert c.source == "estimated"


def test_prepare_movie_estimates_with_the_given_mask():
    m = _movie()
    m.data[:, 0, 0] = 1000.0  # junk that would pull the estimate; the given mask hides it
    bad = np.zeros((20, 24), bool)
    bad[0, 0] = True
    p = prepare_movie(m, size=8, mask=bad)
    crop = p.metadata["crop"]
    assert crop["centre_source"] == "estimated" and (crop["y0"], crop["x0"]) == (6, 8)
    assert crop["centre_y"] == pytest.approx(10.0, abs=0.05) and crop["centre_x"] == pytest.approx(12.0, abs=0.05)


def test_prepare_movie_window_with_a_recorded_centre_off_the_detector():
    m = _movie(centre=BeamCentre(500.0, 500.0, "file:/c"))
    p = prepare_movie(m, window=CropWindow(1, 2, 5, 1))  # not estimated: the frame centre
    crop = p.metadata["crop"]
    assert (crop["centre_y"], crop["centre_x"], crop["centre_source"]) == (10.0, 12.0, "frame centre")
    q = prepare_movie(_movie(), window=CropWindow(1, 2, 5, 1))  # odd window: the middle is pixel 5 // 2 = 2
    assert (q.metadata["crop"]["centre_y"], q.metadata["crop"]["centre_x"]) == (3.0, 4.0)
    assert q.beam_centre == BeamCentre(2.0, 2.0, "window")


def test_prepare_movie_file_mask_and_window_beyond_the_detector():
    frames = _frames(2, 12, 14)
    bad = np.zeros((12, 14), bool)
    bad[3, 4] = True
    movie = Movie(frames, mask=DetectorMask.for_dtype(np.uint16).with_bad(bad, "file.h5"))
    p = prepare_movie(movie, window=CropWindow(-2, -1, 8, 1))
    static = p.mask.bad
    assert static[:2].all() and static[:, 0].all() and static[5, 5] and static.sum() == 2 * 8 + 6 + 1
    got = p.data.compute()
    assert np.isnan(got[:, 5, 5]).all() and np.isnan(got[:, :2]).all() and got[0, 2, 1] == frames[0, 0, 0]


@pytest.mark.parametrize("source", ["numpy", "hdf5"])
def test_prepare_movie_static_mask_reaches_every_reader(tmp_path, source):
    frames = _frames(4, 12, 14)
    bad = np.zeros((12, 14), bool)
    bad[5, 6] = True
    if source == "hdf5":
        with h5py.File(tmp_path / "m.h5", "w") as f:
            f["data"] = frames
        movie = open_movie(tmp_path / "m.h5", validate=False, mask=bad)
    else:
        movie = Movie(frames, mask=DetectorMask.for_dtype(np.uint16).with_bad(bad, "given"))
    got = prepare_movie(movie, window=CropWindow(2, 3, 8, 1)).data.compute()
    assert np.isnan(got[:, 3, 3]).all() and np.isfinite(got).sum() == 4 * 63
    got2 = prepare_movie(movie, window=CropWindow(2, 2, 4, 2)).data.compute()  # bin (1, 2) holds (5, 6): 3 of 4 measured
    assert got2[0, 1, 2] == pytest.approx((frames[0, 4:6, 6:8].astype(np.float64).sum() - frames[0, 5, 6]) * 4 / 3)


def test_hdf5_blocks_follow_the_window_size(tmp_path):
    frames = (np.arange(40 * 200 * 200) % 251).astype(np.uint8).reshape(40, 200, 200)
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f["data"] = frames
    movie = open_movie(tmp_path / "big.h5", validate=False)
    p = prepare_movie(movie, window=CropWindow(10, 10, 190))  # 190 x 190 on the detector: 4 MiB // (36100 * 4) = 29 frames
    assert p.data.chunks[0] == (29, 11)
    np.testing.assert_array_equal(p.data[30].compute(), frames[30, 10:200, 10:200].astype(np.float32))


def test_centre_crop_probe_padding_offsets_and_notes():
    p = np.ones((1, 6, 4), np.complex64)
    out, note = centre_crop_probe(p, 10)
    assert out[0, 2:8, 3:7].sum() == 24 and out.sum() == 24  # (10 - 6) // 2 = 2 rows, (10 - 4) // 2 = 3 columns
    out, note = centre_crop_probe(np.ones((1, 6, 6)), 10)
    assert out[0, 2:8, 2:8].sum() == 36 and out.sum() == 36
    out, note = centre_crop_probe(np.ones((1, 6, 4)), 6)  # rows equal, columns padded
    assert note == "the probe (6x4) was padded to the 6x6 window, centred" and out[0, :, 1:5].sum() == 24


def test_detector_report_pixel_of_a_non_square_frame():
    data = np.ones((2, 30, 40), np.float32)
    info = detector_report(Movie(data, metadata={"pixel_size_nm": 1.0}), size=12, centre=(15, 20), hot_pixels=False)
    assert info["cropped_pixel_size_nm"] == 3.3333  # 1 nm x 40 columns / 12, rounded to 4 decimals


def test_bin_frames_sums_in_float64():
    frame = np.array([[[2.0**24, 1.0], [1.0, 1.0]]], np.float32)  # float32 steps are 2 at 2^24: 1 + 1 + 1 is lost
    assert bin_frames(frame, 2)[0, 0, 0] == np.float32(2.0**24 + 3)


def test_padding_of_a_window_taller_than_its_on_detector_width():
    frames = _frames(2, 12, 14)
    p = prepare_movie(Movie(frames), window=CropWindow(0, -3, 8, 1))  # 8 rows x 5 columns on the detector
    got = p.data.compute()
    assert got.dtype == np.float32 and np.isnan(got[:, :, :3]).all()
    np.testing.assert_array_equal(got[:, :, 3:], frames[:, 0:8, 0:5].astype(np.float32))
    q = prepare_movie(Movie(frames), window=CropWindow(-2, -1, 8, 1))
    assert q.data.compute().dtype == np.float32 and q.data.dtype == np.float32


def test_prepare_movie_chunks_values_and_what_it_carries():
    frames = _frames(6, 12, 14)
    probe = np.ones((1, 8, 8), np.complex64)
    mask = DetectorMask.for_dtype(np.uint16)
    mask.bit_counts = {"gap": 5, "dead": 1}
    mask.sources = ["f.h5"]
    movie = Movie(frames, probe=probe, mask=mask)
    p = prepare_movie(movie, size=8, centre=(6.12345, 7.98765))
    assert p.data.chunks[0] == (1,) * 6  # one task per frame
    assert p.probe is probe and p.mask.bit_counts == {"gap": 5, "dead": 1} and p.mask.sources == ["f.h5"]
    assert p.mask.bad.dtype == bool and not p.mask.bad.any()
    crop = p.metadata["crop"]
    assert (crop["centre_y"], crop["centre_x"]) == (6.123, 7.988)
    whole = prepare_movie(Movie(frames[:, :12, :12]))
    assert whole.mask.bad.dtype == bool and whole.mask.bad.shape == (12, 12) and not whole.mask.bad.any()
    rows = Movie(da.from_array(frames, chunks=(4, 5, 14)))  # a lazy movie chunked along rows too
    r = prepare_movie(rows, size=8, centre=(6, 7))
    np.testing.assert_array_equal(r.data.compute(), frames[:, 2:10, 3:11].astype(np.float32))
    with pytest.raises(ConfigError, match=r"the crop window \{'y0': 12, 'x0': 0, 'size': 8, 'bin': 1\} does not overlap"):
        prepare_movie(Movie(frames), window=CropWindow(12, 0, 8))
    with pytest.raises(ConfigError, match="does not overlap"):
        prepare_movie(Movie(frames), window=CropWindow(0, 14, 8))


def test_centre_attributes_stored_as_bytes_and_integers(tmp_path):
    def build(f):
        g = f.create_group("entry/instrument/eiger")
        g.attrs["NX_class"] = np.bytes_(b"NXdetector")  # h5py returns numpy bytes for these
        g["beam_center_x"] = np.int32(150)  # an integer centre is a number too
        g["beam_center_x"].attrs["units"] = np.bytes_(b"um")
        g["beam_center_y"] = np.int32(300)
        g["x_pixel_size"] = 75e-6
    with _h5(tmp_path, build, "bytes.h5") as f:
        c = read_centre_hdf5(f, "nexus")
    assert c.as_tuple() == (pytest.approx(4.0), pytest.approx(2.0)) and c.source == "file:/entry/instrument/eiger/beam_center_x,y"

    def build2(f):  # an unsigned corner position is negated as a number, not wrapped
        d = f.create_group("entry_1/instrument_1/detector_1")
        d["corner_position"] = np.array([4, 6, 5], np.uint16)
        d["x_pixel_size"] = 1.0
    with _h5(tmp_path, build2, "u.cxi") as f:
        assert read_centre_hdf5(f, "cxi").as_tuple() == (-6.0, -4.0)


def test_centre_estimate_treats_masked_and_negative_pixels_as_unmeasured():
    y, x = np.mgrid[0:33, 0:33]

    def blob(cy, cx, s):
        return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))

    pattern = 10 * blob(16, 16, 6) + 200 * blob(10, 12, 1.5) + 200 * blob(22, 20, 1.5)  # symmetric about (16, 16)
    bad = np.zeros(pattern.shape, bool)
    bad[19:26, 17:24] = True  # the mirror of the bright spot is hidden
    hidden = np.where(bad, 0.0, pattern)
    for b in (bad, bad.astype(np.uint8)):
        cy, cx, score = estimate_centre(hidden, b)
        assert abs(cy - 16) < 0.1 and abs(cx - 16) < 0.1 and score > 0.99
    cy, cx, _ = estimate_centre(np.where(bad, -1.0, pattern))  # a gap written as -1: unmeasured too
    assert abs(cy - 16) < 0.1 and abs(cx - 16) < 0.1
    # measured zeros are data: without the mask the hidden spot really is missing and the estimate moves
    cy, cx, _ = estimate_centre(hidden)
    assert abs(cy - 12.57) < 0.1 and abs(cx - 14.49) < 0.1
    # the movie's mask reaches the estimate (summed_pattern zeroes those pixels; the mask says they are unmeasured)
    movie = Movie(hidden[None].astype(np.float32), mask=DetectorMask().with_bad(bad, "m.npy"))
    c = resolve_centre(movie)
    assert c.source == "estimated" and abs(c.y - 16) < 0.1 and abs(c.x - 16) < 0.1


def test_centre_estimate_of_invalid_only_patterns_and_refinement_edges():
    for value in (np.nan, np.inf, -np.inf):
        with pytest.raises(ConfigError, match=r"^cannot estimate the beam centre: the pattern has no counts; give it \(--center Y,X\)$"):
            estimate_centre(np.full((8, 8), value))
    single = np.zeros((9, 9))
    single[4, 4] = 5.0
    assert estimate_centre(single) == (4.0, 4.0, 1.0)  # a lone count: its neighbours score 0, no sub-pixel offset
    last = np.zeros((9, 9))
    last[8, 8] = 5.0
    with pytest.raises(ConfigError, match="lies at the edge"):  # the peak on the last row and column
        estimate_centre(last)


@pytest.mark.parametrize("cy, cx", [(14.3, 18.6), (12.8, 19.2), (16.5, 12.5)])
def test_estimated_centre_is_sub_pixel_accurate(cy, cx):
    y, x, _ = estimate_centre(_blob((31, 36), cy, cx))
    assert abs(y - cy) < 0.01 and abs(x - cx) < 0.01


def test_largest_window_search():
    assert crop_window((9.0, 9.0), (18, 18), None) == CropWindow(0, 0, 18, 1)
    assert crop_window((25.0, 30.0), (40, 60), None) == CropWindow(10, 15, 30, 1)
    assert crop_window((25.0, 30.0), (40, 60), None, 2) == CropWindow(11, 16, 14, 2)


def test_prepare_movie_plans_the_crop_with_the_given_mask():
    y, x = np.mgrid[0:33, 0:33]

    def blob(cy, cx, s):
        return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))

    pattern = 10 * blob(16, 16, 6) + 200 * blob(10, 12, 1.5) + 200 * blob(22, 20, 1.5)
    bad = np.zeros(pattern.shape, bool)
    bad[19:26, 17:24] = True
    movie = Movie(np.where(bad, 0.0, pattern)[None].astype(np.float32))
    crop = prepare_movie(movie, size=8, mask=bad).metadata["crop"]
    assert crop["centre_source"] == "estimated" and (crop["y0"], crop["x0"]) == (12, 12)
    assert abs(crop["centre_y"] - 16) < 0.1 and abs(crop["centre_x"] - 16) < 0.1

"""Detector masks against hand-made cases: dtype sentinels, invalid values, bit conventions, mask files,
hot-pixel suggestions, exact messages (issue 20: mutation testing of io/mask.py)."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
import tifffile

from napari_cxdi.errors import DataValidationError, InputFileError
from napari_cxdi.io.mask import (
    CXI_BITS, NEXUS_BITS, DetectorMask, decode_bits, mask_from_cxi, mask_from_nexus, read_hdf5_detector,
    read_mask_file, suggest_hot_pixels,
)


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


# ---------------------------------------------------------------- DetectorMask rules


@pytest.mark.parametrize("dtype, sentinel", [(np.uint16, 65535.0), (np.uint32, 4294967295.0),
                                             (np.int32, 2147483647.0), (np.uint8, None), (np.float32, None)])
def test_sentinel_is_the_maximum_of_wide_integer_types(dtype, sentinel):
    m = DetectorMask.for_dtype(dtype, saturation=100.0)
    assert m.sentinel == sentinel and m.saturation == 100.0 and m.bad is None


def test_invalid_values_per_dtype():
    m = DetectorMask(saturation=50.0, sentinel=65535.0)
    floats = np.array([[1.0, np.nan, np.inf], [-np.inf, -0.5, 50.0], [49.9, 0.0, 65535.0]], np.float32)
    np.testing.assert_array_equal(m.invalid(floats), [[False, True, True], [True, True, True],
                                                       [False, False, True]])   # the sentinel is >= saturation
    ints = np.array([[1, -2], [65535, 50]], np.int32)
    np.testing.assert_array_equal(m.invalid(ints), [[False, True], [True, True]])
    unsigned = np.array([[0, 65535], [49, 7]], np.uint16)
    no_limit = DetectorMask(sentinel=65535.0)
    np.testing.assert_array_equal(no_limit.invalid(unsigned), [[False, True], [False, False]])
    # the sentinel only applies to integer data: 65535.0 in float frames is a count like any other
    np.testing.assert_array_equal(no_limit.invalid(np.array([[65535.0]])), [[False]])
    np.testing.assert_array_equal(DetectorMask().invalid(np.array([[-1, 5]], np.int16)), [[True, False]])
    np.testing.assert_array_equal(DetectorMask().invalid(np.array([[3, 5]], np.uint8)), [[False, False]])


def test_apply_gives_float32_with_nan_at_unmeasured_pixels():
    static = np.array([[True, False], [False, False]])
    m = DetectorMask(bad=static, saturation=10.0)
    frames = np.array([[[1, 2], [3, 10]], [[5, 6], [7, 8]]], np.uint16)
    out = m.apply(frames)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(out), [[[True, False], [False, True]], [[True, False], [False, False]]])
    np.testing.assert_array_equal(out[1, 1], [7.0, 8.0])
    other = np.array([[False, False], [False, True]])
    np.testing.assert_array_equal(np.isnan(m.apply(frames, bad=other))[1], other)   # given region replaces .bad
    np.testing.assert_array_equal(np.isnan(DetectorMask().apply(frames)), frames >= 65536)   # nothing masked


def test_with_bad_ors_copies_and_names_sources():
    a = np.array([[True, False], [False, False]])
    m = DetectorMask(saturation=5.0).with_bad(a, "file.h5")
    assert m.sources == ["file.h5"] and m.saturation == 5.0
    a[1, 1] = True                                   # the mask keeps its own copy
    assert m.n_bad == 1
    m2 = m.with_bad(np.array([[0, 0], [1, 0]]), "painted")
    np.testing.assert_array_equal(m2.bad, [[True, False], [True, False]])
    assert m2.bad.dtype == bool and DetectorMask().with_bad(np.array([[0, 2]]), "int").bad.dtype == bool
    np.testing.assert_array_equal(np.isnan(m2.apply(np.ones((1, 2, 2), np.uint16)))[0], m2.bad)
    assert m2.sources == ["file.h5", "painted"] and m2.n_bad == 2 and m.n_bad == 1
    assert m2.with_bad(None, "nothing") is m2
    with pytest.raises(DataValidationError,
                       match=_exact("user.npy: the mask is 3x4 but the detector frames are 2x2")):
        m2.with_bad(np.zeros((3, 4), bool), "user.npy")
    with pytest.raises(DataValidationError, match=_exact(
            "movie.h5: the mask is 2x2 but the frames are 5x6; give a mask of the detector's full size")):
        m2.check_shape((5, 6), "movie.h5")
    m2.check_shape((2, 2), "movie.h5")
    DetectorMask().check_shape((5, 6), "movie.h5")     # no static mask: any frame size
    with pytest.raises(DataValidationError,
                       match=_exact("user.npy: the mask is 3x4 but the detector frames are 2x3")):
        DetectorMask().with_bad(np.zeros((2, 3)), "a").with_bad(np.zeros((3, 4), bool), "user.npy")
    bare = DetectorMask(saturation=5.0, sentinel=7.0, bit_counts={"gap": 3}).with_bad(a, "f").without_file_mask()
    assert bare.bad is None and bare.sources == [] and bare.bit_counts == {}
    assert bare.saturation == 5.0 and bare.sentinel == 7.0 and bare.n_bad == 0


def test_describe_reports_counts_fraction_sources_and_rules():
    bad = np.zeros((4, 5), bool)
    bad[0, :3] = True
    m = DetectorMask(bad=bad, saturation=1e6, sentinel=65535.0, sources=["a.h5", "hot pixels"],
                     bit_counts={"gap": 3, "dead": 0})
    assert m.describe() == {"mask_pixels": 3, "mask_fraction": 0.15, "mask_sources": "a.h5, hot pixels",
                            "mask_gap": 3, "saturation_counts": 1e6, "invalid_value": 65535}
    assert DetectorMask().describe() == {"mask_pixels": 0, "mask_sources": "none"}
    one_of_seven = DetectorMask(bad=np.array([[True] + [False] * 6]))
    assert one_of_seven.describe()["mask_fraction"] == 0.14286          # 1/7 to 5 decimals


# ---------------------------------------------------------------- bit conventions


def test_decode_bits_counts_pixels_per_bit():
    raw = np.array([[0, 1, 2], [3, 256, 8 | 1]], np.uint32)
    assert decode_bits(raw, NEXUS_BITS) == {"gap": 3, "dead": 2, "under-responding": 0, "hot": 1, "noisy": 0,
                                            "user": 1}
    assert decode_bits(raw.astype(np.float32), NEXUS_BITS) == {}
    assert decode_bits(np.array([[1 << 31]], np.uint32), {31: "top"}) == {"top": 1}   # no sign trouble


def test_nexus_any_bit_masks_but_cxi_only_its_masking_bits():
    raw = np.array([[0, 1, 1 << 5], [1 << 8, 1 << 12, (1 << 13) | (1 << 14)]], np.uint32)
    np.testing.assert_array_equal(mask_from_nexus(raw), [[False, True, True], [True, True, True]])
    np.testing.assert_array_equal(mask_from_cxi(raw), [[False, True, False], [False, True, False]])
    for bit in CXI_BITS:
        assert mask_from_cxi(np.array([1 << bit], np.uint32))[0]
    for bit in (5, 8, 11, 13, 14):
        assert not mask_from_cxi(np.array([1 << bit], np.uint32))[0]
    flags = np.array([[True, False]])
    assert mask_from_cxi(flags) is not None and mask_from_cxi(flags).tolist() == [[True, False]]


# ---------------------------------------------------------------- reading masks from files


def _h5(path, datasets: dict, attrs: dict | None = None):
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f.create_dataset(name, data=value)
        for name, (key, value) in (attrs or {}).items():
            f.require_group(name).attrs[key] = value
    return path


def test_read_hdf5_detector_nexus_mask_saturation_and_centre(tmp_path):
    raw = np.zeros((3, 4), np.uint32)
    raw[0, 0] = 1
    raw[2, 3] = 1 << 3
    path = _h5(tmp_path / "master.h5", {
        "entry/instrument/eiger/pixel_mask": raw[None],
        "entry/instrument/detector/saturation_value": 5000,
        "entry/instrument/detector/detectorSpecific/countrate_correction_count_cutoff": 4000.0,
        "entry/instrument/detector/beam_center_x": 2.5, "entry/instrument/detector/beam_center_y": 1.0,
    }, {"entry/instrument/eiger": ("NX_class", "NXdetector")})
    with h5py.File(path, "r") as f:
        out = read_hdf5_detector(f, "nexus")
    np.testing.assert_array_equal(out["bad"], raw != 0)
    assert out["bit_counts"]["gap"] == 1 and out["bit_counts"]["hot"] == 1
    assert out["source"] == "master.h5:/entry/instrument/eiger/pixel_mask"
    assert out["saturation"] == 4000.0                    # the lower of two limits
    assert (out["centre"].y, out["centre"].x) == (1.0, 2.5)


def test_read_hdf5_detector_cxi_mask_and_no_extras(tmp_path):
    raw = np.array([[0, 1 << 5], [1 << 3, 0]], np.uint32)
    path = _h5(tmp_path / "data.cxi", {"entry_1/instrument_1/detector_1/mask": raw,
                                       "entry_1/instrument_1/detector_1/saturation_value": 0.0})
    with h5py.File(path, "r") as f:
        out = read_hdf5_detector(f, "cxi")
    assert set(out) == {"bad", "bit_counts", "source"}      # saturation 0 is no limit; no centre recorded
    np.testing.assert_array_equal(out["bad"], [[False, False], [True, False]])
    assert out["bit_counts"]["dead"] == 1 and out["source"] == "data.cxi:/entry_1/instrument_1/detector_1/mask"
    with pytest.raises(DataValidationError, match="a mask must be one image"):
        with h5py.File(_h5(tmp_path / "m3.cxi", {"entry_1/instrument_1/detector_1/mask": np.zeros((2, 2, 2))}),
                       "r") as f:
            read_hdf5_detector(f, "cxi")


def test_read_mask_file_formats(tmp_path):
    bad = np.array([[0, 3], [0, 1]], np.uint8)
    np.save(tmp_path / "m.npy", bad)
    np.testing.assert_array_equal(read_mask_file(tmp_path / "m.npy"), bad != 0)
    np.testing.assert_array_equal(read_mask_file(tmp_path / "m.npy", good_is_one=True), bad == 0)
    np.savez(tmp_path / "m.npz", other=np.ones((2, 2)), mask=bad[None])
    np.testing.assert_array_equal(read_mask_file(tmp_path / "m.npz"), bad != 0)       # "mask" preferred, [1,H,W]
    np.testing.assert_array_equal(read_mask_file(tmp_path / "m.npz", dataset="other"), np.ones((2, 2), bool))
    np.savez(tmp_path / "first.npz", a=bad, b=np.zeros((2, 2)))
    np.testing.assert_array_equal(read_mask_file(tmp_path / "first.npz"), bad != 0)    # else the first array
    tifffile.imwrite(tmp_path / "m.TIF", bad.astype(np.float32))
    np.testing.assert_array_equal(read_mask_file(tmp_path / "m.TIF"), bad != 0)
    tifffile.imwrite(tmp_path / "m.tiff", bad)
    np.testing.assert_array_equal(read_mask_file(tmp_path / "m.tiff"), bad != 0)


def test_read_mask_file_hdf5_paths(tmp_path):
    bad = np.array([[0, 1 << 5], [1, 0]], np.uint32)
    # a CXI mask path: the CXI bit convention (bit 5 does not mask)
    cxi = _h5(tmp_path / "c.h5", {"entry_1/instrument_1/detector_1/mask": bad})
    np.testing.assert_array_equal(read_mask_file(cxi), [[False, False], [True, False]])
    # a NeXus path: any bit masks
    nx = _h5(tmp_path / "n.h5", {"entry/instrument/detector/pixel_mask": bad})
    np.testing.assert_array_equal(read_mask_file(nx), bad != 0)
    # the only 2-D dataset, wherever it is
    only = _h5(tmp_path / "o.h5", {"some/where/bad": bad, "meta/value": 3.0})
    np.testing.assert_array_equal(read_mask_file(only), bad != 0)
    named = _h5(tmp_path / "d.h5", {"x": bad, "y": np.ones((2, 2))})
    np.testing.assert_array_equal(read_mask_file(named, dataset="y"), np.ones((2, 2), bool))
    with pytest.raises(InputFileError,
                       match=_exact(f"{named}: cannot tell which dataset is the mask (['x', 'y']); name it")):
        read_mask_file(named)
    with pytest.raises(InputFileError, match=_exact(f"{named}: no dataset 'z' in the mask file")):
        read_mask_file(named, dataset="z")
    many = _h5(tmp_path / "many.h5", {f"d{i}": np.zeros((2, 2)) for i in range(8)})
    with pytest.raises(InputFileError, match=_exact(f"{many}: cannot tell which dataset is the mask "
                                                    "(['d0', 'd1', 'd2', 'd3', 'd4', 'd5']); name it")):
        read_mask_file(many)
    # conventional names win over other 2-D datasets: "mask", then "data"
    conventional = _h5(tmp_path / "conv.h5", {"mask": bad, "other": np.ones((2, 2))})
    np.testing.assert_array_equal(read_mask_file(conventional), bad != 0)
    data = _h5(tmp_path / "data.h5", {"data": bad, "other": np.ones((2, 2))})
    np.testing.assert_array_equal(read_mask_file(data), bad != 0)


def test_read_mask_file_refusals(tmp_path):
    with pytest.raises(InputFileError, match=_exact(f"{tmp_path / 'missing.npy'}: mask file not found")):
        read_mask_file(tmp_path / "missing.npy")
    (tmp_path / "broken.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(InputFileError, match="^" + re.escape(f"{tmp_path / 'broken.h5'}: cannot read the mask: ")):
        read_mask_file(tmp_path / "broken.h5")
    np.save(tmp_path / "pickled.npy", np.array([[None, 1]], dtype=object), allow_pickle=True)
    with pytest.raises(InputFileError, match="cannot read the mask"):          # never unpickled
        read_mask_file(tmp_path / "pickled.npy")
    cube = _h5(tmp_path / "cube.h5", {"entry_1/instrument_1/detector_1/mask": np.zeros((2, 3, 3), np.uint32)})
    with pytest.raises(DataValidationError,
                       match=_exact(f"{cube}: a mask must be one image [H, W], got shape (2, 3, 3)")):
        read_mask_file(cube)
    np.save(tmp_path / "c.npy", np.zeros((2, 2), np.complex64))
    with pytest.raises(DataValidationError, match=re.escape("a mask must be bool or integer, got complex64")):
        read_mask_file(tmp_path / "c.npy")
    np.save(tmp_path / "stack.npy", np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(DataValidationError,
                       match=_exact(f"{tmp_path / 'stack.npy'}: a mask must be one image [H, W], got shape (2, 3, 3)")):
        read_mask_file(tmp_path / "stack.npy")


# ---------------------------------------------------------------- hot pixels


def test_hot_pixel_suggestion_hand_cases():
    s = np.full((7, 7), 10.0)
    s[1, 1] = 1000.0                          # isolated: 100x its neighbours, far above Poisson noise
    s[4:6, 4:6] = 1000.0                      # a 2 x 2 speckle: bright neighbours, not hot
    hot, n = suggest_hot_pixels(s)
    assert n == 1 and hot[1, 1] and hot.sum() == 1
    # ratio: 41 vs neighbours 10 is > 4x; 39 is not
    s2 = np.full((5, 5), 10.0)
    s2[2, 2] = 41.0
    assert suggest_hot_pixels(s2, n_sigma=0.0)[1] == 1
    s2[2, 2] = 39.0
    assert suggest_hot_pixels(s2, n_sigma=0.0)[1] == 0
    # sigma: excess 31 over neighbour 10 is 9.3 sqrt(11) -> below 10 sigma, above 9 sigma
    s2[2, 2] = 41.0
    assert suggest_hot_pixels(s2)[1] == 0 and suggest_hot_pixels(s2, n_sigma=9.0)[1] == 1
    # a masked neighbour does not count as bright; a masked pixel is never suggested
    s3 = np.zeros((5, 5))
    s3[2, 2] = s3[2, 3] = 500.0
    assert suggest_hot_pixels(s3)[1] == 0
    bad = np.zeros((5, 5), bool)
    bad[2, 3] = True
    hot3, n3 = suggest_hot_pixels(s3, bad=bad)
    assert n3 == 1 and hot3[2, 2]
    bad[2, 2] = True
    assert suggest_hot_pixels(s3, bad=bad)[1] == 0
    # NaN / inf sums are empty pixels; a corner pixel's outside neighbours are 0
    s4 = np.zeros((4, 4))
    s4[0, 0] = 300.0
    s4[3, 3] = np.inf
    s4[0, 3] = np.nan
    hot4, n4 = suggest_hot_pixels(s4)
    assert n4 == 1 and hot4[0, 0]


def test_hot_pixel_boundaries_and_what_counts_as_a_neighbour():
    """A lone pixel among zeros is hot when it exceeds 10 sigma of sqrt(0 + 1): more than 10 counts."""
    def lone(value, where=(2, 2), shape=(5, 5)):
        s = np.zeros(shape)
        s[where] = value
        return s

    assert suggest_hot_pixels(lone(10.5))[1] == 1 and suggest_hot_pixels(lone(10.0))[1] == 0   # strictly above
    assert suggest_hot_pixels(lone(10.5, (0, 0)))[1] == 1        # beyond the edge there is nothing (0)
    s = np.full((5, 5), 10.0)
    s[2, 2] = 40.0
    assert suggest_hot_pixels(s, n_sigma=0.0)[1] == 0            # exactly 4x its neighbours: not more
    s[2, 2] = 45.0                                                # 35 over 10 = 10.55 sigma: hot at 10, not 11
    assert suggest_hot_pixels(s)[1] == 1 and suggest_hot_pixels(s, n_sigma=11.0)[1] == 0
    # unmeasured neighbours count as empty: a masked, a NaN or an infinite neighbour leaves the pixel lone
    for neighbour in (np.nan, np.inf):
        t = lone(10.5)
        t[2, 3] = neighbour
        assert suggest_hot_pixels(t)[1] == 1
    bad = np.zeros((5, 5), np.uint8)
    bad[2, 3] = 1                                                 # an integer mask: nonzero = bad
    t = lone(10.5)
    t[2, 3] = 1000.0
    hot, n = suggest_hot_pixels(t, bad=bad)
    assert n == 1 and hot[2, 2] and not hot[2, 3]


def test_sentinel_of_64_bit_types_flags_only_their_maximum():
    # float(max) of a 64-bit type rounds up past the maximum: cast back, it wrapped to 0 (uint64), which made
    # every zero count unmeasured
    for dtype in (np.uint64, np.int64):
        info = np.iinfo(dtype)
        frames = np.array([[0, 5, info.max, info.max - 1]], dtype)
        bad = DetectorMask.for_dtype(dtype).invalid(frames)
        np.testing.assert_array_equal(bad, [[False, False, True, False]])
        out = DetectorMask.for_dtype(dtype).apply(frames)
        assert out[0, 0] == 0.0 and out[0, 1] == 5.0 and np.isnan(out[0, 2])
    # a sentinel that is no value of the frames' type flags nothing
    assert not DetectorMask(sentinel=4294967295.0).invalid(np.array([65535, 0], np.uint16)).any()
    assert not DetectorMask(sentinel=-1.0).invalid(np.array([255, 0], np.uint8)).any()
    assert DetectorMask(sentinel=255.0).invalid(np.array([255, 0], np.uint8)).tolist() == [True, False]


def test_mask_shape_message_names_rows_and_columns():
    m = DetectorMask(bad=np.zeros((3, 4), bool))
    with pytest.raises(DataValidationError, match=_exact("W: the mask is 3x4 but the frames are 5x6; give a mask of the "
                                                         "detector's full size")):
        m.check_shape((5, 6), "W")
    m.check_shape((3, 4), "W")


def test_read_hdf5_detector_nxdetector_groups_attributes_and_limits(tmp_path):
    raw = np.zeros((3, 4), np.uint32)
    raw[1, 2] = 1
    # NX_class as fixed-length bytes (h5py returns numpy bytes) is recognised
    path = _h5(tmp_path / "b.h5", {"entry/instrument/det/pixel_mask": raw},
               {"entry/instrument/det": ("NX_class", np.bytes_(b"NXdetector"))})
    with h5py.File(path, "r") as f:
        out = read_hdf5_detector(f, "nexus")
    np.testing.assert_array_equal(out["bad"], raw != 0)
    assert out["source"] == "b.h5:/entry/instrument/det/pixel_mask"
    # a group with a pixel_mask but no NXdetector class, a dataset with the class: not detectors
    path = _h5(tmp_path / "n.h5", {"entry/instrument/other/pixel_mask": raw, "entry/instrument/flag": 1.0})
    with h5py.File(path, "a") as f:
        f["entry/instrument/flag"].attrs["NX_class"] = "NXdetector"
    with h5py.File(path, "r") as f:
        assert read_hdf5_detector(f, "nexus") == {}
    # CXI files take only the CXI mask paths, and the CXI corner position as the centre
    path = _h5(tmp_path / "c.cxi", {"entry/instrument/det/pixel_mask": raw,
                                    "entry_1/instrument_1/detector_1/corner_position": np.array([-2e-4, -1e-4, 1.0]),
                                    "entry_1/instrument_1/detector_1/x_pixel_size": 1e-4,
                                    "entry_1/instrument_1/detector_1/y_pixel_size": 1e-4},
               {"entry/instrument/det": ("NX_class", "NXdetector")})
    with h5py.File(path, "r") as f:
        out = read_hdf5_detector(f, "cxi")
    assert "bad" not in out and (out["centre"].y, out["centre"].x) == pytest.approx((1.0, 2.0))
    # a 3-frame mask is refused naming the file and the dataset
    path = _h5(tmp_path / "m.h5", {"entry/instrument/detector/pixel_mask": np.zeros((2, 3, 4), np.uint32)})
    with h5py.File(path, "r") as f:
        with pytest.raises(DataValidationError, match=_exact(f"{path}:entry/instrument/detector/pixel_mask: a mask must "
                                                             "be one image [H, W], got shape (2, 3, 4)")):
            read_hdf5_detector(f, "nexus")
    # saturation limits: text is no number; any positive value counts
    path = _h5(tmp_path / "s.h5", {"entry/instrument/detector/saturation_value": "n/a",
                                   "entry/instrument/detector/detectorSpecific/countrate_correction_count_cutoff": 1.0})
    with h5py.File(path, "r") as f:
        assert read_hdf5_detector(f, "nexus") == {"saturation": 1.0}

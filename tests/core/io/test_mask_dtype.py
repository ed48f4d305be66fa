"""A DetectorMask built by hand (API, console) holds a bool image whatever the user gave: validated once at
construction, so the checks that combine it with ~ and |= never meet an integer image (issue 20 review:
check_measured raised a raw numpy casting error for a uint8 mask)."""

import numpy as np
import pytest

from napari_cxdi.errors import DataValidationError
from napari_cxdi.io.mask import DetectorMask
from napari_cxdi.io.validate import check_movie


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, bool])
def test_zero_one_masks_become_bool(dtype):
    bad = np.zeros((4, 5), dtype)
    bad[1, 2] = 1
    m = DetectorMask(bad=bad)
    assert m.bad.dtype == bool and m.bad.sum() == 1 and m.bad[1, 2]


def test_a_uint8_mask_checks_a_movie_like_a_bool_one():
    movie = np.ones((2, 4, 5), np.float32)
    movie[:, 1, 2] = np.nan  # the bad pixel: unmeasured, not an error
    bad = np.zeros((4, 5), np.uint8)
    bad[1, 2] = 1
    as_int = check_movie(movie, "m", DetectorMask(bad=bad))
    as_bool = check_movie(movie, "m", DetectorMask(bad=bad.astype(bool)))
    assert as_int == as_bool and as_int["total_counts"] == 2 * 19


@pytest.mark.parametrize("bad, match", [
    (np.full((4, 5), 2, np.uint8), r"boolean or 0/1 .*uint8 values \[2\]"),
    (np.full((4, 5), 0.5), r"boolean or 0/1"),
    (np.array([["a"] * 5] * 4), r"boolean or 0/1"),
    (np.zeros((2, 4, 5), bool), r"2-D image \[H, W\].*\(2, 4, 5\)"),
])
def test_other_masks_are_typed_errors(bad, match):
    with pytest.raises(DataValidationError, match=match):
        DetectorMask(bad=bad)


def test_complex_and_object_zero_one_masks_are_refused_and_the_message_lists_five_values():
    # 0/1 in value but not an integer or float image: a complex or object mask is not a mask
    for bad in (np.zeros((4, 5), np.complex64), np.zeros((4, 5), object)):
        with pytest.raises(DataValidationError, match=r"boolean or 0/1"):
            DetectorMask(bad=bad)
    many = np.arange(20, dtype=np.int16).reshape(4, 5)
    with pytest.raises(DataValidationError, match=r"^a detector mask must be boolean or 0/1 \(True or 1 = bad pixel\), got "
                                                  r"int16 values \[0, 1, 2, 3, 4\]; convert it, e\.g\. mask != 0$"):
        DetectorMask(bad=many)

"""speckle.prepare on values float32 cannot hold: a typed error saying so, without numpy's overflow warning."""

import warnings

import numpy as np
import pytest

from napari_cxdi.errors import DataValidationError
from napari_cxdi.speckle.patterns import PreprocessConfig, prepare


def test_values_beyond_float32_are_a_data_error_without_a_warning():
    x = np.ones((64, 64))
    x[3, 4] = 1e39
    x[5, 6] = -1e40
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataValidationError, match=r"^pattern values beyond the float32 range \(\|value\| > 3\.4e\+38\) "
                                                      r"at 2 pixels; rescale the patterns$"):
            prepare(x, PreprocessConfig())
        x[3, 4] = np.inf  # a real inf in the input is the other message
        with pytest.raises(DataValidationError, match=r"^pattern values beyond the float32 range .* at 1 pixels"):
            prepare(x, PreprocessConfig())
        x[5, 6] = 1.0
        with pytest.raises(DataValidationError, match=r"^pattern contains NaN or infinite values$"):
            prepare(x, PreprocessConfig())


def test_an_object_array_of_numbers_is_checked_like_a_float_one():
    # numbers held in an object array (e.g. from a table): the range check reads them as float64, not as objects
    x = np.ones((64, 64), dtype=object)
    x[3, 4] = 1e39
    with pytest.raises(DataValidationError, match=r"^pattern values beyond the float32 range .* at 1 pixels"):
        prepare(x, PreprocessConfig())

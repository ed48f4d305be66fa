"""The live TIFF follower reads a file's frames as the offline reader does (issue 20 follow-up): a plain 3-frame
uint16 stack that tifffile stores as planar samples is 3 frames, not a refused colour image; a file with several
series gives all their frames; series of different frame sizes are refused."""

import numpy as np
import pytest
import tifffile

from napari_cxdi.errors import InputFileError
from napari_cxdi.io.arrays import read_tiff_movie
from napari_cxdi.io.live import TiffFolderFollower


def _frames(n, h=6, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 1000, (n, h, w)).astype(np.uint16)


@pytest.mark.parametrize("n", [3, 4])
def test_a_planar_3_or_4_frame_stack_is_frames_live_as_offline(tmp_path, n):
    stack = _frames(n)
    tifffile.imwrite(tmp_path / "a.tif", stack, photometric="minisblack", planarconfig="separate")
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert "S" in tif.series[0].axes  # stored as planar samples
    got = TiffFolderFollower(tmp_path, settle_s=0)._read(tmp_path / "a.tif")
    np.testing.assert_array_equal(got, stack)
    np.testing.assert_array_equal(got, np.asarray(read_tiff_movie(tmp_path / "a.tif").data))


def test_several_series_live_as_offline_and_mixed_frame_sizes_refused(tmp_path):
    a, b = _frames(2), _frames(3, seed=1)
    with tifffile.TiffWriter(tmp_path / "two.tif") as tw:
        tw.write(a, photometric="minisblack")
        tw.write(b, photometric="minisblack")
    fol = TiffFolderFollower(tmp_path, settle_s=0)
    got = fol._read(tmp_path / "two.tif")
    np.testing.assert_array_equal(got, np.concatenate([a, b]))
    np.testing.assert_array_equal(got, np.asarray(read_tiff_movie(tmp_path / "two.tif").data))
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tw:
        tw.write(a, photometric="minisblack")
        tw.write(_frames(1, 5, 7), photometric="minisblack")
    with pytest.raises(InputFileError, match=r"mixed\.tif.*a TIFF with frame sizes \[\(5, 7\), \(6, 7\)\]; live mode needs "
                                             r"one frame size"):
        fol._read(tmp_path / "mixed.tif")

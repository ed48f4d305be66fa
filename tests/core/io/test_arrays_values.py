"""Value tests of io/arrays.py (issue 20, mutation testing): TIFF and NumPy movies read back value for
value, NPZ key choice, header-only reads, typed errors with their messages.
"""

from __future__ import annotations

import logging

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_cxdi.errors import DataValidationError, InputFileError
from napari_cxdi.io.arrays import (
    MOVIE_KEYS, NUMPY_SUFFIXES, TIFF_SUFFIXES, _quiet_tifffile, numpy_header, read_numpy_movie, read_tiff_movie,
)


def _frames(t=3, h=8, w=9, dtype=np.uint16):
    return (np.arange(t * h * w) % 200 + 1).reshape(t, h, w).astype(dtype)


def test_constants_and_quiet_logger():
    assert TIFF_SUFFIXES == (".tif", ".tiff") and NUMPY_SUFFIXES == (".npy", ".npz")
    assert MOVIE_KEYS[0] == "arr_0" and "counts" in MOVIE_KEYS and "frames" in MOVIE_KEYS
    logger = logging.getLogger("tifffile")
    logger.setLevel(logging.INFO)
    with _quiet_tifffile():
        assert logger.level == logging.CRITICAL
    assert logger.level == logging.INFO
    with pytest.raises(RuntimeError), _quiet_tifffile():
        raise RuntimeError
    assert logger.level == logging.INFO
    logger.setLevel(logging.NOTSET)


# -- TIFF -------------------------------------------------------------------------------------------

def test_tiff_stack_pages_and_compressed(tmp_path):
    frames = _frames()
    tifffile.imwrite(tmp_path / "a.tif", frames)
    movie = read_tiff_movie(tmp_path / "a.tif")
    assert movie.format == "tiff" and movie.path == tmp_path / "a.tif" and movie.shape == (3, 8, 9)
    np.testing.assert_array_equal(np.asarray(movie.data), frames)
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tw:  # one page per frame, compressed: read page by page
        for f in frames:
            tw.write(f, compression="zlib", contiguous=False)
    movie = read_tiff_movie(str(tmp_path / "pages.tif"))
    assert isinstance(movie.data, da.Array) and movie.data.dtype == np.uint16
    np.testing.assert_array_equal(movie.data.compute(), frames)
    np.testing.assert_array_equal(movie.data[2].compute(), frames[2])
    tifffile.imwrite(tmp_path / "one.tif", frames[0])
    assert read_tiff_movie(tmp_path / "one.tif").shape == (1, 8, 9)


def test_tiff_series_and_hyperstacks(tmp_path):
    frames = _frames(4)
    with tifffile.TiffWriter(tmp_path / "s.tif") as tw:  # two series of 2 frames, in file order
        tw.write(frames[:2], metadata=None)
        tw.write(frames[2:], metadata=None)
    movie = read_tiff_movie(tmp_path / "s.tif")
    np.testing.assert_array_equal(np.asarray(movie.data), frames)
    with tifffile.TiffWriter(tmp_path / "mix.tif") as tw:
        tw.write(frames[:2].astype(np.uint8), metadata=None)
        tw.write(frames[2:].astype(np.uint16), metadata=None)
    mixed = read_tiff_movie(tmp_path / "mix.tif")
    assert mixed.data.dtype == np.uint16 and mixed.shape == (4, 8, 9)
    hyper = _frames(6).reshape(2, 3, 8, 9)
    tifffile.imwrite(tmp_path / "h.tif", hyper, imagej=True, metadata={"axes": "TZYX"})
    np.testing.assert_array_equal(np.asarray(read_tiff_movie(tmp_path / "h.tif").data), _frames(6))
    with tifffile.TiffWriter(tmp_path / "sizes.tif") as tw:
        tw.write(frames[:2], metadata=None)
        tw.write(frames[:2, :5, :6], metadata=None)
    with pytest.raises(DataValidationError, match=r"the TIFF series have different frame sizes \[\(5, 6\), \(8, 9\)\]; a movie needs one frame size"):
        read_tiff_movie(tmp_path / "sizes.tif")


def test_tiff_colour_and_bad_files(tmp_path):
    rgb = np.zeros((8, 9, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.raises(DataValidationError, match=r"rgb\.tif: the TIFF holds 3 colour samples \(an RGB/RGBA image\?\) per pixel "
                                                  r"\(axes YXS, shape \(8, 9, 3\)\); a diffraction movie has one count per pixel"):
        read_tiff_movie(tmp_path / "rgb.tif")
    planar = _frames(3).astype(np.uint16)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="minisblack", planarconfig="separate")
    got = read_tiff_movie(tmp_path / "planar.tif")  # 3 planar 'samples' of uint16: a 3-frame stack
    np.testing.assert_array_equal(np.asarray(got.data).reshape(3, 8, 9), planar)
    channels = np.zeros((2, 8, 9), np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", channels[None], imagej=True, metadata={"axes": "TCYX"})
    with pytest.raises(DataValidationError, match=r"holds 2 channels per pixel \(axes CYX, shape \(2, 8, 9\)\)"):
        read_tiff_movie(tmp_path / "c.tif")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + b"\xff" * 40)
    with pytest.raises(InputFileError, match=r"bad\.tif: the TIFF file holds no images$"):
        read_tiff_movie(tmp_path / "bad.tif")
    (tmp_path / "junk.tif").write_bytes(b"JUNK" * 10)
    with pytest.raises(InputFileError, match=r"junk\.tif: not a readable TIFF file \(truncated or corrupt\?\): TiffFileError: "):
        read_tiff_movie(tmp_path / "junk.tif")
    with pytest.raises(InputFileError, match="file not found"):
        read_tiff_movie(tmp_path / "none.tif")
    tifffile.imwrite(tmp_path / "cplx.tif", np.ones((2, 8, 9), np.complex64))
    with pytest.raises(DataValidationError, match="must be real"):
        read_tiff_movie(tmp_path / "cplx.tif")


# -- NumPy ------------------------------------------------------------------------------------------

def test_npy_movie(tmp_path):
    frames = _frames()
    np.save(tmp_path / "m.npy", frames)
    movie = read_numpy_movie(tmp_path / "m.npy")
    assert movie.format == "npy" and movie.dataset is None and movie.is_lazy and "other_arrays" not in movie.metadata
    np.testing.assert_array_equal(np.asarray(movie.data), frames)
    np.save(tmp_path / "one.npy", frames[0])
    assert read_numpy_movie(tmp_path / "one.npy").shape == (1, 8, 9)
    np.save(tmp_path / "four.npy", frames[:, None])
    assert read_numpy_movie(tmp_path / "four.npy").shape == (3, 8, 9)
    with pytest.raises(InputFileError, match=r"a \.npy file holds one array; --dataset / dataset='x' applies to NPZ and HDF5 files"):
        read_numpy_movie(tmp_path / "m.npy", "x")
    np.save(tmp_path / "c.npy", np.ones((2, 8, 8), np.complex64))
    with pytest.raises(DataValidationError, match=r"c\.npy: diffraction counts must be real"):
        read_numpy_movie(tmp_path / "c.npy")
    np.save(tmp_path / "v.npy", np.ones(9))
    with pytest.raises(DataValidationError, match=r"v\.npy: expected a diffraction movie"):
        read_numpy_movie(tmp_path / "v.npy")
    np.save(tmp_path / "o.npy", np.array([1, None], dtype=object))
    with pytest.raises(InputFileError, match=r"not a readable NumPy file \(truncated or corrupt\?\): ValueError"):
        read_numpy_movie(tmp_path / "o.npy")
    (tmp_path / "t.npy").write_bytes((tmp_path / "m.npy").read_bytes()[:60])
    with pytest.raises(InputFileError, match="not a readable NumPy file"):
        read_numpy_movie(tmp_path / "t.npy")


def test_npz_movie_keys(tmp_path):
    frames = _frames()
    np.savez(tmp_path / "a.npz", frames, probe=np.ones((8, 9), np.complex64))
    movie = read_numpy_movie(tmp_path / "a.npz")
    assert movie.dataset == "arr_0" and movie.format == "npz" and movie.metadata["other_arrays"] == "probe"
    np.testing.assert_array_equal(np.asarray(movie.data), frames)
    with open(tmp_path / "b.NPZ", "wb") as fh:
        np.savez(fh, probe=np.ones(3), frames=frames, counts=2 * frames, positions=np.zeros((3, 2)))
    movie = read_numpy_movie(tmp_path / "b.NPZ")
    assert movie.dataset == "counts" and movie.format == "npz" and movie.metadata["other_arrays"] == "probe, frames, positions"
    np.testing.assert_array_equal(np.asarray(movie.data), 2 * frames)
    movie = read_numpy_movie(tmp_path / "b.NPZ", "/frames")
    assert movie.dataset == "frames"
    np.savez(tmp_path / "c.npz", whatever=frames)
    assert read_numpy_movie(tmp_path / "c.npz").dataset == "whatever"
    np.savez(tmp_path / "d.npz", x=frames, y=frames[:1])
    with pytest.raises(InputFileError, match=r"cannot tell which array is the movie among x \(3, 8, 9\), y \(1, 8, 9\); "
                                             r"choose one \(CLI: --dataset KEY, API: dataset=KEY\)"):
        read_numpy_movie(tmp_path / "d.npz")
    with pytest.raises(InputFileError, match=r"no array 'z' in the NPZ file; its keys: x, y"):
        read_numpy_movie(tmp_path / "d.npz", "z")
    np.savez(tmp_path / "e.npz", data=np.ones(5))
    with pytest.raises(DataValidationError, match=r"e\.npz\[data\]: expected a diffraction movie"):
        read_numpy_movie(tmp_path / "e.npz")
    np.savez(tmp_path / "f.npz", data=np.ones((2, 8, 8), complex))
    with pytest.raises(DataValidationError, match=r"f\.npz\[data\]: diffraction counts must be real"):
        read_numpy_movie(tmp_path / "f.npz")
    (tmp_path / "g.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputFileError, match=r"not a readable NumPy file \(truncated or corrupt\?\): BadZipFile"):
        read_numpy_movie(tmp_path / "g.npz")


def test_numpy_header(tmp_path):
    frames = _frames()
    np.save(tmp_path / "m.npy", frames)
    assert numpy_header(tmp_path / "m.npy") == ((3, 8, 9), np.dtype(np.uint16), None)
    np.savez(tmp_path / "z.npz", probe=np.ones((2, 2)), data=frames.astype(np.float32))
    assert numpy_header(tmp_path / "z.npz") == ((3, 8, 9), np.dtype(np.float32), "data")
    assert numpy_header(tmp_path / "z.npz", "probe") == ((2, 2), np.dtype(np.float64), "probe")
    np.savez(tmp_path / "two.npz", a=frames, b=frames)
    with pytest.raises(InputFileError, match=r"among a \(3, 8, 9\), b \(3, 8, 9\)"):
        numpy_header(tmp_path / "two.npz")
    big = np.lib.format.open_memmap(tmp_path / "v2.npy", mode="w+", dtype=np.float32, shape=(2, 3, 4), version=(2, 0))
    del big
    assert numpy_header(tmp_path / "v2.npy") == ((2, 3, 4), np.dtype(np.float32), None)
    raw = bytearray((tmp_path / "m.npy").read_bytes())
    raw[6] = 3  # format version 3.0
    (tmp_path / "v3.npy").write_bytes(bytes(raw))
    with pytest.raises(InputFileError, match=r"not a readable NumPy file \(truncated or corrupt\?\): ValueError: unsupported \.npy format version \(3, 0\)"):
        numpy_header(tmp_path / "v3.npy")
    (tmp_path / "x.npy").write_bytes(b"not numpy")
    with pytest.raises(InputFileError, match="not a readable NumPy file"):
        numpy_header(tmp_path / "x.npy")
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(InputFileError, match="BadZipFile"):
        numpy_header(tmp_path / "x.npz")
    with pytest.raises(InputFileError, match="file not found"):
        numpy_header(tmp_path / "none.npy")


def test_tiff_damaged_compressed_page_is_a_typed_error_when_read(tmp_path):
    frames = _frames()
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:  # one compressed page (and series) per frame: read page by page
        for f in frames:
            tw.write(f, compression="zlib", contiguous=False)
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[1].dataoffsets[0], tif.pages[1].databytecounts[0]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + count] = b"\x00" * count
    path.write_bytes(bytes(raw))
    movie = read_tiff_movie(path)  # the header is fine: the damage shows when frame 1 is read
    np.testing.assert_array_equal(movie.data[0].compute(), frames[0])
    np.testing.assert_array_equal(movie.data[2].compute(), frames[2])
    with pytest.raises(InputFileError, match=r"pages\.tif: cannot read TIFF frame 0 \(page 1\): error: Error -3 while decompressing") as info:
        movie.data[1].compute()
    assert info.value.path == str(path)


def _series(axes, shape, dtype=np.uint16):
    from types import SimpleNamespace

    return SimpleNamespace(axes=axes, shape=shape, dtype=np.dtype(dtype))


def test_tiff_series_layouts_by_hand(tmp_path):
    from napari_cxdi.io.arrays import _tiff_series_frames

    p = tmp_path / "x.tif"
    assert _tiff_series_frames(_series("TZYX", (2, 3, 8, 9)), p) == (6, (8, 9))
    assert _tiff_series_frames(_series("YX", (8, 9)), p) == (1, (8, 9))
    assert _tiff_series_frames(_series("SYX", (3, 8, 9)), p) == (3, (8, 9))  # planar non-uint8 samples: frames
    assert _tiff_series_frames(_series("CYX", (1, 8, 9)), p) == (1, (8, 9))  # one channel is fine
    with pytest.raises(DataValidationError) as err:  # the renamed planar axis shows in the message
        _tiff_series_frames(_series("CSYX", (2, 3, 8, 9)), p)
    assert str(err.value) == (f"{p}: the TIFF holds 2 channels per pixel (axes CQYX, shape (2, 3, 8, 9)); a diffraction "
                              "movie has one count per pixel - export the detector frames as grey-level images")
    with pytest.raises(DataValidationError, match=r"holds 3 colour samples .* \(axes SYX, shape \(3, 8, 9\)\)"):
        _tiff_series_frames(_series("SYX", (3, 8, 9), np.uint8), p)  # planar uint8 samples: an RGB image
    with pytest.raises(DataValidationError, match=r"holds 2 colour samples .* \(axes YXS, shape \(8, 9, 2\)\)"):
        _tiff_series_frames(_series("YXS", (8, 9, 2)), p)  # interleaved samples are colour, whatever the type
    with pytest.raises(DataValidationError) as err:
        _tiff_series_frames(_series("YXS", (8, 9, 1), np.uint8), p)
    assert str(err.value) == f"{p}: TIFF layout YXS (8, 9, 1) is not a stack of detector frames [.., Y, X]"
    with pytest.raises(DataValidationError, match=r"TIFF layout X \(9,\) is not a stack"):
        _tiff_series_frames(_series("X", (9,)), p)


def test_tiff_reads_are_zero_copy_read_only_and_chunked_by_frame(tmp_path):
    frames = _frames(4)
    tifffile.imwrite(tmp_path / "a.tif", frames)  # uncompressed and contiguous: a read-only memory map
    movie = read_tiff_movie(tmp_path / "a.tif")
    assert isinstance(movie.data, np.memmap) and not movie.data.flags.writeable
    np.testing.assert_array_equal(movie.data, frames)
    with tifffile.TiffWriter(tmp_path / "s.tif") as tw:  # two uncompressed series: one dask array, chunked by frame
        tw.write(frames[:2], metadata=None)
        tw.write(frames[2:], metadata=None)
    movie = read_tiff_movie(tmp_path / "s.tif")
    assert isinstance(movie.data, da.Array) and movie.data.chunks[0] == (1, 1, 1, 1)
    np.testing.assert_array_equal(movie.data.compute(), frames)
    # planar uint16 'samples' compressed: fewer pages than frames, the series is read whole
    tifffile.imwrite(tmp_path / "p.tif", frames[:3], photometric="minisblack", planarconfig="separate", compression="zlib")
    with tifffile.TiffFile(tmp_path / "p.tif") as tif:
        assert len(tif.series[0].pages) == 1 and tif.series[0].axes == "SYX"
    got = read_tiff_movie(tmp_path / "p.tif")
    assert isinstance(got.data, np.ndarray) and not isinstance(got.data, np.memmap)
    np.testing.assert_array_equal(got.data, frames[:3])
    with tifffile.TiffFile(tmp_path / "p.tif") as tif:
        offset, count = tif.pages[0].dataoffsets[1], tif.pages[0].databytecounts[1]
    raw = bytearray((tmp_path / "p.tif").read_bytes())
    raw[offset : offset + count] = b"\x00" * count
    (tmp_path / "p.tif").write_bytes(bytes(raw))
    with pytest.raises(InputFileError, match=r"p\.tif: cannot read TIFF series 0: error: Error -3 while decompressing") as info:
        read_tiff_movie(tmp_path / "p.tif")
    assert info.value.path == str(tmp_path / "p.tif")


def test_tiff_and_numpy_errors_name_the_file(tmp_path):
    tifffile.imwrite(tmp_path / "row.tif", np.ones((1, 9), np.uint16))
    with pytest.raises(DataValidationError, match=r"^" + str(tmp_path / "row.tif") + r": declared shape \(1, 1, 9\) is not a plausible"):
        read_tiff_movie(tmp_path / "row.tif")
    tifffile.imwrite(tmp_path / "cplx.tif", np.ones((2, 8, 9), np.complex64))
    with pytest.raises(DataValidationError, match=r"^" + str(tmp_path / "cplx.tif") + ": diffraction counts must be real"):
        read_tiff_movie(tmp_path / "cplx.tif")
    frames = _frames()
    np.save(tmp_path / "m.npy", frames)
    movie = read_numpy_movie(tmp_path / "m.npy")
    assert movie.path == tmp_path / "m.npy" and "other_arrays" not in movie.metadata
    with pytest.raises(InputFileError) as info:
        read_numpy_movie(tmp_path / "m.npy", "x")
    assert info.value.path == str(tmp_path / "m.npy")
    # object arrays are refused before anything is unpickled
    np.save(tmp_path / "o.npy", np.array([1, None], dtype=object))
    with pytest.raises(InputFileError, match=r"ValueError: Array can't be memory-mapped: Python objects in dtype") as info:
        read_numpy_movie(tmp_path / "o.npy")
    assert info.value.path == str(tmp_path / "o.npy")
    np.savez(tmp_path / "o.npz", data=np.array([1, None], dtype=object))
    with pytest.raises(InputFileError, match=r"ValueError: Object arrays cannot be loaded when allow_pickle=False") as info:
        read_numpy_movie(tmp_path / "o.npz")
    assert info.value.path == str(tmp_path / "o.npz")
    # NPZ: keys with an X, more than 8 arrays, the file named in every error
    np.savez(tmp_path / "x.npz", Xray=frames, other=frames[:1])
    assert read_numpy_movie(tmp_path / "x.npz", "/Xray").dataset == "Xray"
    np.savez(tmp_path / "many.npz", **{f"a{k}": np.zeros((1, 2, 2)) for k in range(10)})
    with pytest.raises(InputFileError) as info:
        read_numpy_movie(tmp_path / "many.npz")
    assert info.value.path == str(tmp_path / "many.npz")
    assert info.value.problem.startswith("cannot tell which array is the movie among a0 (1, 2, 2), " +
                                         ", ".join(f"a{k} (1, 2, 2)" for k in range(1, 8)) + "; choose one")
    with pytest.raises(InputFileError) as info:
        read_numpy_movie(tmp_path / "many.npz", "zz")
    assert info.value.path == str(tmp_path / "many.npz")
    with pytest.raises(InputFileError) as info:
        numpy_header(tmp_path / "many.npz")
    assert info.value.path == str(tmp_path / "many.npz")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(InputFileError) as info:
        numpy_header(tmp_path / "bad.npy")
    assert info.value.path == str(tmp_path / "bad.npy")
    with pytest.raises(InputFileError) as info:
        read_numpy_movie(tmp_path / "bad.npy")
    assert info.value.path == str(tmp_path / "bad.npy")


def test_tiff_series_read_whole_are_chunked_by_frame(tmp_path):
    frames = _frames(6)
    for name, kw in (("pp.tif", dict(planarconfig="separate", compression="zlib")),  # each series read whole
                     ("mm.tif", {})):  # each series memory-mapped
        with tifffile.TiffWriter(tmp_path / name) as tw:
            tw.write(frames[:3], photometric="minisblack", metadata={}, **kw)
            tw.write(frames[3:], photometric="minisblack", metadata={}, **kw)
        movie = read_tiff_movie(tmp_path / name)
        assert isinstance(movie.data, da.Array) and movie.data.chunks == ((1,) * 6, (8,), (9,))
        np.testing.assert_array_equal(movie.data.compute(), frames)

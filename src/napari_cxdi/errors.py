"""Typed exceptions of napari-cxdi.

Every error a user can cause derives from :class:`CXDIError`, so the GUI can show its
message as a notification and the CLI can print it without a traceback.
"""

from __future__ import annotations


class CXDIError(Exception):
    """Base class of all user-facing napari-cxdi errors."""


class InputFileError(CXDIError):
    """A file cannot be read, is empty, corrupt or of the wrong structure.

    The message always names the file and the problem.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DataValidationError(CXDIError):
    """Array data is of the wrong shape, dtype or contains invalid values (NaN, negative counts)."""


class ProbeMismatchError(DataValidationError):
    """The probe's frame size does not match the diffraction frames."""


class ConfigError(CXDIError):
    """An invalid parameter or combination of parameters."""


class OutputExistsError(CXDIError):
    """Writing would overwrite an existing file (or the input) and overwriting was not asked for."""


class CancelledError(CXDIError):
    """A long computation was stopped by the user."""


class OutputWriteError(CXDIError):
    """An output could not be written (disk full, quota, I/O error, read-only or unwritable folder).

    The message names the path and what to do; the previous file under that name, if any, is unchanged
    and no temporary file is left behind.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class TrainingDivergedError(CXDIError):
    """Training produced NaN or infinite values (loss or weights); it was stopped.

    The model keeps its best weights so far and a checkpoint file, if one was being written, keeps
    the last good state.
    """


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue a warning attributed to the first caller outside napari-cxdi (the user's script, the console or
    the napari plugin layer), however many of our functions and decorators lie in between: the warning then
    names the line a user wrote, not one of ours."""
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 2  # the caller of warn_user is stack level 2 of warnings.warn from here
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)

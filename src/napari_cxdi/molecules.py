"""Alias of :mod:`napari_cxdi.scann.view` (the Qt-free molecule view model moved into the SCANN
package); ``from napari_cxdi import molecules`` keeps working and is the very same module object."""

import sys

from .scann import view as _view

sys.modules[__name__] = _view

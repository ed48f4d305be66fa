"""Console one-liners: the same work as the widgets' buttons, on the ``viewer`` of the napari console.

```python
from napari_cxdi._napari.scripting import reconstruct_layer, probe_of
result = reconstruct_layer(viewer, "AuNP diffraction", method="PID3Net-PO", epochs=10)
```
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .layers import LayerData, amplitude_layer, phase_layer


def probe_of(layer) -> np.ndarray | None:
    """The complex probe [K, H, W] carried in a diffraction layer's metadata, if any."""
    probe = layer.metadata.get("probe")
    return None if probe is None else np.asarray(probe)


def pixel_size_of(layer) -> float | None:
    """Object-plane pixel size (nm) of a movie layer: metadata, else its spatial scale if not 1."""
    dx = layer.metadata.get("pixel_size_nm")
    if dx:
        return float(dx)
    scale = float(layer.scale[-1])
    return scale if scale != 1.0 else None


def result_layers(result, name: str, pixel_size_nm: float | None) -> list[LayerData]:
    """Amplitude and phase movie layers of a :class:`~napari_cxdi.api.Reconstruction`, and, when pixels
    were unmeasured (gaps, masked), the counts with the recovered intensity filled in (in frame pixels)."""
    meta = {"method": result.method, "metrics": {k: v for k, v in result.metrics.items() if not isinstance(v, dict)}}
    pixel_size_nm = result.pixel_size_nm or pixel_size_nm
    layers = [
        amplitude_layer(result.amplitude, f"{name} amplitude ({result.method})", pixel_size_nm, meta),
        phase_layer(result.phase, f"{name} phase ({result.method})", pixel_size_nm, meta),
    ]
    if getattr(result, "filled_intensity", None) is not None:
        from .layers import diffraction_layer

        layers.append(diffraction_layer(result.filled_intensity, f"{name} intensity, gaps filled ({result.method})", None,
                                        {**meta, "kind": "filled_intensity"}))
    return layers


def add_layer_data(viewer, layers: list[LayerData]) -> list:
    """Add layer-data tuples to a viewer (replacing layers of the same name); returns the layers."""
    added = []
    for data, kwargs, kind in layers:
        name = kwargs.get("name")
        if name in viewer.layers:
            viewer.layers.remove(name)
        added.append(getattr(viewer, f"add_{kind}")(data, **kwargs))
    return added


def reconstruct_layer(viewer, layer_name: str, method: str = "PID3Net-PO", probe=None, **kwargs: Any):
    """Reconstruct the movie in layer ``layer_name`` and add its amplitude and phase layers (blocking).

    probe: array or file; default the probe in the layer's metadata. ``kwargs`` go to
    :func:`napari_cxdi.api.reconstruct` (e.g. ``epochs=10, device="cuda"``). Returns the Reconstruction.
    """
    from ..api import reconstruct
    from .detector_layers import detector_inputs

    layer = viewer.layers[layer_name]
    probe = probe if probe is not None else probe_of(layer)
    if probe is None:
        raise ConfigError(f"layer {layer_name!r} carries no probe; pass probe=array or a probe file")
    linked = detector_inputs(layer, viewer.layers)  # painted mask, dragged centre, crop box
    movie = linked.pop("movie", layer.data)
    kwargs = {**linked, **kwargs}
    dx = None if linked else pixel_size_of(layer)
    result = reconstruct(movie, probe=probe, method=method, pixel_size_nm=dx, **kwargs)
    dx = result.pixel_size_nm
    add_layer_data(viewer, result_layers(result, layer_name.replace(" diffraction", ""), dx))
    return result

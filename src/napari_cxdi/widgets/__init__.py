"""Qt dock widgets (the only modules besides _napari/ that import qtpy/napari)."""

"""Particle tracking on reconstructed movies (SPEC §5): detection, linking, statistics, evaluation, export.

```python
from napari_cxdi.tracking import TrackingConfig, DetectionConfig, track
result = track(phase_movie, TrackingConfig(DetectionConfig(threshold=0.15)), pixel_size_nm=27.0, frame_interval_s=0.1)
result.tracks, result.per_track, result.summary()
```
No Qt or napari here.
"""

from .detect import DetectionConfig, as_movie, detect, detect_frame, iter_detect, label_particles, particle_mask
from .evaluate import evaluate_tracking, match_frames
from .export import read_provenance, read_tables, write_tables
from .link import filter_tracks, link_tracks, point_speeds, track_table
from .pipeline import TrackingConfig, TrackingResult, iter_track, track
from .statistics import count_per_frame, diameter_distribution, image_velocity, lifetime_distribution, msd_analysis

__all__ = [
    "DetectionConfig", "TrackingConfig", "TrackingResult", "as_movie", "count_per_frame", "detect", "detect_frame",
    "diameter_distribution", "evaluate_tracking", "filter_tracks", "image_velocity", "iter_detect", "iter_track",
    "label_particles", "lifetime_distribution", "link_tracks", "match_frames", "msd_analysis", "particle_mask",
    "point_speeds", "read_provenance", "read_tables", "track", "track_table", "write_tables",
]

"""Live mode: reconstruct and track while the detector is still writing (no Qt).

```python
import napari_cxdi as cx
for event in cx.iter_live("run_master.h5", model="pid3net.pt", output="run_live.cxi", idle_timeout_s=30):
    if event["event"] == "frames":
        event["start"], event["objects"], event["tracks"], event["latency_s"]
```

:func:`iter_live` follows a growing acquisition (:mod:`napari_cxdi.io.live`), masks / centres / crops each
block of new frames the way ``reconstruct`` does (the crop window is planned once, on the first block),
reconstructs them - with a trained PID3Net over a *causal* window of the last T frames (frame i comes
from the window ``i-T+1 .. i``; the first T frames from the first window), or per frame with a baseline
(mixed-state / mf-PIE) - detects particles in the new phase frames and links them to the existing
tracks (:class:`StreamLinker`), and appends everything to a CXI output as it goes.

The output is an **SWMR HDF5 file written in place** (``/entry_1/napari_cxdi/live/complete`` = 0 while
running, 1 when the source went idle or the run was stopped cleanly; ``frames_complete`` counts the frames
whose object, counts and detections are all flushed). Why not a temporary published at the end: a
beamline user wants to open the growing result in another process while it runs (SWMR reader), and a
killed follower must be able to *resume where its output ends* - both need the file under its final name.
The file is created atomically (structure written to a temporary, then renamed) after
:func:`~napari_cxdi.io.safe_write.check_output`, never onto an input; a kill leaves a valid file flagged
incomplete whose first ``frames_complete`` frames are good, and a restarted run truncates anything after
them and continues.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generator

import h5py
import numpy as np
import pandas as pd

from .configs import ConfigMethods
from .errors import ConfigError, InputFileError, OutputExistsError
from .io.live import DEFAULT_SETTLE_S, FrameBlock, follow, open_follower
from .io.safe_write import check_output, temporary_name
from .provenance import provenance, to_jsonable

LIVE_GROUP = "entry_1/napari_cxdi/live"
TRACK_GROUP = "entry_1/napari_cxdi/live_tracks"
TRACK_COLUMNS = ("frame", "y", "x", "particle", "diameter_nm", "contrast")


# --------------------------------------------------------------------------- incremental linking
@dataclass
class StreamLinker:
    """Frame-by-frame linking of detections to existing tracks (optimal assignment within a search radius).

    Each new frame's detections are matched to the tracks seen in the last ``memory + 1`` frames by a
    minimum-total-distance assignment (scipy ``linear_sum_assignment``) limited to ``search_range_px``;
    unmatched detections start new tracks. The state is just the last position of each recent track, so
    it is rebuilt exactly from a stored track table (:meth:`from_tracks`) when a run resumes.
    """

    search_range_px: float
    memory: int = 1
    next_id: int = 0
    last: dict[int, tuple[int, float, float]] = field(default_factory=dict)  # particle -> (frame, y, x)

    def link(self, frame: int, yx: np.ndarray) -> np.ndarray:
        """Particle ids for the detections ``yx`` [n, 2] (pixels) of ``frame`` (frames in increasing order)."""
        from scipy.optimize import linear_sum_assignment

        self.last = {p: v for p, v in self.last.items() if frame - v[0] <= self.memory + 1}
        ids = np.full(len(yx), -1, np.int64)
        if len(yx) and self.last:
            keys = list(self.last)
            prev = np.array([self.last[k][1:] for k in keys], float)
            d = np.hypot(yx[:, None, 0] - prev[None, :, 0], yx[:, None, 1] - prev[None, :, 1])
            big = 1e9
            cost = np.where(d <= self.search_range_px, d, big)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] < big:
                    ids[r] = keys[c]
        for i in range(len(yx)):
            if ids[i] < 0:
                ids[i] = self.next_id
                self.next_id += 1
            self.last[int(ids[i])] = (frame, float(yx[i, 0]), float(yx[i, 1]))
        return ids

    @classmethod
    def from_tracks(cls, tracks: pd.DataFrame, search_range_px: float, memory: int = 1) -> "StreamLinker":
        linker = cls(search_range_px, memory)
        if len(tracks):
            linker.next_id = int(tracks["particle"].max()) + 1
            for row in tracks.sort_values("frame").itertuples():
                linker.last[int(row.particle)] = (int(row.frame), float(row.y), float(row.x))
        return linker


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class LiveConfig(ConfigMethods):
    """How a live run follows, reconstructs and tracks (see :func:`iter_live`)."""

    method: str = "mixed-state"          # with a model: the model's variant (recorded); else mixed-state | mf-PIE
    block_frames: int = 8                # frames read and reconstructed together (bounds memory and latency)
    idle_timeout_s: float | None = 30.0  # finish after this long without a new frame (None: until stopped)
    poll_s: float = 0.05
    settle_s: float = DEFAULT_SETTLE_S   # a file (or last SWMR frame without a per-frame chunk) must be stable this long
    max_iter: int = 50                   # baselines: iterations per block
    device: str = "cpu"
    track: bool = True
    max_displacement_nm: float = 150.0
    memory: int = 1
    dataset: str | None = None           # the SWMR dataset, if the file holds several
    counter: str | None = None           # an SWMR frame-counter dataset the writer keeps, if any
    finetune_every: int = 0              # PID3Net: fine-tune in the background every this many new frames (0: off)
    finetune_frames: int = 32            # ... on the most recent this many frames
    finetune_epochs: int = 4             # ... for this many epochs (held-out rule included)

    def validate(self) -> None:
        if self.block_frames < 1:
            raise ConfigError(f"block_frames must be >= 1, got {self.block_frames}")
        if self.idle_timeout_s is not None and self.idle_timeout_s <= 0:
            raise ConfigError(f"idle timeout must be positive seconds, got {self.idle_timeout_s}")
        if self.max_iter < 1 or self.poll_s <= 0 or self.settle_s < 0:
            raise ConfigError("max_iter must be >= 1, poll_s > 0, settle_s >= 0")
        if self.max_displacement_nm <= 0 or self.memory < 0:
            raise ConfigError("max displacement must be > 0 and memory >= 0")
        if self.finetune_every < 0 or self.finetune_frames < 2 or self.finetune_epochs < 1:
            raise ConfigError(f"fine-tuning: finetune_every must be >= 0 (0 = off), finetune_frames >= 2 and "
                              f"finetune_epochs >= 1, got {self.finetune_every}, {self.finetune_frames}, {self.finetune_epochs}")



# --------------------------------------------------------------------------- output
class LiveOutput:
    """An SWMR CXI file growing frame by frame (see the module docstring for the layout and the flag)."""

    def __init__(self, path: Path, f: h5py.File, n_done: int):
        self.path = path
        self.f = f
        self.n_done = n_done

    @staticmethod
    def existing_frames(path: str | Path, source: str | Path | None = None) -> int | None:
        """Frames a live output already holds (None: not a live output of ``source``)."""
        path = Path(path)
        if not path.exists():
            return None
        try:
            with h5py.File(path, "r", libver="latest", swmr=True) as f:
                g = f.get(LIVE_GROUP)
                if not isinstance(g, h5py.Group):
                    return None
                if source is not None and g.attrs.get("source") != str(Path(source).resolve()):
                    raise OutputExistsError(f"{path}: a live output of another source ({g.attrs.get('source')}); "
                                            "choose another output name")
                return int(g["frames_complete"][0])
        except OSError:
            return None

    @classmethod
    def open(cls, path: str | Path, *, source: str | Path, m: int, probe: np.ndarray | None, config: dict,
             metadata: dict, overwrite: bool = False, protected=()) -> "LiveOutput":
        path = Path(path)
        resume = cls.existing_frames(path, source)
        if resume is None:
            check_output(path, overwrite=overwrite, protected=protected)
            tmp = temporary_name(path)
            try:
                with h5py.File(tmp, "w", libver="latest") as f:
                    cls._create(f, source, m, probe, config, metadata)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            resume = 0
        else:
            check_output(path, overwrite=True, protected=protected)
        try:
            f = h5py.File(path, "a", libver="latest")
        except OSError as exc:
            if "already open for write" not in str(exc):
                raise
            # an SWMR writer killed (kill -9, power cut) leaves the file's "open for write" flags set: copy its
            # confirmed frames into a fresh file and publish that atomically (what h5clear + truncate would do)
            cls._rebuild(path, resume, source, m, probe, config, metadata)
            f = h5py.File(path, "a", libver="latest")
        g = f[LIVE_GROUP]
        if f["entry_1/image_1/data"].shape[1:] != (m, m):
            f.close()
            raise OutputExistsError(f"{path}: holds {f['entry_1/image_1/data'].shape[1:]} frames, this run makes {m}x{m}; "
                                    "choose another output name")
        for name in ("entry_1/image_1/data", "entry_1/instrument_1/detector_1/data", f"{LIVE_GROUP}/source_frame",
                     f"{LIVE_GROUP}/seen_s", f"{LIVE_GROUP}/done_s"):
            f[name].resize(resume, axis=0)  # a kill between append and flag: drop the unconfirmed frames
        frames = f[f"{TRACK_GROUP}/frame"][()]
        keep = int((frames < resume).sum())
        for c in TRACK_COLUMNS:
            f[f"{TRACK_GROUP}/{c}"].resize(keep, axis=0)
        g["complete"][0] = 0
        g.attrs["runs"] = int(g.attrs.get("runs", 0)) + 1
        f.swmr_mode = True
        return cls(path, f, resume)

    @classmethod
    def _rebuild(cls, path: Path, n: int, source, m: int, probe, config: dict, metadata: dict) -> None:
        old = read_live_output(path)
        if old["objects"].shape[1:] != (m, m):
            raise OutputExistsError(f"{path}: holds {old['objects'].shape[1:]} frames, this run makes {m}x{m}; "
                                    "choose another output name")
        tmp = temporary_name(path)
        try:
            with h5py.File(tmp, "w", libver="latest") as f:
                cls._create(f, source, m, probe, config, metadata)
                f[LIVE_GROUP].attrs["runs"] = old["runs"]
                for name, values in (("entry_1/image_1/data", old["objects"][:n]),
                                     ("entry_1/instrument_1/detector_1/data", old["counts"][:n]),
                                     (f"{LIVE_GROUP}/source_frame", old["source_frame"][:n]),
                                     (f"{LIVE_GROUP}/seen_s", old["seen_s"][:n]), (f"{LIVE_GROUP}/done_s", old["done_s"][:n])):
                    f[name].resize(len(values), axis=0)
                    f[name][:] = values
                tracks = old["tracks"]
                for c in TRACK_COLUMNS:
                    f[f"{TRACK_GROUP}/{c}"].resize(len(tracks), axis=0)
                    f[f"{TRACK_GROUP}/{c}"][:] = tracks[c].to_numpy()
                f[f"{LIVE_GROUP}/frames_complete"][0] = n
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _create(f: h5py.File, source, m: int, probe, config: dict, metadata: dict) -> None:
        f.create_dataset("cxi_version", data=160)
        entry = f.create_group("entry_1")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "image_1"
        det = entry.create_group("instrument_1/detector_1")
        d = det.create_dataset("data", shape=(0, m, m), maxshape=(None, m, m), dtype=np.float32, chunks=(1, m, m),
                               fillvalue=np.nan)
        d.attrs["axes"] = "translation:y:x"
        if probe is not None:
            entry.create_dataset("instrument_1/source_1/probe", data=np.asarray(probe, np.complex64))
        image = entry.create_group("image_1")
        image.attrs["NX_class"] = "NXdata"
        image.attrs["signal"] = "data"
        image.create_dataset("data", shape=(0, m, m), maxshape=(None, m, m), dtype=np.complex64, chunks=(1, m, m))
        if metadata.get("pixel_size_nm"):
            for name in ("x_pixel_size", "y_pixel_size"):
                image.create_dataset(name, data=float(metadata["pixel_size_nm"]) * 1e-9).attrs["units"] = "m"
        image.create_group("process_1").create_dataset("configuration", data=json.dumps(to_jsonable(config)))
        entry.create_dataset("provenance", data=json.dumps(provenance(config, None, metadata=metadata), sort_keys=True))
        ours = entry.create_group("napari_cxdi")
        ours.create_dataset("metadata_json", data=json.dumps(to_jsonable(metadata), sort_keys=True))
        g = ours.create_group("live")
        g.attrs["source"] = str(Path(source).resolve())
        g.attrs["runs"] = 0
        g.create_dataset("complete", data=np.zeros(1, np.int8), maxshape=(1,))
        g.create_dataset("frames_complete", data=np.zeros(1, np.int64), maxshape=(1,))
        for name, dtype in (("source_frame", np.int64), ("seen_s", np.float64), ("done_s", np.float64)):
            g.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(256,))
        t = ours.create_group("live_tracks")
        t.attrs["columns"] = json.dumps(list(TRACK_COLUMNS))
        for c in TRACK_COLUMNS:
            dtype = np.int64 if c in ("frame", "particle") else np.float64
            t.create_dataset(c, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1024,))

    def tracks(self) -> pd.DataFrame:
        return pd.DataFrame({c: self.f[f"{TRACK_GROUP}/{c}"][()] for c in TRACK_COLUMNS})

    def append(self, counts: np.ndarray, objects: np.ndarray, source_frames: np.ndarray, seen_s: np.ndarray,
               tracks: pd.DataFrame) -> None:
        """Append k frames and their detections, flush the data, then advance ``frames_complete``."""
        k = len(objects)
        n0 = self.n_done
        for name, values in (("entry_1/image_1/data", objects), ("entry_1/instrument_1/detector_1/data", counts),
                             (f"{LIVE_GROUP}/source_frame", source_frames), (f"{LIVE_GROUP}/seen_s", seen_s),
                             (f"{LIVE_GROUP}/done_s", np.full(k, time.time()))):
            d = self.f[name]
            d.resize(n0 + k, axis=0)
            d[n0:] = values
        if len(tracks):
            for c in TRACK_COLUMNS:
                d = self.f[f"{TRACK_GROUP}/{c}"]
                r0 = d.shape[0]
                d.resize(r0 + len(tracks), axis=0)
                d[r0:] = tracks[c].to_numpy()
        self.f.flush()
        self.n_done = n0 + k
        self.f[f"{LIVE_GROUP}/frames_complete"][0] = self.n_done
        self.f.flush()

    def close(self, complete: bool) -> None:
        if self.f is None:
            return
        try:
            if complete:
                self.f[f"{LIVE_GROUP}/complete"][0] = 1
            self.f.flush()
        finally:
            self.f.close()
            self.f = None


def read_live_output(path: str | Path) -> dict[str, Any]:
    """What a live output holds now (SWMR-safe): objects, counts, tracks, frames_complete, complete flag."""
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        g = f[LIVE_GROUP]
        n = int(g["frames_complete"][0])
        return {
            "frames_complete": n, "complete": bool(g["complete"][0]),
            "objects": f["entry_1/image_1/data"][:n], "counts": f["entry_1/instrument_1/detector_1/data"][:n],
            "source_frame": g["source_frame"][:n], "seen_s": g["seen_s"][:n], "done_s": g["done_s"][:n],
            "tracks": pd.DataFrame({c: f[f"{TRACK_GROUP}/{c}"][()] for c in TRACK_COLUMNS}).query("frame < @n"),
            "runs": int(g.attrs.get("runs", 0)),
            "pixel_size_nm": (float(f["entry_1/image_1/x_pixel_size"][()]) * 1e9
                              if "entry_1/image_1/x_pixel_size" in f else None),
        }


# --------------------------------------------------------------------------- preparation
class _Preparer:
    """Masks, centres, crops and bins blocks of raw frames with a window planned on the first block."""

    def __init__(self, first: np.ndarray, info: dict, detector, probe, frame_size: int | None):
        from .io.detector import BeamCentre, plan_crop
        from .io.mask import DetectorMask, read_mask_file
        from .io.movie import Movie

        det = detector
        found = info.get("detector", {})
        mask = DetectorMask.for_dtype(first.dtype, saturation=found.get("saturation"))
        if det.use_file_mask and "bad" in found:
            mask = mask.with_bad(found["bad"], found.get("source", "file"))
        if det.mask is not None:
            extra = read_mask_file(det.mask) if isinstance(det.mask, (str, Path)) else np.asarray(det.mask, bool)
            mask = mask.with_bad(extra, str(det.mask) if isinstance(det.mask, (str, Path)) else "given")
        mask.check_shape(first.shape[1:], "the live source")
        self.metadata = {**info.get("metadata", {})}
        self.metadata.update({k: getattr(det, k) for k in ("energy_kev", "distance_m", "detector_pixel_um") if getattr(det, k)})
        centre = found.get("centre")
        self.base = Movie(data=first, metadata=dict(self.metadata), mask=mask,
                          beam_centre=centre if isinstance(centre, BeamCentre) else None)
        size = det.crop_size or frame_size or (int(np.shape(probe)[-1]) if probe is not None else None)
        self.centre, self.window = plan_crop(self.base, size, det.bin, det.center)
        self.identity = self.window.is_identity(tuple(first.shape[1:])) and mask.bad is None
        self.size = self.window.size

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        from dataclasses import replace

        from .io.detector import prepare_movie

        if tuple(frames.shape[1:]) != tuple(self.base.data.shape[1:]):
            raise InputFileError("live source", f"a frame of {frames.shape[1:]} after frames of {self.base.data.shape[1:]}: "
                                                "the detector settings changed; start a new output")
        if self.identity:
            return self.base.mask.apply(frames)
        prepared = prepare_movie(replace(self.base, data=frames), window=self.window,
                                 centre=None if self.centre.source == "frame centre" else self.centre.as_tuple())
        self.metadata = {k: v for k, v in prepared.metadata.items() if not isinstance(v, np.ndarray)}
        return np.asarray(prepared.data.compute(), np.float32)


# --------------------------------------------------------------------------- reconstruction
class _Reconstructor:
    """PID3Net over causal windows of the last T frames, or a baseline per block."""

    def __init__(self, model, probe, cfg: LiveConfig):
        self.model = model
        self.cfg = cfg
        self.probe = probe
        self.context = None  # [<= T-1, m, m] prepared frames before the next one (PID3Net)
        self.T = model.config.frames if model is not None else 1
        self.started = False

    def warm(self, frames: np.ndarray) -> None:
        """Frames already reconstructed (a resumed run): context for the next windows only."""
        if self.model is not None and len(frames):
            self.context = frames[len(frames) - (self.T - 1):] if self.T > 1 else frames[:0]
            self.started = True

    def __call__(self, frames: np.ndarray, n_before: int) -> Generator[dict, None, tuple[int, np.ndarray]]:
        """Reconstruct what the new ``frames`` make possible; returns (first frame index, objects [k', m, m]).

        PID3Net: until T frames have arrived they are only buffered; the first window then gives frames
        0 .. T-1 and every later frame i comes from the window i-T+1 .. i (the last T-1 frames are kept).
        """
        import torch

        if self.model is None:
            from .recon import IterativeConfig, iter_iterative

            # fixed iterations per block, no held-out split: a frame's result must not depend on where the
            # blocks of a stream happen to start (the held-out rule stops and thins per batch)
            icfg = IterativeConfig(max_iter=self.cfg.max_iter, device=self.cfg.device, batch_size=max(len(frames), 1),
                                   holdout_fraction=0.0, noise_floor_margin=None)
            objects = yield from iter_iterative(frames, self.probe, self.cfg.method, icfg, release_memory=False)
            return n_before, np.asarray(objects)
        T = self.T
        ctx = self.context if self.context is not None else frames[:0]
        allf = np.concatenate([ctx, frames]) if len(ctx) else frames
        if not self.started and len(allf) < T:  # not enough frames yet for one window: keep them
            self.context = allf
            return n_before, np.zeros((0, *frames.shape[1:]), np.complex64)
        device = self.model.probe.device
        out = []
        with torch.no_grad():
            x = torch.from_numpy(np.asarray(allf, np.float32)).to(device)
            if not self.started:  # the very first window gives all its T frames
                out.append(self.model(x[None, :T])[0].cpu().numpy())
                ends, start_index = list(range(T, len(allf))), 0
                self.started = True
            else:
                ends, start_index = list(range(len(ctx), len(allf))), n_before
            for i in range(0, len(ends), 8):
                chunk = ends[i : i + 8]
                windows = torch.stack([x[e - T + 1 : e + 1] for e in chunk])
                out.append(self.model(windows)[:, -1].cpu().numpy())
        self.context = allf[len(allf) - (T - 1):] if T > 1 else allf[:0]
        objects = np.concatenate(out) if out else np.zeros((0, *frames.shape[1:]), np.complex64)
        yield {"event": "progress", "stage": "inference", "frames_done": start_index + len(objects)}
        return start_index, objects.astype(np.complex64)


class _FineTuner:
    """Periodic fine-tuning of the live PID3Net on the most recent frames, in a background thread.

    Every ``finetune_every`` new frames (when no round is running) a copy of the model trains on the last
    ``finetune_frames`` prepared frames for ``finetune_epochs`` epochs with the usual held-out rule (binomial
    thinning, best held-out state kept; docs/fidelity.md), while inference goes on with the current model.
    The new weights are adopted between two blocks, and only if they explain the held-out photons of those
    frames better than the current weights do (mean held-out Poisson deviance over all windows, the same
    thinning for both); a round that does not improve is discarded.
    """

    def __init__(self, model, cfg: LiveConfig):
        self.model = model
        self.cfg = cfg
        self.round = 0
        self.next_at = cfg.finetune_every
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()
        self.result: dict | None = None
        self.error: BaseException | None = None
        self.adopted = 0

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def maybe_start(self, recent: np.ndarray, n_done: int) -> dict | None:
        """Start a round if one is due and none runs; returns its ``finetune_started`` event."""
        T = self.model.config.frames
        if not self.cfg.finetune_every or self.running or n_done < self.next_at or len(recent) < max(T, 2):
            return None
        import copy

        self.round += 1
        self.next_at = n_done + self.cfg.finetune_every
        trial = copy.deepcopy(self.model)  # between blocks: the model is not in use
        reference = copy.deepcopy(self.model)  # the current weights, scored on the same held-out photons
        frames = np.array(recent[-self.cfg.finetune_frames:], np.float32)
        self.result, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=(trial, reference, frames, self.round), daemon=True,
                                       name=f"live-finetune-{self.round}")
        self.thread.start()
        return {"event": "finetune_started", "round": self.round, "frames": len(frames), "at_frame": n_done}

    def _run(self, trial, reference, frames: np.ndarray, k: int) -> None:
        from .pid3net.train import PID3NetTrainer

        try:
            config = trial.config.with_(epochs=self.cfg.finetune_epochs, preview_every=0, checkpoint_every=0,
                                        seed=(trial.config.seed or 0) + k,
                                        batch_size=min(trial.config.batch_size, len(frames) - trial.config.frames + 1))
            trainer = PID3NetTrainer(frames, config=config, model=trial)
            before = heldout_score(reference, trainer)
            gen = trainer.run()
            for _ in gen:
                if self.stop.is_set():
                    gen.close()
                    return
            after = heldout_score(trainer.model, trainer)
            self.result = {"round": k, "frames": len(frames), "steps": trainer.step, "heldout_before": before,
                           "heldout_after": after, "state": trainer.model.state_dict()}
        except BaseException as exc:  # noqa: BLE001 - reported by the follower loop, never lost in the thread
            self.error = exc

    def poll(self) -> dict | None:
        """Between blocks: adopt a finished round's weights if they are better; its ``finetuned`` event."""
        if self.thread is None or self.thread.is_alive():
            return None
        self.thread = None
        if self.error is not None:
            return {"event": "warning", "stage": "finetune",
                    "message": f"fine-tuning round {self.round} failed and was discarded: {self.error}"}
        if self.result is None:
            return None
        r, self.result = self.result, None
        adopted = r["heldout_after"] < r["heldout_before"]
        if adopted:
            self.model.load_state_dict(r.pop("state"))
            self.model.eval()
            self.adopted += 1
        else:
            r.pop("state")
        return {"event": "finetuned", **r, "adopted": adopted}

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=60)


def heldout_score(model, trainer) -> float:
    """Mean held-out Poisson deviance of ``model`` over every window of ``trainer``'s thinned movie (lower is
    better): how well it predicts photons it was not trained on."""
    import torch

    from .pid3net.losses import poisson_deviance

    was_training = model.training
    model.eval()
    windows, scale = trainer.windows, trainer.config.holdout_fraction / trainer.keep
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, windows.n_windows, trainer.batch_size):
            starts = np.arange(i, min(i + trainer.batch_size, windows.n_windows))
            counts = windows.batch(starts)
            predicted = model.predicted_intensity(model(trainer.network_counts(counts))) * trainer.keep
            total += float(poisson_deviance(predicted * scale, windows.heldout_batch(starts), threshold=0.0)) * len(starts)
            n += len(starts)
    model.train(was_training)
    return total / max(n, 1)


# --------------------------------------------------------------------------- the loop
@dataclass
class LiveSummary:
    """What a live run did: frames reconstructed now and in total, rate, latency, tracks, why it stopped."""

    output: Path | None
    frames_new: int
    frames_total: int
    frames_per_s: float
    latency_s_median: float | None
    latency_s_p95: float | None
    n_tracks: int
    stopped: str  # "idle" | "cancelled"
    resumed_from: int = 0
    warnings: list[str] = field(default_factory=list)
    finetune_rounds: int = 0      # background fine-tuning rounds finished
    finetune_adopted: int = 0     # ... whose weights were better on held-out photons and replaced the model

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output"] = str(self.output) if self.output else None
        return d


def _detect(phase: np.ndarray, first: int, tracking, pixel_size_nm: float, mask) -> pd.DataFrame:
    from .tracking.detect import detect_frame

    tables = [detect_frame(phase[i], tracking, pixel_size_nm, first + i, mask) for i in range(len(phase))]
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["frame", "y", "x", "diameter_nm", "contrast"])


def iter_live(
    source: str | Path,
    model=None,
    probe=None,
    method: str | None = None,
    output: str | Path | None = None,
    config: LiveConfig | None = None,
    detector=None,
    detection=None,
    pixel_size_nm: float | None = None,
    overwrite: bool = False,
    cancel: threading.Event | None = None,
    **overrides: Any,
) -> Generator[dict[str, Any], None, LiveSummary]:
    """Follow ``source`` (SWMR HDF5 file, Dectris ``*_master.h5``, or a folder of TIFFs) and reconstruct new frames.

    model: a PID3Net or checkpoint path (inference over the last T frames); None: ``method`` (mixed-state /
    mf-PIE) with ``probe`` per block. output: the live CXI (resumed if it is already a live output of this
    source). detector: :class:`~napari_cxdi.api.DetectorSettings` (mask, centre, crop, bin). detection:
    :class:`~napari_cxdi.tracking.detect.DetectionConfig` (default: the tracking defaults).
    ``overrides`` update the :class:`LiveConfig` (``idle_timeout_s=``, ``block_frames=``, ``max_iter=`` ...).
    ``finetune_every=N`` (with a model): every N new frames a copy of the model is fine-tuned on the latest
    ``finetune_frames`` frames in a background thread and replaces the live model if it predicts their
    held-out photons better (:class:`_FineTuner`; events ``finetune_started`` / ``finetuned``).

    Yields ``{"event": "frames", "start", "counts", "objects", "tracks" (new rows), "latency_s",
    "frames_per_s", "frames_done", "pixel_size_nm" (None when unknown)}`` per block, ``{"event": "waiting", ...}`` while idle and ``started`` /
    ``warning`` events; returns a :class:`LiveSummary`. Set ``cancel`` to stop after the current block (the
    output stays consistent and resumable).
    """
    from .api import DetectorSettings
    from .io import read_probe
    from .io.validate import check_probe
    from .tracking.detect import DetectionConfig

    unknown = sorted(set(overrides) - set(LiveConfig.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"unknown live-mode option(s) {', '.join(unknown)}; known: {', '.join(LiveConfig.__dataclass_fields__)}")
    cfg = (config or LiveConfig()).with_(**overrides) if overrides else (config or LiveConfig())
    if method is not None:
        cfg = cfg.with_(method=method)
    cfg.validate()
    detector = detector or DetectorSettings()
    detector.validate()
    source = Path(source).expanduser()
    if isinstance(model, (str, Path)):
        from .pid3net import load_checkpoint

        model, _ = load_checkpoint(model, device=cfg.device)
    if model is not None:
        model.eval()
        probe_np = model.probe.detach().cpu().numpy()
        cfg = cfg.with_(method=model.config.name)
        frame_size = model.frame_size
    else:
        from .recon import METHODS

        if cfg.method not in METHODS:
            raise ConfigError(f"without a model the live method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
        if probe is None:
            raise ConfigError("no model and no probe: give a trained PID3Net (--model) or a probe (--probe) for the baseline")
        probe_np = read_probe(probe) if isinstance(probe, (str, Path)) else np.asarray(probe)
        frame_size = int(probe_np.shape[-1])
    detection = detection or DetectionConfig()
    protected = [source] + ([probe] if isinstance(probe, (str, Path)) else [])
    if output is not None:
        check_output(output, overwrite=True, protected=protected)  # never an input, folder writable
        if LiveOutput.existing_frames(output, source) is None:
            check_output(output, overwrite=overwrite, protected=protected)
    resume = (LiveOutput.existing_frames(output, source) or 0) if output is not None else 0

    T = model.config.frames if model is not None else 1
    context_from = max(0, resume - (T - 1))
    follower = open_follower(source, start=context_from, dataset=cfg.dataset, settle_s=cfg.settle_s, counter=cfg.counter)
    recon = _Reconstructor(model, probe_np, cfg)
    if cfg.finetune_every and model is None:
        raise ConfigError("fine-tuning needs a PID3Net model (--model); the baselines have nothing to fine-tune")
    if cfg.finetune_every and cfg.finetune_frames < T:
        raise ConfigError(f"finetune_frames ({cfg.finetune_frames}) must be at least the model's window T = {T}")
    if cfg.finetune_every:
        import copy

        model = copy.deepcopy(model)  # fine-tuning changes the live model's weights, never the caller's model
        recon.model = model
    tuner = _FineTuner(model, cfg) if cfg.finetune_every else None
    recent: list[np.ndarray] = []  # the last finetune_frames prepared frames (fine-tuning data)
    finetune_rounds = 0
    prep = None
    out: LiveOutput | None = None
    linker = StreamLinker(cfg.max_displacement_nm / (pixel_size_nm or 1.0), cfg.memory)
    pending_seen: list[float] = []  # seen time of frames buffered as PID3Net context but not yet output
    n_done = resume
    latencies: list[float] = []
    t_start = time.perf_counter()
    frames_new = 0
    stopped = "idle"
    warnings: list[str] = []
    dx = pixel_size_nm
    yield {"event": "started", "source": str(source), "resume_from": resume, "method": cfg.method,
           "output": str(output) if output else None}
    try:
        gen = follow(follower, cfg.block_frames, cfg.idle_timeout_s, cfg.poll_s, cancel)
        while True:
            if cancel is not None and cancel.is_set():
                stopped = "cancelled"
                gen.close()
                break
            try:
                ev = next(gen)
            except StopIteration:
                if cancel is not None and cancel.is_set():
                    stopped = "cancelled"
                break
            if tuner is not None:
                done = tuner.poll()
                if done is not None:
                    finetune_rounds += done["event"] == "finetuned"
                    if done["event"] == "warning":
                        warnings.append(done["message"])
                    yield {**done, "frames_done": n_done}
            if ev["event"] != "frames":
                yield {**ev, "frames_done": n_done}
                continue
            block: FrameBlock = ev["block"]
            if prep is None:
                prep = _Preparer(block.frames, follower.info, detector, probe_np, frame_size)
                for note in ([f"crop window {prep.window.to_dict()} around ({prep.centre.y:.1f}, {prep.centre.x:.1f}, "
                              f"{prep.centre.source})"] if not prep.identity else []):
                    warnings.append(note)
                    yield {"event": "warning", "stage": "prepare", "message": note}
                if prep.size != frame_size:
                    raise ConfigError(f"the prepared frames are {prep.size}px but the {'model' if model else 'probe'} is "
                                      f"{frame_size}px; give --crop-size {frame_size} (or a matching probe/model)")
                probe_np = check_probe(probe_np, (1, prep.size, prep.size))
                recon.probe = probe_np
                if dx is None:
                    dx = prep.metadata.get("pixel_size_nm")
                    if dx is None and prep.metadata.get("energy_kev") and prep.metadata.get("distance_m") and prep.metadata.get("detector_pixel_um"):
                        wl_nm = 1.23984198 / prep.metadata["energy_kev"]
                        dx = wl_nm * prep.metadata["distance_m"] * 1e9 / (prep.size * prep.window.bin * prep.metadata["detector_pixel_um"] * 1e3)
                linker.search_range_px = cfg.max_displacement_nm / (dx or 1.0)
                if output is not None:
                    run_cfg = {"live": cfg.to_dict(), "method": cfg.method, "detector": detector.to_dict(),
                               "detection": asdict(detection), "source": str(source)}
                    meta = {k: v for k, v in prep.metadata.items() if not isinstance(v, np.ndarray)}
                    if dx:
                        meta["pixel_size_nm"] = dx
                    out = LiveOutput.open(output, source=source, m=prep.size, probe=probe_np, config=run_cfg,
                                          metadata=meta, overwrite=overwrite, protected=protected)
                    if out.n_done != resume:
                        raise OutputExistsError(f"{output}: changed while starting (another follower writing to it?)")
                    if resume and cfg.track:
                        linker = StreamLinker.from_tracks(out.tracks(), linker.search_range_px, cfg.memory)
            counts = prep(block.frames)
            if block.start < resume:  # context frames of a resumed PID3Net run: already in the output
                skip = resume - block.start
                recon.warm(np.concatenate([recon.context, counts[:skip]]) if recon.context is not None else counts[:skip])
                counts = counts[skip:]
                if not len(counts):
                    continue
                block = FrameBlock(resume, block.frames[skip:], block.seen_s)
            pending_seen.extend([block.seen_s] * len(counts))
            buffered = np.concatenate([recon.context, counts]) if recon.context is not None and model is not None else counts
            first, objects = yield from cancellable_inner(recon(counts, n_done), cancel)
            k = len(objects)
            if k == 0:
                continue
            # objects cover frames first .. first + k - 1 (== n_done ..); their counts are the tail of `buffered`
            block_counts = buffered[len(buffered) - k:] if model is not None else counts
            seen = np.asarray(pending_seen[:k])
            del pending_seen[:k]
            phase = np.angle(objects).astype(np.float32)
            new_tracks = pd.DataFrame(columns=list(TRACK_COLUMNS))
            if cfg.track:
                det = _detect(phase, first, detection, dx or 1.0, None)
                if len(det):
                    rows = []
                    for f_idx, grp in det.groupby("frame", sort=True):
                        ids = linker.link(int(f_idx), grp[["y", "x"]].to_numpy(float))
                        rows.append(grp.assign(particle=ids))
                    det = pd.concat(rows, ignore_index=True)
                    for c in TRACK_COLUMNS:
                        if c not in det:
                            det[c] = np.nan
                    new_tracks = det[list(TRACK_COLUMNS)].astype({"frame": np.int64, "particle": np.int64})
            if out is not None:
                out.append(block_counts, objects, np.arange(first, first + k), seen, new_tracks)
            now = time.time()
            lat = now - seen
            latencies.extend(lat.tolist())
            n_done = first + k
            frames_new += k
            if tuner is not None:
                recent.extend(np.asarray(block_counts, np.float32))
                del recent[: max(0, len(recent) - cfg.finetune_frames)]
                started = tuner.maybe_start(np.stack(recent), n_done)
                if started is not None:
                    yield {**started, "frames_done": n_done}
            elapsed = time.perf_counter() - t_start
            yield {"event": "frames", "start": first, "counts": block_counts, "objects": objects, "tracks": new_tracks,
                   "latency_s": float(lat.max()), "frames_per_s": frames_new / max(elapsed, 1e-9), "frames_done": n_done,
                   "source_position": follower.position, "pixel_size_nm": dx}
    finally:
        if tuner is not None:
            tuner.close()
        follower.close()
        if out is not None:
            out.close(complete=True)
        from .devices import free_device_memory

        free_device_memory()
    elapsed = time.perf_counter() - t_start
    lat = np.asarray(latencies)
    n_tracks = 0
    if output is not None and Path(output).exists():
        try:
            n_tracks = int(read_live_output(output)["tracks"]["particle"].nunique())
        except (OSError, KeyError):
            n_tracks = 0
    else:
        n_tracks = linker.next_id
    return LiveSummary(Path(output) if output else None, frames_new, n_done, frames_new / max(elapsed, 1e-9),
                       float(np.median(lat)) if len(lat) else None, float(np.percentile(lat, 95)) if len(lat) else None,
                       n_tracks, stopped, resume, warnings, finetune_rounds, tuner.adopted if tuner else 0)


def cancellable_inner(gen, cancel):
    """Run a reconstruction step to its end (a block is never left half-written), re-yielding its events."""
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        yield ev


def live(source, progress=None, **kwargs) -> LiveSummary:
    """Blocking form of :func:`iter_live`."""
    from .progress import drain

    return drain(iter_live(source, **kwargs), progress)


# --------------------------------------------------------------------------- a session for viewers
class LiveSession:
    """The growing arrays a viewer shows (Qt-free): counts, amplitude, phase [n, m, m], detections and tracks.

    :meth:`add` takes a ``frames`` event of :func:`iter_live` (frames must continue where the session ends;
    an event that does not is refused with ``False`` so the caller can :meth:`load` the output instead);
    :meth:`load` replaces everything with what a live output holds (used when a run resumes).
    Buffers grow by doubling, so the arrays handed out are views ``[:n]`` (no copy per update).
    """

    def __init__(self):
        self.n = 0
        self.pixel_size_nm: float | None = None  # from the run's events or output (None: unknown, layers in pixels)
        self._buf: dict[str, np.ndarray] = {}
        self.tracks = pd.DataFrame({c: pd.Series(dtype=float) for c in TRACK_COLUMNS})

    def _ensure(self, extra: int, m: int) -> None:
        cap = len(self._buf["phase"]) if self._buf else 0
        if self.n + extra <= cap:
            return
        new = max(16, 2 * cap, self.n + extra)
        fresh = {"counts": np.full((new, m, m), np.nan, np.float32), "amplitude": np.ones((new, m, m), np.float32),
                 "phase": np.zeros((new, m, m), np.float32)}
        for k, v in self._buf.items():
            fresh[k][: self.n] = v[: self.n]
        self._buf = fresh

    def _put(self, start: int, counts, objects) -> None:
        k, m = len(objects), objects.shape[-1]
        self._ensure(start + k - self.n, m)
        self._buf["counts"][start : start + k] = counts
        self._buf["amplitude"][start : start + k] = np.abs(objects)
        self._buf["phase"][start : start + k] = np.angle(objects)
        self.n = start + k

    def add(self, event: dict) -> bool:
        start, objects = int(event["start"]), np.asarray(event["objects"])
        if start != self.n:
            return False
        self._put(start, event["counts"], objects)
        if event.get("pixel_size_nm"):
            self.pixel_size_nm = float(event["pixel_size_nm"])
        new = event.get("tracks")
        if new is not None and len(new):
            self.tracks = pd.concat([self.tracks, new[list(TRACK_COLUMNS)]], ignore_index=True)
        return True

    def load(self, path: str | Path) -> None:
        data = read_live_output(path)
        self.n = 0
        self._buf = {}
        self.pixel_size_nm = data.get("pixel_size_nm") or self.pixel_size_nm
        if data["frames_complete"]:
            self._put(0, data["counts"], data["objects"])
        self.tracks = data["tracks"].reset_index(drop=True)

    def _view(self, name: str) -> np.ndarray:
        return self._buf[name][: self.n] if self._buf else np.zeros((0, 1, 1), np.float32)

    @property
    def counts(self) -> np.ndarray:
        return self._view("counts")

    @property
    def amplitude(self) -> np.ndarray:
        return self._view("amplitude")

    @property
    def phase(self) -> np.ndarray:
        return self._view("phase")

    def points(self) -> np.ndarray:
        """Detections as napari points [n, 3] (frame, y, x)."""
        return self.tracks[["frame", "y", "x"]].to_numpy(float) if len(self.tracks) else np.zeros((0, 3))

    def track_data(self) -> np.ndarray:
        """napari tracks [n, 4] (particle, frame, y, x), sorted by particle then frame."""
        if not len(self.tracks):
            return np.zeros((0, 4))
        t = self.tracks.sort_values(["particle", "frame"])
        return t[["particle", "frame", "y", "x"]].to_numpy(float)

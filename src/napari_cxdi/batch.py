"""Many movies at once on a Dask cluster: one task per movie (reconstruct -> evaluate -> track -> write).

```python
from napari_cxdi.api import batch
result = batch("scans/*.h5", "out/", method="PID3Net-PO", epochs=20)          # LocalCluster sized to the machine
result = batch("scans/*.h5", "out/", scheduler="tcp://head-node:8786")        # any running Dask scheduler
result.table            # one row per scan: status, error, R_f, PRTF, tracks, timings, outputs
```

* **Engine**: ``dask.distributed``. Without ``scheduler`` a ``LocalCluster`` is started: worker
  *processes* with one thread each (PyTorch releases the GIL but its own thread pools would fight each
  other), as many as CPU cores, or - when the reconstruction runs on CUDA and GPUs are present - one
  worker per GPU pinned with ``CUDA_VISIBLE_DEVICES`` and a ``GPU=1`` worker resource, so that each task
  gets one whole device. On a cluster start GPU workers the same way
  (``CUDA_VISIBLE_DEVICES=i dask worker ADDRESS --nthreads 1 --resources GPU=1``); tasks then ask for
  ``GPU=1`` when ``gpu_resources=True``.
* **Same results as the serial run**: every task sets the same PyTorch thread count
  (``torch_threads``, default 1) and deterministic algorithms, and the seed is part of the config;
  ``workers=0`` runs the very same task function in this process, one movie after the other.
* **Resumable**: each output CXI carries, in its provenance (``config.batch.config_hash``), a hash of
  the batch configuration and of the input file's identity (name, size, modification time). A rerun
  skips movies whose output holds the same hash; an output made with another configuration is an
  error for that movie unless ``overwrite=True``.
* **Failures stay local**: a movie that fails (corrupt file, bad probe, out of memory...) is reported
  with its error type and message; the others finish. Even a crashed worker (KilledWorker) is
  reported per movie.
* **Summary**: ``summary.csv`` and ``summary.html`` in the output folder, one row per scan.

Outputs per scan ``<stem>``: ``<stem>_<method>.cxi`` (objects, probe, metrics, provenance - written last,
so its presence marks a finished scan) and ``<stem>_tracks.h5`` (features, tracks, per-track tables).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import json
import os
import time
import traceback
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Generator, Iterable

from ._version import __version__
from .errors import ConfigError, CXDIError, OutputExistsError
from .progress import drain

ITERATIVE_OPTIONS = ("max_iter", "device")
SUMMARY_COLUMNS = ("scan", "status", "error_type", "error", "method", "rf", "prtf_resolution_nm", "phase_ssim",
                   "frc_resolution_nm", "n_tracks", "n_detections", "diffusion_nm2_s", "drift_vy_nm_s", "drift_vx_nm_s",
                   "training_s", "inference_s", "reconstruction_s", "task_s", "worker", "config_hash", "output", "input")


class BatchError(CXDIError):
    """A movie of a batch could not be processed (raised per movie inside a task, reported in the table)."""


@dataclass(frozen=True)
class BatchConfig:
    """The per-movie settings of a batch (the options of ``napari-cxdi reconstruct``).

    method: PID3Net-PO / -MAE / -NR, mixed-state or mf-PIE. probe: a probe file for every movie
    (default: each movie's own). options: config overrides (``epochs``, ``seed``, ``batch_size``,
    ``device``, ``max_iter``...). inference_stride: PID3Net window stride. dataset: HDF5 dataset of
    the frames. track: also detect and link particles (needs pixel size and frame interval in the file).
    tracking: :class:`~napari_cxdi.tracking.TrackingConfig` linking options (``max_displacement_nm``,
    ``memory``, ``min_length``). torch_threads: PyTorch threads per task (the same in every run keeps
    results bit-identical). deterministic: ``torch.use_deterministic_algorithms`` in each task.
    """

    method: str = "PID3Net-PO"
    probe: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    inference_stride: int | None = None
    dataset: str | None = None
    track: bool = True
    tracking: dict[str, Any] = field(default_factory=dict)
    torch_threads: int = 1
    deterministic: bool = True

    def validate(self) -> None:
        from .api import ALL_METHODS
        from .pid3net import PID3NetConfig
        from .recon import METHODS as ITERATIVE_METHODS
        from .recon import IterativeConfig

        if self.method not in ALL_METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(ALL_METHODS)}")
        if self.torch_threads < 1:
            raise ConfigError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if self.inference_stride is not None and self.inference_stride < 1:
            raise ConfigError(f"inference stride must be >= 1, got {self.inference_stride}")
        try:
            if self.method in ITERATIVE_METHODS:
                IterativeConfig(**self.options)
            else:
                PID3NetConfig.variant(self.method, **self.options).validate()
        except TypeError as exc:
            raise ConfigError(f"unknown option for {self.method}: {exc}") from exc
        if self.probe is not None and not Path(self.probe).is_file():
            raise ConfigError(f"probe file {self.probe} not found")
        try:
            tracking_config(self.tracking).validate()
        except TypeError as exc:
            raise ConfigError(f"unknown tracking option: {exc}") from exc

    def with_(self, **changes: Any) -> "BatchConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = dict(sorted(self.options.items()))
        d["tracking"] = dict(sorted(self.tracking.items()))
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BatchConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def suffix(self) -> str:
        return self.method.replace("PID3Net-", "pid3net_").lower()

    def outputs(self, movie: str | Path, outdir: str | Path) -> dict[str, Path]:
        stem = Path(movie).stem
        return {"cxi": Path(outdir) / f"{stem}_{self.suffix}.cxi", "tracks": Path(outdir) / f"{stem}_tracks.h5"}

    def config_hash(self, movie: str | Path) -> str:
        """SHA-256 (16 hex digits) of this config, the code version and the input's name, size and mtime."""
        movie = Path(movie)
        try:
            st = movie.stat()
            identity = {"name": movie.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        except OSError:
            identity = {"name": movie.name}
        probe = None
        if self.probe is not None:
            with contextlib.suppress(OSError):
                pst = Path(self.probe).stat()
                probe = {"name": Path(self.probe).name, "size": pst.st_size, "mtime_ns": pst.st_mtime_ns}
        text = json.dumps({"config": self.to_dict(), "version": __version__, "input": identity, "probe": probe},
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class BatchResult:
    """rows: one dict per scan (see ``SUMMARY_COLUMNS``); summary_csv / summary_html: written tables."""

    rows: list[dict[str, Any]]
    outdir: Path
    summary_csv: Path | None = None
    summary_html: Path | None = None
    dashboard_link: str | None = None
    elapsed_s: float = 0.0
    config: BatchConfig | None = None

    @property
    def table(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(SUMMARY_COLUMNS))

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]


# -- inputs --------------------------------------------------------------------------------------------------
def expand_inputs(inputs: str | Path | Iterable[str | Path]) -> list[Path]:
    """Glob patterns and paths -> a sorted list of distinct files (``**`` recurses)."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        matches = sorted(glob.glob(os.path.expanduser(text), recursive=True)) if glob.has_magic(text) else [text]
        if not matches:
            raise ConfigError(f"no file matches {text!r}")
        for m in matches:
            p = Path(m)
            if p.is_dir():
                continue
            if not p.exists():
                raise ConfigError(f"{p}: file not found")
            if p not in found:
                found.append(p)
    if not found:
        raise ConfigError("no input movies given")
    stems: dict[str, Path] = {}
    for p in found:
        if p.stem in stems:
            raise ConfigError(f"{stems[p.stem]} and {p} have the same name {p.stem!r}: their outputs would collide; "
                              "run them in separate batches with different output folders")
        stems[p.stem] = p
    return found


def read_output_provenance(path: str | Path) -> dict | None:
    """The provenance record of a CXI output, or None if absent / unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.get("entry_1/provenance")
            if raw is None:
                return None
            value = raw[()]
        return json.loads(value.decode() if isinstance(value, bytes) else value)
    except (OSError, ValueError, KeyError):
        return None


def stored_hash(path: str | Path) -> str | None:
    record = read_output_provenance(path) or {}
    return ((record.get("config") or {}).get("batch") or {}).get("config_hash")


def _row(movie: Path, status: str, **values: Any) -> dict[str, Any]:
    row = {c: None for c in SUMMARY_COLUMNS}
    row.update(scan=movie.stem, input=str(movie), status=status, **values)
    return row


def _skipped_row(movie: Path, outputs: dict[str, Path], config_hash: str, method: str) -> dict[str, Any]:
    """A finished scan's row from what its outputs recorded."""
    record = read_output_provenance(outputs["cxi"]) or {}
    metrics = record.get("metrics") or {}
    batch = (record.get("config") or {}).get("batch") or {}
    row = _row(movie, "skipped", method=method, config_hash=config_hash, output=str(outputs["cxi"]))
    row.update({k: v for k, v in metrics.items() if k in SUMMARY_COLUMNS})
    row.update({k: v for k, v in (batch.get("tracking") or {}).items() if k in SUMMARY_COLUMNS})
    row.update({k: v for k, v in ((record.get("config") or {}).get("timings") or {}).items() if k in SUMMARY_COLUMNS})
    return row


# -- the task ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _torch_settings(threads: int, deterministic: bool):
    import torch

    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=True)


def _ground_truth(path: Path):
    """Ground-truth objects of a simulated movie (``napari-cxdi simulate``), else None."""
    import h5py
    import numpy as np

    try:
        with h5py.File(path, "r") as f:
            node = f.get("entry_1/napari_cxdi/ground_truth/objects")
            return None if node is None else np.asarray(node[()])
    except OSError:
        return None


def tracking_config(options: dict[str, Any]):
    """A :class:`~napari_cxdi.tracking.TrackingConfig` from plain options (``detection`` may be a dict)."""
    from .tracking import DetectionConfig, TrackingConfig

    options = dict(options)
    if isinstance(options.get("detection"), dict):
        options["detection"] = DetectionConfig(**options["detection"])
    return TrackingConfig(**options)


def _track(objects, meta: dict, pixel_size_nm, cfg: BatchConfig):
    """Tracking of the phase movie -> (tables, summary) or (None, reason)."""
    import numpy as np

    from .tracking import iter_track

    dt = meta.get("frame_interval_s") or meta.get("exposure_s")
    if not pixel_size_nm or not dt:
        return None, "no pixel size or frame interval in the file"
    result = drain(iter_track(np.angle(objects).astype(np.float32), tracking_config(cfg.tracking),
                              float(pixel_size_nm), float(dt)))
    tables = {"features": result.features, "tracks": result.tracks, "per_track": result.per_track}
    return tables, result.summary()


def process_movie(movie: str | Path, outdir: str | Path, config: BatchConfig | dict, config_hash: str,
                  overwrite: bool = False) -> dict[str, Any]:
    """One scan, start to end (the Dask task): reconstruct -> evaluate -> track -> write.

    Returns the scan's summary row; any error becomes a ``failed`` row carrying the error's type and
    message (so a bad movie never stops the batch). Skips the scan if its output holds ``config_hash``.
    """
    movie = Path(movie)
    cfg = config if isinstance(config, BatchConfig) else BatchConfig.from_dict(config)
    outputs = cfg.outputs(movie, outdir)
    t0 = time.perf_counter()
    worker = _worker_name()
    try:
        if outputs["cxi"].exists():
            found = stored_hash(outputs["cxi"])
            if found == config_hash:
                if outputs["tracks"].exists() or not _tracked(outputs["cxi"]):
                    return _skipped_row(movie, outputs, config_hash, cfg.method)
                # same configuration but its tracks table is gone: this scan is redone
            elif not overwrite:
                raise OutputExistsError(
                    f"{outputs['cxi']}: exists and was made with another configuration (hash {found}, this run "
                    f"{config_hash}); pass overwrite=True (CLI: --overwrite) or choose another output folder")
        return _run_movie(movie, outputs, cfg, config_hash, t0, worker)
    except Exception as exc:  # noqa: BLE001 - every failure is reported in the table, typed
        kind = type(exc).__name__
        message = str(exc) if isinstance(exc, CXDIError) else f"{exc}\n{traceback.format_exc(limit=6)}"
        return _row(movie, "failed", error_type=kind, error=message, method=cfg.method, config_hash=config_hash,
                    task_s=time.perf_counter() - t0, worker=worker)


def _tracked(cxi: Path) -> bool:
    record = read_output_provenance(cxi) or {}
    return bool(((record.get("config") or {}).get("batch") or {}).get("tracked"))


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "local"


def _run_movie(movie: Path, outputs: dict[str, Path], cfg: BatchConfig, config_hash: str, t0: float,
               worker: str) -> dict[str, Any]:
    from .api import iter_reconstruction
    from .io import open_movie
    from .io.safe_write import check_output
    from .recon import METHODS as ITERATIVE_METHODS
    from .tracking import write_tables

    for p in outputs.values():
        check_output(p, overwrite=True, protected=[movie, cfg.probe])
    with _torch_settings(cfg.torch_threads, cfg.deterministic):
        source = open_movie(movie, dataset=cfg.dataset)
        options = dict(cfg.options)
        if cfg.method in ITERATIVE_METHODS:
            options = {k: v for k, v in options.items() if k in ITERATIVE_OPTIONS}
        result = drain(iter_reconstruction(source, cfg.probe, cfg.method, truth=_ground_truth(movie),
                                           inference_stride=cfg.inference_stride, **options))
        tables, track_summary = (None, "tracking off")
        if cfg.track:
            tables, track_summary = _track(result.objects, source.metadata, result.pixel_size_nm, cfg)
    tracked = tables is not None
    batch_record = {"config_hash": config_hash, "batch_config": cfg.to_dict(), "input": str(movie),
                    "tracked": tracked, "tracking": track_summary if tracked else {"skipped": track_summary}}
    scalar = {k: v for k, v in result.metrics.items() if not isinstance(v, (dict, list))}
    if tracked:
        write_tables(outputs["tracks"], tables, config={"input": str(movie), "batch": batch_record},
                     metrics={**track_summary, **scalar}, overwrite=True, protected=[movie])
    elif outputs["tracks"].exists():
        outputs["tracks"].unlink()  # a stale table of an earlier configuration
    result.config["batch"] = batch_record
    result.save(outputs["cxi"], metadata=source.metadata, overwrite=True)  # last: marks the scan as finished
    row = _row(movie, "done", method=result.method, config_hash=config_hash, output=str(outputs["cxi"]),
               task_s=time.perf_counter() - t0, worker=worker, **scalar)
    row.update({k: v for k, v in result.timings.items() if k in SUMMARY_COLUMNS})
    if tracked:
        row.update({k: v for k, v in track_summary.items() if k in SUMMARY_COLUMNS})
    return {k: row[k] for k in SUMMARY_COLUMNS}


# -- the cluster ---------------------------------------------------------------------------------------------
def cuda_devices() -> list[int]:
    """Indices of the visible CUDA devices (none without CUDA)."""
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def default_workers() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def local_cluster(workers: int | None = None, gpus: list[int] | None = None, dashboard_address: str | None = ":8787",
                  memory_limit: str | float | None = "auto"):
    """A local Dask cluster of single-threaded worker processes.

    gpus: device indices; one worker per GPU with ``CUDA_VISIBLE_DEVICES`` set to it and a ``GPU=1``
    resource (``workers`` is then ignored; :func:`iter_batch` passes the first ``workers`` devices).
    Otherwise ``workers`` processes (default: all cores).
    """
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    if gpus:
        scheduler = {"cls": Scheduler, "options": {"dashboard_address": dashboard_address}}
        spec = {
            f"gpu-{d}": {"cls": Nanny, "options": {
                "nthreads": 1, "resources": {"GPU": 1}, "memory_limit": memory_limit,
                "env": {"CUDA_VISIBLE_DEVICES": str(d), "OMP_NUM_THREADS": "1"}}}
            for d in gpus
        }
        return SpecCluster(workers=spec, scheduler=scheduler, name="napari-cxdi")
    n = workers or default_workers()
    if n < 1:
        raise ConfigError(f"workers must be >= 1, got {n}")
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=dashboard_address,
                        memory_limit=memory_limit, env={"OMP_NUM_THREADS": "1"})


def _wants_cuda(cfg: BatchConfig) -> bool:
    device = str(cfg.options.get("device", "auto"))
    return device.startswith("cuda") or (device == "auto" and bool(cuda_devices()))


def iter_batch(
    inputs: str | Path | Iterable[str | Path],
    outdir: str | Path,
    config: BatchConfig | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    gpu_resources: bool | None = None,
    dashboard_address: str | None = ":8787",
    write_summary: bool = True,
    **options: Any,
) -> Generator[dict[str, Any], None, BatchResult]:
    """Process every movie of ``inputs`` (glob patterns or paths) into ``outdir``; yields progress events.

    workers: local worker processes (default: one per core, or one per GPU); ``0`` runs the tasks here,
    one after the other (the serial reference). scheduler: address of a running Dask scheduler
    (``tcp://host:8786``) - ``workers`` is then ignored. gpu_resources: tasks ask for ``GPU=1``
    (default: when the local cluster has GPU workers). ``options``: :class:`BatchConfig` fields or
    reconstruction options (``epochs=2, seed=0, probe="probe.npy", method="mf-PIE"``).
    Events: ``start`` (total, dashboard link), ``scan`` (one per finished scan, with its row), ``done``.
    Closing the generator cancels the tasks not started and closes a local cluster.
    """
    cfg = config or BatchConfig()
    names = {f.name for f in fields(BatchConfig)}
    direct = {k: v for k, v in options.items() if k in names}
    extra = {k: v for k, v in options.items() if k not in names}
    cfg = cfg.with_(**direct, options={**cfg.options, **extra})
    cfg.validate()
    movies = expand_inputs(inputs)
    outdir = Path(outdir).expanduser()
    outdir.mkdir(parents=True, exist_ok=True)
    for m in movies:
        for p in cfg.outputs(m, outdir).values():
            from .io.safe_write import is_same_file

            if p.exists() and is_same_file(p, m):
                raise ConfigError(f"{p}: the output would be the input {m}; choose another output folder")
    hashes = {m: cfg.config_hash(m) for m in movies}
    t0 = time.perf_counter()
    rows: dict[Path, dict] = {}
    link = None
    if workers == 0 and scheduler is None:
        yield {"event": "start", "total": len(movies), "dashboard_link": None, "workers": 0}
        for i, m in enumerate(movies):
            rows[m] = process_movie(m, outdir, cfg, hashes[m], overwrite)
            yield {"event": "scan", "done": i + 1, "total": len(movies), "row": rows[m]}
    else:
        from distributed import Client, as_completed

        cluster = None
        gpus = cuda_devices() if scheduler is None and _wants_cuda(cfg) else []
        if workers:
            gpus = gpus[:workers]  # --workers N with GPUs: the first N devices
        try:
            if scheduler is None:
                cluster = local_cluster(workers, gpus, dashboard_address)
                client = Client(cluster)
            else:
                client = Client(scheduler)
        except (OSError, RuntimeError, TimeoutError) as exc:
            if cluster is not None:
                cluster.close()
            where = f"the Dask scheduler {scheduler}" if scheduler else "a local Dask cluster"
            raise BatchError(f"cannot start or reach {where}: {exc}; check the address (tcp://host:8786) "
                             "or run with workers=0 (CLI: --workers 0) to process the movies in this process") from exc
        futures: dict = {}
        try:
            link = client.dashboard_link
            if cluster is not None and importlib.util.find_spec("bokeh") is None:
                link = None  # distributed serves no dashboard without bokeh
            n_workers = len(client.scheduler_info().get("workers", {}))
            yield {"event": "start", "total": len(movies), "dashboard_link": link, "workers": n_workers}
            resources = {"GPU": 1} if (gpu_resources if gpu_resources is not None else bool(gpus)) else None
            for m in movies:
                f = client.submit(process_movie, str(m), str(outdir), cfg.to_dict(), hashes[m], overwrite,
                                  key=f"cxdi-{m.stem}-{hashes[m]}", resources=resources, pure=False)
                futures[f] = m
            for i, f in enumerate(as_completed(futures)):
                m = futures[f]
                try:
                    rows[m] = f.result()
                except Exception as exc:  # noqa: BLE001 - a crashed worker, a lost connection...
                    rows[m] = _row(m, "failed", error_type=type(exc).__name__, error=str(exc), method=cfg.method,
                                   config_hash=hashes[m])
                yield {"event": "scan", "done": i + 1, "total": len(movies), "row": rows[m]}
        finally:
            with contextlib.suppress(Exception):
                client.cancel(list(futures))
            client.close()
            if cluster is not None:
                cluster.close()
    result = BatchResult([rows[m] for m in movies], outdir, dashboard_link=link, elapsed_s=time.perf_counter() - t0,
                         config=cfg)
    if write_summary:
        result.summary_csv, result.summary_html = write_summary_tables(result)
    yield {"event": "done", "done": result.count("done"), "skipped": result.count("skipped"),
           "failed": result.count("failed"), "elapsed_s": result.elapsed_s}
    return result


def write_summary_tables(result: BatchResult) -> tuple[Path, Path]:
    """``summary.csv`` and ``summary.html`` (metrics per scan, failures highlighted) in the output folder."""
    import html

    from .io.safe_write import write_text
    from .provenance import provenance

    table = result.table
    csv_path, html_path = result.outdir / "summary.csv", result.outdir / "summary.html"
    record = json.dumps(provenance(result.config.to_dict() if result.config else None, {"done": result.count("done"), "skipped": result.count("skipped"),
                                          "failed": result.count("failed")}), sort_keys=True)
    write_text(csv_path, f"# napari-cxdi batch summary\n# provenance: {record}\n" + table.to_csv(index=False),
               overwrite=True)
    styled = table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", escape=True,
                           classes="summary")
    head = (f"<h1>napari-cxdi batch: {len(table)} scans</h1><p>{result.count('done')} done, "
            f"{result.count('skipped')} skipped (already finished), {result.count('failed')} failed; "
            f"{result.elapsed_s:.1f} s. Output folder: {html.escape(str(result.outdir))}</p>")
    style = ("<style>table.summary{border-collapse:collapse;font:12px sans-serif}"
             "table.summary td,table.summary th{border:1px solid #ccc;padding:2px 6px}</style>")
    write_text(html_path, f"<!doctype html><html><head><meta charset='utf-8'><title>napari-cxdi batch</title>{style}"
               f"</head><body>{head}{styled}</body></html>\n", overwrite=True)
    return csv_path, html_path


def batch(inputs, outdir, config: BatchConfig | None = None, progress: Callable[[dict], None] | None = None,
          **kwargs: Any) -> BatchResult:
    """Blocking form of :func:`iter_batch` (``progress`` is called with every event)."""
    return drain(iter_batch(inputs, outdir, config, **kwargs), progress)

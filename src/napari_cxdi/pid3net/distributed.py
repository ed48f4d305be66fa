"""One movie on several GPUs (or CPU processes) with ``torch.distributed``: DDP training, sharded inference.

Launch with ``torchrun`` (it sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``)::

    torchrun --nproc_per_node=4 -m napari_cxdi train movie.cxi -o model.pt --epochs 20
    torchrun --nproc_per_node=4 -m napari_cxdi reconstruct movie.cxi -o movie_recon.cxi

Backend: NCCL on CUDA (one device per process, ``cuda:LOCAL_RANK``), gloo on CPU.

**Training** (:class:`DistributedPID3NetTrainer`, a thin subclass of the one-process trainer):

* every rank builds the same model from the same seed (a missing seed is drawn on rank 0 and broadcast)
  and draws the same window order from it, so every rank knows the *global* batch of each step (and,
  where the trainer holds windows out, the same split);
* each rank takes its contiguous share of the global batch; its loss is weighted by its share so that
  DDP's gradient average is the gradient of the global batch mean (exact for unequal shares too; a
  batch smaller than the number of ranks is computed whole on every rank);
* BatchNorm statistics are those of the *global* batch (a differentiable all-reduce of per-channel sums
  in training mode; works on gloo, unlike ``SyncBatchNorm``), so the loss curve is the one of a single
  process with the same global batch, to floating-point rounding;
* the loss values reported (and used for the best model and early stopping) are all-reduced, hence the
  same on every rank; rank 0 writes the checkpoints (see :func:`train_distributed`).

**Inference** (:func:`sharded_reconstruct`): the windows of :func:`~.inference.iter_reconstruct`, in its
batches, are split into contiguous frame ranges, one per rank; rank 0 gathers them in order and
averages overlaps exactly as the one-process inference does, so the result is the same, bit for bit,
when the per-window outputs are.
"""

from __future__ import annotations

import os
import random
import types
from typing import Any, Callable, Generator

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..errors import ConfigError, CXDIError, OutputExistsError, OutputWriteError
from ..progress import drain
from .config import PID3NetConfig
from .data import inference_starts
from .inference import accumulate_windows
from .model import PID3Net
from .train import PID3NetTrainer


# -- process group -------------------------------------------------------------------------------------------
def launched_by_torchrun() -> bool:
    """True when this process is one of several started by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def init_process_group(device: str = "auto", backend: str | None = None) -> tuple[int, int, str]:
    """Join the process group described by torchrun's environment (once); returns (rank, world size, device).

    device: ``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``. backend: default
    ``nccl`` for CUDA, ``gloo`` for CPU.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device == "auto" or str(device).startswith("cuda"))
    if not dist.is_initialized():
        missing = [k for k in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ConfigError(
                "distributed training needs the environment set by torchrun (missing "
                f"{', '.join(missing)}); launch e.g. `torchrun --nproc_per_node=2 -m napari_cxdi train ...`")
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return dist.get_rank(), dist.get_world_size(), f"cuda:{local_rank}"
    return dist.get_rank(), dist.get_world_size(), "cpu"


def shutdown() -> None:
    """Leave the process group (end of a torchrun command); harmless when none was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    """Where collective tensors live: the current CUDA device for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_seed(seed: int | None) -> int:
    """The same seed on every rank: ``seed`` itself, or one drawn on rank 0 when it is None."""
    value = torch.tensor([seed if seed is not None else random.SystemRandom().randrange(2**31)],
                         dtype=torch.int64, device=_comm_device())
    dist.broadcast(value, src=0)
    return int(value.item())


# -- BatchNorm over the global batch ---------------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _AllReduceSum.apply(grad)


def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)


def _global_batchnorm_forward(self: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm whose training-mode statistics are those of the batch of all ranks (differentiable)."""
    if not self.training or dist.get_world_size() == 1:
        return type(self).forward(self, x)

    dims = [0, *range(2, x.ndim)]
    shape = [1, x.shape[1]] + [1] * (x.ndim - 2)
    n_local = x.numel() // x.shape[1]
    count = all_reduce(x.new_tensor([float(n_local)]))
    mean = all_reduce(x.sum(dims)) / count
    centred = x - mean.view(shape)
    var = all_reduce(centred.pow(2).sum(dims)) / count  # biased, two-pass (as BatchNorm)
    y = centred * torch.rsqrt(var.view(shape) + self.eps)
    if self.affine:
        y = y * self.weight.view(shape) + self.bias.view(shape)
    if self.track_running_stats and self.running_mean is not None:
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            n = count.detach()
            self.running_mean.mul_(1 - momentum).add_(mean.detach() * momentum)
            self.running_var.mul_(1 - momentum).add_(var.detach() * (n / (n - 1).clamp_min(1)) * momentum)
    return y


def enable_global_batchnorm(model: torch.nn.Module) -> Callable[[], None]:
    """Make every BatchNorm of ``model`` normalise over the global batch; returns the function that undoes it.

    The modules keep their class, parameters and buffers (checkpoints are unchanged); only their
    ``forward`` is replaced on the instance.
    """
    patched = []
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and "forward" not in m.__dict__:
            m.forward = types.MethodType(_global_batchnorm_forward, m)
            patched.append(m)

    def restore() -> None:
        for m in patched:
            m.__dict__.pop("forward", None)
        patched.clear()

    return restore


class _ModelDDP(DistributedDataParallel):
    """DDP that forwards unknown attributes (``predicted_intensity``, ``config``...) to the wrapped model."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules", {})
            if name == "module" or "module" not in modules:
                raise
            return getattr(modules["module"], name)


# -- training ------------------------------------------------------------------------------------------------
_WEIGHTED_IN_LOSS = frozenset({"loss", "diffraction_loss", "tv"})


class DistributedPID3NetTrainer(PID3NetTrainer):
    """:class:`~.train.PID3NetTrainer` on every rank of an initialised process group (see the module doc).

    The same arguments as the one-process trainer; ``config.batch_size`` is the *global* batch.
    """

    def __init__(self, movie, probe=None, config: PID3NetConfig | None = None, model: PID3Net | None = None,
                 preview_frame: int = 0, optimizer_state: dict | None = None, **kwargs: Any):
        if not (dist.is_available() and dist.is_initialized()):
            raise ConfigError("DistributedPID3NetTrainer needs an initialised process group (see init_process_group)")
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        config = config or (model.config if model is not None else PID3NetConfig())
        config = config.with_(seed=broadcast_seed(config.seed))
        super().__init__(movie, probe, config, model=model, preview_frame=preview_frame,
                         optimizer_state=optimizer_state, **kwargs)
        device_ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else None
        # Buffers (BatchNorm statistics of the global batch) are the same on every rank: no per-step sync.
        import inspect

        sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                else {"broadcast_buffers": False})
        self.ddp = _ModelDDP(self.model, device_ids=device_ids, **sync)
        self._scale = 1.0
        self._restore_batchnorm: Callable[[], None] | None = None

    def shard(self, starts) -> tuple[np.ndarray, float]:
        """This rank's contiguous share of a global batch and the weight of its loss (share x ranks / batch)."""
        starts = np.asarray(starts)
        if len(starts) < self.world_size:
            return starts, 1.0  # too few windows to share: every rank computes the whole batch
        local = np.array_split(starts, self.world_size)[self.rank]
        return local, len(local) * self.world_size / len(starts)

    def loss_terms(self, counts: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = super().loss_terms(counts)
        if self._scale != 1.0:
            terms = {**terms, **{k: terms[k] * self._scale for k in ("loss", "diffraction", "tv")}}
        return terms

    def _optimise(self, counts: torch.Tensor, *args: Any, **kwargs: Any) -> dict[str, float]:
        plain, self.model = self.model, self.ddp  # the step runs through DDP (gradient all-reduce)
        try:
            return super()._optimise(counts, *args, **kwargs)
        finally:
            self.model = plain

    def _train_step(self, starts: np.ndarray) -> tuple[dict[str, float], list[dict]]:
        local, self._scale = self.shard(starts[: self.batch_size])
        values, warnings = super()._train_step(local)
        # the loss terms are already weighted by this rank's share (loss_terms); weight the other
        # per-batch means (R_f, held-out scores...) the same way, then average over the ranks
        values = {k: v if k in _WEIGHTED_IN_LOSS else v * self._scale for k, v in values.items()}
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_comm_device())
        dist.all_reduce(t)
        return dict(zip(keys, (t / self.world_size).tolist())), warnings

    def run(self):
        self._restore_batchnorm = enable_global_batchnorm(self.model)
        try:
            return (yield from super().run())
        finally:
            self._unpatch()

    def _unpatch(self) -> None:
        if self._restore_batchnorm is not None:
            self._restore_batchnorm()
            self._restore_batchnorm = None

    def finish(self) -> PID3Net:
        # Plain BatchNorm again before the (local, identical on every rank) re-estimation of its statistics.
        self._unpatch()
        return super().finish()


def train_distributed(movie, probe=None, variant: str = "PID3Net-PO", checkpoint=None,
                      progress: Callable[[dict], None] | None = None, model=None, overwrite: bool = False,
                      checkpoint_every: int = 0, detector=None, **overrides: Any) -> PID3Net:
    """:func:`napari_cxdi.api.train` on every rank of a torchrun job; rank 0 writes the checkpoint.

    model: a PID3Net or a checkpoint path to resume from (every rank reads it: weights, optimizer state,
    history). checkpoint_every: also write the checkpoint (current weights + optimizer) every N epochs,
    so that a killed job resumes with ``model=checkpoint``. progress: called on rank 0 only.
    """
    from ..api import _detector_from, _movie_and_probe
    from ..io.safe_write import check_output
    from .checkpoint import load_checkpoint, save_checkpoint

    r, _, device = init_process_group(overrides.get("device", "auto"))
    overrides = {**overrides, "device": device}
    if checkpoint is not None:  # checked on rank 0, the same typed error on every rank
        problem = [None]
        if r == 0:
            try:
                check_output(checkpoint, overwrite=overwrite or checkpoint_every > 0 or _same(checkpoint, model),
                             protected=[movie] if isinstance(movie, (str, os.PathLike)) else ())
            except CXDIError as exc:
                # OutputWriteError's message is "path: problem"; re-raised below with the path again, so pass the problem
                problem = [(type(exc).__name__, getattr(exc, "problem", None) or str(exc))]
        dist.broadcast_object_list(problem, src=0)
        if problem[0] is not None:
            raise OutputWriteError(checkpoint, problem[0][1]) if problem[0][0] == "OutputWriteError" \
                else OutputExistsError(problem[0][1])
    data, probe_np, _, _ = _movie_and_probe(movie, probe, _detector_from(detector, overrides))
    history: list[dict] = []
    optimizer_state = None
    if isinstance(model, (str, os.PathLike)):
        model, payload = load_checkpoint(model, device=device)
        history = list(payload.get("history", []))
        optimizer_state = payload.get("optimizer")
    cfg = model.config.with_(**overrides) if model is not None else PID3NetConfig.variant(variant, **overrides)
    trainer = DistributedPID3NetTrainer(data, probe_np, cfg, model=model, optimizer_state=optimizer_state)
    for event in trainer.run():
        if r == 0 and progress is not None:
            progress(event)
        if (checkpoint is not None and checkpoint_every and event.get("event") == "epoch"
                and (event["epoch"] + 1) % checkpoint_every == 0 and r == 0):
            save_checkpoint(checkpoint, trainer.model, history + trainer.history,
                            optimizer_state=trainer.optimizer.state_dict(), overwrite=True,
                            extra={"world_size": trainer.world_size, "partial": True})
    if checkpoint is not None and r == 0:
        save_checkpoint(checkpoint, trainer.model, history + trainer.history,
                        optimizer_state=trainer.optimizer.state_dict(), overwrite=True,
                        extra={"world_size": trainer.world_size})
    dist.barrier()
    return trainer.model


def _same(a, b) -> bool:
    """True if the checkpoint to write is the one resumed from (then replacing it is what is asked)."""
    if b is None or not isinstance(b, (str, os.PathLike)):
        return False
    from ..io.safe_write import is_same_file

    return os.path.exists(a) and is_same_file(a, b)


# -- inference -----------------------------------------------------------------------------------------------
def shard_ranges(n_items: int, world: int) -> list[range]:
    """Contiguous, nearly equal ranges of ``n_items`` for ``world`` ranks (in order)."""
    edges = np.linspace(0, n_items, world + 1).round().astype(int)
    return [range(edges[i], edges[i + 1]) for i in range(world)]


def iter_sharded_reconstruct(model: PID3Net, movie, batch_size: int = 8, stride: int | None = None
                             ) -> Generator[dict[str, Any], None, np.ndarray | None]:
    """Every rank reconstructs its frame range; rank 0 returns objects [N, H, W] complex64, the others None.

    The windows and their batches are those of :func:`~.inference.iter_reconstruct` (same ``batch_size``
    and ``stride``); rank 0 averages overlapping windows in the same order.
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise ConfigError("sharded inference needs an initialised process group (see init_process_group)")
    r, world = dist.get_rank(), dist.get_world_size()
    from .inference import model_windows

    windows = model_windows(model, movie)
    T = model.config.frames
    n, h, w = windows.n_frames, *windows.frame_shape
    starts = inference_starts(n, T, stride or T)
    chunks = [starts[i : i + batch_size] for i in range(0, len(starts), batch_size)]
    ranges = shard_ranges(len(chunks), world)
    model.eval()
    local = []
    with torch.no_grad():
        for j, c in enumerate(ranges[r]):
            local.append(model(windows.batch(chunks[c])).cpu())  # host memory: 1/world of the windows
            yield {"event": "progress", "done": j + 1, "total": len(ranges[r]), "rank": r}
    comm = _comm_device()
    if r != 0:
        for obj in local:
            dist.send(torch.view_as_real(obj).contiguous().to(comm), dst=0)
        dist.barrier()
        return None
    out = np.zeros((n, h, w), np.complex64)
    counts = np.zeros(n, np.int32)
    for src in range(world):
        for k, c in enumerate(ranges[src]):
            if src == 0:
                obj = local[k].numpy()
            else:
                buf = torch.empty((len(chunks[c]), T, h, w, 2), dtype=torch.float32, device=comm)
                dist.recv(buf, src=src)
                obj = torch.view_as_complex(buf).cpu().numpy()
            accumulate_windows(out, counts, chunks[c], obj, T)
    dist.barrier()
    assert (counts > 0).all()
    return out


def sharded_reconstruct(model: PID3Net, movie, batch_size: int = 8, stride: int | None = None) -> np.ndarray | None:
    """Blocking form of :func:`iter_sharded_reconstruct`."""
    return drain(iter_sharded_reconstruct(model, movie, batch_size, stride))


# -- a whole reconstruction ----------------------------------------------------------------------------------
def reconstruct_distributed(movie, probe=None, method: str = "PID3Net-PO", model=None, train: bool = True,
                            inference_stride: int | None = None, progress: Callable[[dict], None] | None = None,
                            evaluate_metrics: bool = True, truth=None, **overrides: Any):
    """:func:`napari_cxdi.api.reconstruct` of a PID3Net method over the ranks of a torchrun job.

    DDP training (unless ``model`` is given and ``train`` is False), then sharded inference; rank 0
    evaluates and returns the :class:`~napari_cxdi.api.Reconstruction`, the other ranks return None.
    """
    import time

    from ..api import Reconstruction, _detector_from, _movie_and_probe, evaluate
    from .checkpoint import load_checkpoint
    from .config import VARIANTS

    if method not in VARIANTS and not isinstance(model, (PID3Net, str, os.PathLike)):
        raise ConfigError(f"{method} runs on one process; the distributed reconstruction is for PID3Net "
                          f"({', '.join(VARIANTS)}) - use napari-cxdi batch to spread many movies instead")
    detector = _detector_from(overrides.pop("detector", None), overrides)
    r, _, device = init_process_group(overrides.get("device", "auto"))
    overrides = {**overrides, "device": device}
    data, probe_np, source, meta = _movie_and_probe(movie, probe, detector)
    history: list[dict] = []
    optimizer_state = None
    if isinstance(model, (str, os.PathLike)):
        model, payload = load_checkpoint(model, device=device)
        history = list(payload.get("history", []))
        optimizer_state = payload.get("optimizer") if train else None
    timings: dict[str, float] = {}
    report = progress if r == 0 else None
    if model is None or train:
        cfg = model.config.with_(**overrides) if model is not None else PID3NetConfig.variant(method, **overrides)
        trainer = DistributedPID3NetTrainer(data, probe_np, cfg, model=model, optimizer_state=optimizer_state)
        t0 = time.perf_counter()
        for event in trainer.run():
            if report:
                report({"stage": "train", **event})
        timings["training_s"] = time.perf_counter() - t0
        model, history = trainer.model, history + trainer.history
    t0 = time.perf_counter()
    objects = drain(iter_sharded_reconstruct(model, data, stride=inference_stride),
                    (lambda e: report({"stage": "inference", **e})) if report else None)
    timings["inference_s"] = time.perf_counter() - t0
    if r != 0:
        return None
    dx = meta.get("pixel_size_nm")
    result = Reconstruction(objects=objects, method=model.config.name, pixel_size_nm=dx,
                            config={"method": model.config.name, **model.config.to_dict(), "world_size": world_size()},
                            history=history, timings=timings, model=model, probe=probe_np,
                            source=str(source.path) if source is not None and source.path else None)
    if evaluate_metrics:
        if report:
            report({"stage": "evaluate", "event": "progress"})
        result.metrics = evaluate(objects, data, probe_np, dx, truth)
    return result

"""A terminal progress bar (tqdm) fed by the progress events of the training/reconstruction generators."""

from __future__ import annotations

import sys
from typing import Any


class ProgressPrinter:
    """Callable that turns ``{"stage", "event", ...}`` dicts into tqdm bars, one bar per stage."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar = None
        self.stage = None

    def _bar(self, stage: str, total: int | None, unit: str):
        from tqdm import tqdm

        if self.bar is not None and self.stage == stage:
            return self.bar
        self.close()
        self.stage = stage
        self.bar = tqdm(total=total, desc=stage, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=self.quiet)
        return self.bar

    def __call__(self, event: dict[str, Any]) -> None:
        stage = event.get("stage", "")
        kind = event.get("event")
        if kind == "warning":
            print(f"warning: {event['message']}", file=sys.stderr)
        elif stage == "train" and kind == "start":
            self._bar("train", event["total_steps"], "step").set_postfix_str(f"{event['variant']} on {event['device']}")
        elif stage == "train" and kind == "step":
            bar = self._bar("train", event["total_steps"], "step")
            bar.update(event["step"] - bar.n)
            extra = {"heldout": f"{event['heldout_nll']:.4g}"} if "heldout_nll" in event else {}
            bar.set_postfix(epoch=event["epoch"] + 1, loss=f"{event['loss']:.4g}", Rf=f"{event['rf']:.3f}", **extra)
        elif stage == "train" and kind == "epoch" and "heldout_nll" in event and self.bar is not None:
            best = event.get("best_epoch")
            self.bar.set_postfix(epoch=event["epoch"] + 1, loss=f"{event['loss']:.4g}", Rf=f"{event['rf']:.3f}",
                                 floor=f"{event['rf_floor']:.3f}", heldout=f"{event['heldout_nll']:.4g}",
                                 best=(best + 1) if best is not None else "-")
        elif stage == "validate" and kind == "progress":
            bar = self._bar("validate", event["total"], "frame")
            bar.update(event["done"] - bar.n)
        elif stage == "inference" and kind == "progress":
            bar = self._bar("inference", event["total"], "window")
            bar.update(event["done"] - bar.n)
        elif stage == "iterative":
            bar = self._bar("iterative", event["total_frames"], "frame")
            bar.update(event["frames_done"] - bar.n)
            extra = {"heldout": f"{event['heldout_nll']:.4g}"} if "heldout_nll" in event else {}
            bar.set_postfix(iteration=event.get("iteration", event.get("iterations")), Rf=f"{event['rf']:.3f}", **extra)
        elif stage == "evaluate":
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

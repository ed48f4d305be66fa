"""Range checks of configuration fields: every number finite and in its range, the field named.

Used by the configuration dataclasses (``validate`` / ``__post_init__``) so that a bad value is a
:class:`~napari_cxdi.errors.ConfigError` naming the field at the boundary, not a NaN after minutes
of training.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping

from .errors import ConfigError

# rule: (low, high, low_inclusive, high_inclusive); None = unbounded
Rule = tuple[float | None, float | None, bool, bool]

POSITIVE: Rule = (0, None, False, True)
NON_NEGATIVE: Rule = (0, None, True, True)
AT_LEAST_ONE: Rule = (1, None, True, True)
UNIT_INTERVAL: Rule = (0, 1, True, True)


def check_number(value: Any, name: str, rule: Rule | None = None, *, where: str = "", integer: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite real number within ``rule``."""
    label = f"{where}: {name}" if where else name
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{label} must be a number, got {value!r}")
    if integer and not float(value).is_integer():
        raise ConfigError(f"{label} must be a whole number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{label} must be finite, got {value!r}")
    if rule is None:
        return
    low, high, low_inc, high_inc = rule
    ok = True
    if low is not None:
        ok &= value >= low if low_inc else value > low
    if high is not None:
        ok &= value <= high if high_inc else value < high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = f"{'[' if low_inc and low is not None else '('}{lo}, {hi}{']' if high_inc and high is not None else ')'}"
        raise ConfigError(f"{label} must be in {interval}, got {value!r}")


def check_fields(config: Any, rules: Mapping[str, Rule | None] | None = None, where: str | None = None) -> None:
    """Check every numeric field of a dataclass: finite always; in range where ``rules`` names it.

    ``None`` values (optional settings) are skipped; booleans and strings are not numbers here.
    Integer-annotated fields must hold whole numbers.
    """
    rules = dict(rules or {})
    where = where if where is not None else type(config).__name__
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None or isinstance(value, (bool, str, bytes)):
            continue
        if isinstance(value, numbers.Number):
            if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
                raise ConfigError(f"{where}: {f.name} must be a real number, got {value!r}")
            ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            integer = ann.split("|")[0].strip() == "int"
            check_number(value, f.name, rules.get(f.name), where=where, integer=integer)
        elif isinstance(value, (tuple, list)) and value and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
            for v in value:
                check_number(v, f.name, rules.get(f.name), where=where)

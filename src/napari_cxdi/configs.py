"""The one protocol of every configuration dataclass: ``with_``, ``to_dict``, ``from_dict`` (and ``validate``).

Mix :class:`ConfigMethods` into a (frozen) dataclass instead of writing the three methods again; a class
whose stored form needs more (nested configs, legacy keys) overrides ``from_dict`` and starts from
:meth:`ConfigMethods.known`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C", bound="ConfigMethods")


class ConfigMethods:
    """``with_`` (a changed copy), ``to_dict`` (plain dict) and ``from_dict`` (unknown keys ignored)."""

    def with_(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def known(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The items of ``data`` that name a field of this config (files from other versions may hold more)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return {k: v for k, v in dict(data).items() if k in names}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        return cls(**cls.known(data))

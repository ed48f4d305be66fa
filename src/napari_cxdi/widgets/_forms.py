"""Form <-> config mapping, in one place: every dock's fields are bound by name to Qt inputs, read into
(frozen) config objects and written back from them, so settings can be saved to JSON and restored.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QAbstractButton, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox, QWidget

from ..errors import ConfigError, InputFileError


class FormBinding:
    """Named fields bound to Qt inputs. A spin box with a special value text reads as ``None`` at its minimum
    (e.g. "auto"); a combo box can map its texts to values (``choices={"text": value}``)."""

    def __init__(self, **widgets: QWidget):
        self.widgets: dict[str, QWidget] = dict(widgets)
        self.choices: dict[str, dict[str, Any]] = {}

    def bind(self, name: str, widget: QWidget, choices: dict[str, Any] | None = None) -> QWidget:
        self.widgets[name] = widget
        if choices:
            self.choices[name] = dict(choices)
        return widget

    def get(self, name: str) -> Any:
        w = self.widgets[name]
        if isinstance(w, (QSpinBox, QDoubleSpinBox)):
            if w.specialValueText() and w.value() == w.minimum():
                return None
            return int(w.value()) if isinstance(w, QSpinBox) else float(w.value())
        if isinstance(w, QComboBox):
            text = w.currentText()
            return self.choices.get(name, {}).get(text, text)
        if isinstance(w, QAbstractButton):
            return bool(w.isChecked())
        if isinstance(w, QLineEdit):
            return w.text().strip()
        raise TypeError(f"unsupported input for {name!r}: {type(w).__name__}")

    def set(self, name: str, value: Any) -> None:
        w = self.widgets[name]
        if isinstance(w, (QSpinBox, QDoubleSpinBox)):
            w.setValue(w.minimum() if value is None else value)
        elif isinstance(w, QComboBox):
            texts = {v: k for k, v in self.choices.get(name, {}).items()}
            text = texts.get(value, value)
            if w.findText(str(text)) < 0:
                raise ConfigError(f"{name}: {value!r} is not one of {[w.itemText(i) for i in range(w.count())]}")
            w.setCurrentText(str(text))
        elif isinstance(w, QAbstractButton):
            w.setChecked(bool(value))
        elif isinstance(w, QLineEdit):
            w.setText("" if value is None else str(value))
        else:
            raise TypeError(f"unsupported input for {name!r}: {type(w).__name__}")

    def values(self, prefix: str = "") -> dict[str, Any]:
        """Values of the fields named ``prefix.field`` (without the prefix), or of all fields without a dot."""
        out = {}
        for name in self.widgets:
            if prefix and name.startswith(prefix + "."):
                out[name[len(prefix) + 1:]] = self.get(name)
            elif not prefix and "." not in name:
                out[name] = self.get(name)
        return out

    def to_config(self, config, prefix: str = ""):
        """``config`` with the bound fields replaced by the form's values (nested dataclasses by prefix)."""
        changes = {}
        for f in fields(config):
            sub = getattr(config, f.name)
            key = f"{prefix}.{f.name}" if prefix else f.name
            if is_dataclass(sub) and not isinstance(sub, type):
                changes[f.name] = self.to_config(sub, key)
            elif key in self.widgets:
                changes[f.name] = self.get(key)
        return replace(config, **changes)

    def from_config(self, config, prefix: str = "") -> None:
        """Write a config's values into the bound inputs."""
        for f in fields(config):
            value = getattr(config, f.name)
            key = f"{prefix}.{f.name}" if prefix else f.name
            if is_dataclass(value) and not isinstance(value, type):
                self.from_config(value, key)
            elif key in self.widgets:
                self.set(key, value)


def save_settings(path: str | Path, dock: str, settings: dict[str, Any], overwrite: bool = True) -> Path:
    """Write a dock's settings as JSON through the one write path (with provenance)."""
    from ..io.safe_write import write_json
    from ..provenance import provenance

    return write_json(path, provenance({"dock": dock, "settings": settings}, {}), overwrite=overwrite)


def load_settings(path: str | Path, dock: str) -> dict[str, Any]:
    import json

    p = Path(path)
    try:
        payload = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(p, f"cannot read settings ({exc}); choose a settings JSON written by this dock") from exc
    config = payload.get("config", payload)
    if config.get("dock") != dock or "settings" not in config:
        raise InputFileError(p, f"not settings of the {dock} dock; choose a file saved from it")
    return config["settings"]

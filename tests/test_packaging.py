"""The plugin is installable: npe2 manifest valid, wheel carries the manifest, sample data and models."""

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_validates_with_imports():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-cxdi")
    manifest.validate_imports()
    assert {c.key for c in manifest.contributions.sample_data} >= {"aunp", "test_chart", "speckle_ndisk"}
    assert len(manifest.contributions.widgets) >= 4
    assert "napari/layers/track" in manifest.contributions.menus
    assert manifest.contributions.readers


def test_core_packages_do_not_import_qt_or_napari():
    code = (
        "import sys, napari_cxdi.physics, napari_cxdi.simulate, napari_cxdi.io, napari_cxdi.metrics, napari_cxdi.cli;"
        "import napari_cxdi.api, napari_cxdi.pid3net, napari_cxdi.recon, napari_cxdi.scann, napari_cxdi.speckle;"
        "import napari_cxdi.tracking, napari_cxdi.molecules;"
        "import napari_cxdi.speckle.resnet, napari_cxdi.speckle.train, napari_cxdi.speckle.saliency;"
        "from napari_cxdi.cli import build_parser; build_parser();"
        "import napari_cxdi._napari.reader, napari_cxdi._napari.sample_data;"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('napari','qtpy','PyQt5','PyQt6','PySide2','PySide6')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_wheel_installs_and_loads_sample_data_from_site_packages(tmp_path):
    wheel_dir = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(ROOT)],
        check=True,
    )
    wheel = next(wheel_dir.glob("napari_cxdi-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "napari_cxdi/napari.yaml" in names
    shipped = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "sample_data").rglob("*") if p.is_file())
    assert shipped and all(f"napari_cxdi/{p}" in names for p in shipped)
    # a clean venv (reusing this interpreter's dependencies) with the wheel installed
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], check=True)
    code = (
        "import napari_cxdi, numpy as np; from napari_cxdi.resources import sample_data_dir, sample_file;"
        "d = sample_data_dir(); print(napari_cxdi.__file__); print(d);"
        "p = np.load(sample_file('probes', 'aunp_probe_128.npy')); print(p.shape)"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert str(env_dir) in lines[0] and str(env_dir) in lines[1]  # loaded from the wheel, not the checkout
    assert lines[2:] == ["(4,", "128,", "128)"]

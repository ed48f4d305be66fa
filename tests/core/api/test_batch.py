"""Batch over many movies on dask.distributed: identical to the serial run, failures stay local, resumable."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from napari_cxdi.batch import BatchConfig, batch, expand_inputs, stored_hash
from napari_cxdi.errors import ConfigError

# A tiny PID3Net: 6 frames of 32x32, one epoch.
OPTIONS = dict(epochs=1, width=4, frames=3, refine_steps=1, batch_size=2, seed=3, device="cpu")


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    from napari_cxdi.io import write_cxi
    from napari_cxdi.simulate import simulate_aunp

    folder = tmp_path_factory.mktemp("scans")
    for i in range(5):
        m = simulate_aunp(n_frames=6, size=32, seed=10 + i)
        meta = {k: v for k, v in m.metadata.items() if k != "config"}
        write_cxi(folder / f"scan_{i}.cxi", counts=m.counts, probe=m.probe, metadata=meta,
                  ground_truth={"objects": m.objects})
    (folder / "scan_5.cxi").write_bytes(b"\x89HDF\r\n\x1a\n" + b"not really HDF5" * 50)  # corrupt
    return folder


def _objects(path):
    with h5py.File(path, "r") as f:
        return f["entry_1/image_1/data"][()]


@pytest.fixture(scope="module")
def serial(scans, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    return batch(str(scans / "*.cxi"), out, workers=0, **OPTIONS)


def test_serial_batch_reports_each_scan_and_the_corrupt_one_alone(serial, scans):
    table = serial.table.set_index("scan")
    assert list(table.index) == [f"scan_{i}" for i in range(6)]
    assert (table.loc[[f"scan_{i}" for i in range(5)], "status"] == "done").all()
    assert table.loc["scan_5", "status"] == "failed"
    assert table.loc["scan_5", "error_type"] == "InputFileError"
    assert "scan_5.cxi" in table.loc["scan_5", "error"]
    # R_f of a one-epoch PID3Net is poor but finite and below 1; the simulations carry ground truth -> SSIM
    good = table.loc[[f"scan_{i}" for i in range(5)]]
    assert np.all((good["rf"] > 0) & (good["rf"] < 1))
    # phase SSIM exactly where a particle is under the probe in some frame (else undefined: NaN)
    from napari_cxdi.metrics import structured_frames
    from napari_cxdi.physics.probe import support_mask
    from napari_cxdi.simulate import simulate_aunp

    sims = [simulate_aunp(n_frames=6, size=32, seed=10 + i) for i in range(5)]
    scored = [structured_frames(np.angle(m.objects), support_mask(m.probe, threshold=0.2, dilate_px=0)).any() for m in sims]
    assert list(good["phase_ssim"].notna()) == scored and any(scored)
    # the summary tables exist and hold the same rows
    csv = pd.read_csv(serial.summary_csv, comment="#")
    assert list(csv["status"]) == list(serial.table["status"])
    assert "scan_5" in serial.summary_html.read_text() and "InputFileError" in serial.summary_html.read_text()
    # the output's provenance holds the config hash
    for i in range(5):
        out = serial.outdir / f"scan_{i}_pid3net_po.cxi"
        assert stored_hash(out) == BatchConfig(options=OPTIONS).config_hash(scans / f"scan_{i}.cxi")


def test_local_cluster_equals_serial_bit_for_bit_and_rerun_skips(serial, scans, tmp_path):
    events = []
    cluster = batch(str(scans / "*.cxi"), tmp_path, workers=2, dashboard_address=":0", progress=events.append,
                    **OPTIONS)
    assert events[0]["event"] == "start" and events[0]["dashboard_link"].startswith("http")
    assert events[0]["workers"] == 2
    assert list(cluster.table["status"]) == list(serial.table["status"])
    assert cluster.table.loc[5, "error_type"] == "InputFileError"
    assert len(set(cluster.table.loc[:4, "worker"])) == 2  # both workers took part
    for i in range(5):
        name = f"scan_{i}_pid3net_po.cxi"
        assert np.array_equal(_objects(cluster.outdir / name), _objects(serial.outdir / name))
    for column in ("rf", "prtf_resolution_nm", "phase_ssim", "n_detections"):
        np.testing.assert_array_equal(cluster.table[column].to_numpy(float), serial.table[column].to_numpy(float))
    # a rerun skips the finished scans (reporting their stored metrics) and retries the failed one only
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.cxi")}
    again = batch(str(scans / "*.cxi"), tmp_path, workers=0, **OPTIONS)
    assert list(again.table["status"]) == ["skipped"] * 5 + ["failed"]
    np.testing.assert_array_equal(again.table["rf"].to_numpy(float)[:5], serial.table["rf"].to_numpy(float)[:5])
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.cxi")} == mtimes


def test_other_config_is_refused_per_scan_unless_overwrite(serial, scans):
    other = batch([scans / "scan_0.cxi"], serial.outdir, workers=0, write_summary=False, **{**OPTIONS, "seed": 4})
    row = other.rows[0]
    assert row["status"] == "failed" and row["error_type"] == "OutputExistsError" and "--overwrite" in row["error"]


def test_inputs_are_checked_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="no file matches"):
        expand_inputs(str(tmp_path / "*.h5"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.h5").write_bytes(b"")
    (tmp_path / "b" / "x.h5").write_bytes(b"")
    with pytest.raises(ConfigError, match="same name"):
        expand_inputs(str(tmp_path / "**" / "*.h5"))
    with pytest.raises(ConfigError, match="unknown method"):
        batch(str(tmp_path / "a" / "*.h5"), tmp_path / "out", workers=0, method="magic")
    with pytest.raises(ConfigError, match="unknown option"):
        batch(str(tmp_path / "a" / "*.h5"), tmp_path / "out", workers=0, epochz=3)


def test_config_hash_changes_with_settings_and_input(tmp_path):
    movie = tmp_path / "m.h5"
    movie.write_bytes(b"12345")
    a = BatchConfig(options={"epochs": 1})
    assert a.config_hash(movie) == BatchConfig(options={"epochs": 1}).config_hash(movie)
    assert a.config_hash(movie) != BatchConfig(options={"epochs": 2}).config_hash(movie)
    assert a.config_hash(movie) != a.with_(method="mf-PIE").config_hash(movie)
    movie.write_bytes(b"123456")
    assert a.config_hash(movie) != BatchConfig(options={"epochs": 1}).config_hash(tmp_path / "x.h5")
    assert BatchConfig.from_dict(a.to_dict()) == a


def test_cli_batch_skips_finished_scans_and_exits_1_on_a_failure(serial, scans, capsys):
    from napari_cxdi.cli import main

    argv = ["batch", str(scans / "*.cxi"), "-o", str(serial.outdir), "--workers", "0", "--epochs", "1", "--width", "4",
            "--frames", "3", "--refine-steps", "1", "--batch-size", "2", "--seed", "3", "--device", "cpu"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "0 done, 5 skipped (already finished), 1 failed" in out
    assert "scan_5.cxi: InputFileError" in err
    assert main(["batch", str(scans / "nothing*.h5"), "-o", str(serial.outdir), "--workers", "0"]) == 2
    assert "no file matches" in capsys.readouterr().err


def _visible_devices():
    import os

    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_gpu_workers_are_pinned_one_per_device():
    """The local GPU cluster: one single-threaded worker per device index, CUDA_VISIBLE_DEVICES set to it and a
    GPU=1 resource (checked with device indices only: no GPU is touched)."""
    from distributed import Client

    from napari_cxdi.batch import local_cluster

    with local_cluster(gpus=[0, 1], dashboard_address=":0") as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        pinned = client.run(_visible_devices)
        info = client.scheduler_info()["workers"]
    assert sorted(pinned.values()) == ["0", "1"]
    assert all(w["resources"] == {"GPU": 1} and w["nthreads"] == 1 for w in info.values())


def test_unreachable_scheduler_is_a_typed_error(scans, tmp_path):
    import dask

    from napari_cxdi.batch import BatchError

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(BatchError, match="tcp://127.0.0.1:9"):
            batch(str(scans / "*.cxi"), tmp_path, scheduler="tcp://127.0.0.1:9", **OPTIONS)

"""The benchmark script runs and reports its figures (figures themselves are written in the bundle docs)."""

from __future__ import annotations

from monai_unets.scripts.benchmark import benchmark_sliding_window


def test_reports_windows_time_and_memory():
    result = benchmark_sliding_window("egeunet3d_pancreas_ct", shape=(100, 96, 40), overlap=0.5)
    assert result["network"] == "EGEUNet"
    assert result["output_shape"] == [1, 3, 100, 96, 40]
    # 96-voxel windows every 48 voxels: 2 along the first axis, 1 along the others
    assert result["windows"] == 2

"""The benchmark suite runs and reports; its figures are never asserted (figures go into the docs)."""

from __future__ import annotations

import json

import pytest
import torch
from monai_unets.networks import EGEUNet, OnnxRuntimeNetwork
from monai_unets.scripts import benchmark
from monai_unets.scripts.benchmark import BenchmarkOptions, BenchmarkSection, benchmark_sliding_window, run_suite
from monai_unets.scripts.cli import main


def test_reports_windows_time_and_memory():
    result = benchmark_sliding_window("egeunet3d_pancreas_ct", shape=(100, 96, 40), overlap=0.5)
    assert result["network"] == "EGEUNet"
    assert result["output_shape"] == [1, 3, 100, 96, 40]
    # 96-voxel windows every 48 voxels: 2 along the first axis, 1 along the others
    assert result["windows"] == 2
    assert result["amp"] is False  # float16 autocast only on a GPU
    assert result["bf16"] is False  # the bundle's bf16: off for EGE-UNet


def test_the_sliding_window_runs_in_the_bundles_cpu_autocast(monkeypatch):
    # the Attention U-Net bundle runs in bfloat16 on a CPU with AMX tiles: its figure had been float32's
    entered = []
    real_autocast = torch.autocast

    def recording_autocast(device_type, *args, **kwargs):
        entered.append((device_type, kwargs.get("dtype"), kwargs.get("enabled", True)))
        return real_autocast(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", recording_autocast)
    result = benchmark_sliding_window("egeunet3d_pancreas_ct", shape=(96, 96, 40), bf16=True)
    assert result["bf16"] is True and ("cpu", torch.bfloat16, True) in entered
    assert result["output_shape"] == [1, 3, 96, 96, 40]


def test_the_machine_description_names_the_usable_cpus_and_instruction_set(monkeypatch):
    # what the figures depend on beyond the model name: `taskset -c 0` had been reported as all logical CPUs
    if hasattr(benchmark.os, "sched_getaffinity"):
        monkeypatch.setattr(benchmark.os, "sched_getaffinity", lambda pid: {0})
    machine = benchmark.machine_description()
    assert machine["usable_cpus"] == (1 if hasattr(benchmark.os, "sched_getaffinity") else machine["logical_cpus"])
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(machine["cpu_bf16_tiles"], bool)


def test_quick_suite_writes_markdown_and_json(tmp_path):
    threads = torch.get_num_threads()
    try:
        status = main(
            # the 2D network only: the 3D one's paths (about 35 s more) are checked in tests/networks/test_egeunet.py
            ["benchmark", "--quick", "--threads", "1", "--sections", "networks", "runtimes", "--networks", "EGEUNet 2D"]
            # glibc's own settings: reusing freed blocks is process-wide, and this is the test process
            + ["--default-allocator", "--output-dir", str(tmp_path)]
        )
    finally:
        torch.set_num_threads(threads)
    assert status == 0
    report = json.loads((tmp_path / "benchmark.json").read_text())
    machine = report["machine"]
    assert {"cpu", "torch_threads", "load_average_1_5_15min", "load_average_after", "torch", "monai"} <= set(machine)
    assert machine["freed_memory_reused"] is False
    networks, runtimes = report["sections"]
    # the 2D EGE-UNet of the model table, beside MONAI's three networks
    assert [(r["config"], r["input"]) for r in networks["rows"]] == [("2D, 3 -> 1", "1x3x32x32")]
    for row in networks["rows"]:
        assert row["parameters"] == 53_374 and row["GMACs"] > 0
        # every figure measured (their values are not asserted: shared machines are noisy)
        timed = [
            "latency_ms",
            "train_step_ms",
            "MONAI UNet / ours (inference)",
            "MONAI AttentionUnet / ours (training)",
        ]
        assert all(row[key] is not None for key in timed), row
    paths = {(r["config"], r["runtime"]): r for r in runtimes["rows"]}
    for config in ("2D, 3 -> 1",):
        for name in ("eager", "eager, inference mode", "channels_last", "TorchScript (frozen)", "ONNX Runtime"):
            row = paths[(config, name)]
            assert "error" not in row, row
            # every path computes the same network, also after the mixed-precision path ran the same module
            assert row["max abs diff / max(1, max abs eager)"] <= 1e-4, row
        assert "error" not in paths[(config, "AMP bfloat16")]
    markdown = (tmp_path / "benchmark.md").read_text()
    assert "## Networks beside MONAI's" in markdown and "## Runtime paths" in markdown
    assert "| ONNX Runtime |" in markdown


def test_registered_sections_plug_in_and_missing_modules_are_skipped(monkeypatch):
    def tiny_section(options):
        return BenchmarkSection("Tiny", [{"quick": options.quick}])

    monkeypatch.setattr(benchmark, "tiny_section", tiny_section, raising=False)
    monkeypatch.setitem(benchmark.SECTIONS, "tiny", ".benchmark:tiny_section")
    monkeypatch.setitem(benchmark.SECTIONS, "absent", ".benchmark_not_installed:section")
    report = run_suite(["tiny", "absent"], BenchmarkOptions(quick=True))
    assert report["sections"][0]["rows"] == [{"quick": True}]
    assert report["sections"][1] == {"name": "absent", "skipped": "its module is not installed"}


def test_every_registered_section_loads():
    # `monai-unets benchmark` without --sections runs them all: one that does not resolve ends the whole run
    for name, spec in benchmark.SECTIONS.items():
        assert callable(benchmark._load_section(spec)), name


def test_quick_readers_section_compares_every_reader():
    report = run_suite(["readers"], BenchmarkOptions(quick=True))
    (section,) = report["sections"]
    rows = {(row["input"].split()[0], row["reader"]): row for row in section["rows"]}
    readers = ("simpleitk", "medical_image_reader", "monai_itk_reader")
    assert set(rows) == {(kind, reader) for kind in ("dicom", "nifti") for reader in readers}
    assert all(rows[(kind, "simpleitk")]["ratio_to_simpleitk"] == 1.0 for kind in ("dicom", "nifti"))
    assert all(row["median_s"] > 0 for row in rows.values())


def test_bundles_go_to_the_sections_that_can_time_them(tmp_path, monkeypatch):
    import monai_unets.scripts.benchmark_pipeline as pipeline

    timed = []
    monkeypatch.setattr(pipeline, "benchmark_training", lambda bundle, **_: timed.append(bundle) or {"bundle": bundle})
    monkeypatch.setattr(pipeline, "benchmark_inference", lambda bundle, **_: {"bundle": bundle})
    # a 2D bundle has no sliding window: the section says so instead of failing the suite
    report = run_suite(["sliding-window"], BenchmarkOptions(quick=True, extra={"bundles": ["unetv2_polyp"]}))
    assert report["sections"][0]["rows"] == [] and report["sections"][0]["notes"] == ["no 3D bundle among --bundle"]
    # by default the pipeline times the 3D EGE-UNet end to end and both EGE-UNet bundles' training
    (section,) = run_suite(["pipeline"], BenchmarkOptions(quick=True))["sections"]
    assert [(row["section"], row["bundle"]) for row in section["rows"]] == [
        ("3D inference", "egeunet3d_pancreas_ct"),
        ("training epoch", "egeunet3d_pancreas_ct"),
        ("training epoch", "egeunet_skin_lesion"),
    ]
    # `--bundle` with a 2D bundle alone (no --sections) times its training epoch
    timed.clear()
    command = ["benchmark", "--quick", "--bundle", "egeunet_skin_lesion", "--default-allocator"]
    assert main(command + ["--output-dir", str(tmp_path)]) == 0
    assert timed == ["egeunet_skin_lesion"]
    (section,) = json.loads((tmp_path / "benchmark.json").read_text())["sections"]
    assert section["name"] == "pipeline" and section["rows"] == [
        {"section": "training epoch", "bundle": "egeunet_skin_lesion"}
    ]


@pytest.mark.slow
def test_the_onnx_path_times_the_bundles_export_image_by_image(tmp_path):
    # the bundles export for one image with MONAI's converter and run a batch image by image; a batch-8 export by
    # another exporter had been timed instead (1.28x the time per image of the bundles' path for EGE-UNet)
    pytest.importorskip("onnxruntime")
    net = EGEUNet(2, 3, 1).eval()
    x = torch.rand(2, 3, 64, 64)
    benchmark._export_onnx(net, x, tmp_path / "model.onnx")
    model = OnnxRuntimeNetwork(tmp_path / "model.onnx", num_threads=1)
    assert model.input_shape == [1, 3, 64, 64]
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), atol=1e-4, rtol=1e-4)


def test_a_failing_section_is_reported_and_the_others_kept(tmp_path, monkeypatch, capsys):
    # one failing bundle run had ended the whole suite with a traceback, losing the sections before it
    def failing_section(options):
        raise RuntimeError("egeunet3d_pancreas_ct's inference failed (exit status 1): ERROR: something")

    monkeypatch.setattr(benchmark, "failing_section", failing_section, raising=False)
    monkeypatch.setitem(benchmark.SECTIONS, "failing", ".benchmark:failing_section")
    command = ["benchmark", "--quick", "--sections", "failing", "readers", "--default-allocator"]
    assert main(command + ["--output-dir", str(tmp_path)]) == 1
    failed, readers = json.loads((tmp_path / "benchmark.json").read_text())["sections"]
    assert failed == {
        "name": "failing",
        "failed": "RuntimeError: egeunet3d_pancreas_ct's inference failed (exit status 1): ERROR: something",
    }
    assert readers["rows"]
    assert "Failed: RuntimeError: egeunet3d_pancreas_ct's inference failed" in (tmp_path / "benchmark.md").read_text()


@pytest.mark.parametrize(
    "option",
    [
        ["--threads", "0"],
        ["--batch-sizes", "0"],
        ["--repeats", "0"],
        ["--device", "foo"],
        ["--stitch-device", "foo"],
        ["--shape", "0", "0", "0"],
        ["--sw-batch-size", "0"],
    ],
)
def test_values_out_of_range_are_usage_errors(option, capsys):
    # each had ended in a traceback, or been timed as given (an empty volume) or quietly changed
    with pytest.raises(SystemExit) as raised:
        main(["benchmark", *option])
    assert raised.value.code == 2
    assert f"argument {option[0]}:" in capsys.readouterr().err


def test_the_output_folder_is_checked_before_any_work(tmp_path, monkeypatch):
    # an unwritable folder had been found after the whole suite ran, its figures then lost
    monkeypatch.setattr(benchmark, "run_suite", lambda *_: pytest.fail("the suite ran"))
    (tmp_path / "file").write_text("")
    assert main(["benchmark", "--quick", "--output-dir", str(tmp_path / "file" / "out")]) != 0
    with pytest.raises(SystemExit, match="--shape takes the 3 sizes of a volume, got 1"):
        main(["benchmark", "--quick", "--shape", "10", "--output-dir", str(tmp_path)])

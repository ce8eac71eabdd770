"""The reader benchmark runs end to end and checks that every reader agrees with SimpleITK (times not asserted)."""

from __future__ import annotations

import json

from monai_unets.scripts import benchmark_readers


def test_quick_mode_reads_every_input_with_every_reader(tmp_path, capsys):
    # a work folder that does not exist yet is made
    workdir = tmp_path / "new" / "inputs"
    assert benchmark_readers.main(["--quick", "--workdir", str(workdir)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["shape"] == [32, 32, 12]
    for kind in ("dicom_series", "nifti"):
        assert set(result[kind]) == {"simpleitk", "medical_image_reader", "monai_itk_reader"}
        assert result[kind]["simpleitk"]["ratio_to_simpleitk"] == 1.0
    assert list(workdir.iterdir()) == []  # the generated inputs are removed


def test_sizes_and_rounds_out_of_range_are_usage_errors(capsys):
    # no rounds had given NaN medians, no slices a SimpleITK traceback, one slice a failed comparison
    for option in (["--rounds", "0"], ["--slices", "1"], ["--size", "0"]):
        try:
            benchmark_readers.main(option)
        except SystemExit as raised:
            assert raised.code == 2, option
        else:
            raise AssertionError(f"{option} was accepted")
        assert f"argument {option[0]}:" in capsys.readouterr().err

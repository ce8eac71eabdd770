"""The reader benchmark runs end to end and checks that every reader agrees with SimpleITK (times not asserted)."""

from __future__ import annotations

import json

from monai_unets.scripts import benchmark_readers


def test_quick_mode_reads_every_input_with_every_reader(tmp_path, capsys):
    assert benchmark_readers.main(["--quick", "--workdir", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["shape"] == [32, 32, 12]
    for kind in ("dicom_series", "nifti"):
        assert set(result[kind]) == {"simpleitk", "medical_image_reader", "monai_itk_reader"}
        assert result[kind]["simpleitk"]["ratio_to_simpleitk"] == 1.0
    assert list(tmp_path.iterdir()) == []  # the generated inputs are removed

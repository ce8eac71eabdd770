from __future__ import annotations

import pytest
from monai_unets.scripts import model_table

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def measured() -> str:
    """The table of the shipped rows, measured once for the module (each measurement builds every network)."""
    return model_table.model_table()


@pytest.fixture
def table_once(measured, monkeypatch):
    monkeypatch.setattr(model_table, "model_table", lambda rows=model_table.MODEL_ROWS: measured)


def test_readme_table_is_up_to_date(table_once):
    assert model_table.main(["--check", str(REPO_ROOT / "README.md")]) == 0


def test_write_replaces_only_the_table(tmp_path, table_once):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{model_table.START}\nold\n{model_table.END}\noutro\n")
    assert model_table.main(["--check", str(readme)]) == 1
    assert model_table.main(["--write", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "| `EGEUNet` |" in text and "old" not in text
    assert model_table.main(["--check", str(readme)]) == 0


def test_missing_markers_is_an_error(tmp_path, table_once):
    readme = tmp_path / "README.md"
    readme.write_text("no table here\n")
    assert model_table.main(["--write", str(readme)]) == 1

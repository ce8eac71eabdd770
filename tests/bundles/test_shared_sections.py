"""The parts the bundles share have one content: a drift in one copy fails here.

Every bundle stays self-contained for the model zoo, so the shared files are copies; these tests keep the copies
equal. The two CT bundles run one pipeline with different networks: their configs may differ only in the keys
listed in ``CT_DIFFERENCES``, which are the only hand-edited lines between them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from monai_unets.bundles import BUNDLES_DIR, list_bundles

# identical, byte for byte, in every bundle
SHARED_FILES = ("logging.conf", "multi_gpu_train.yaml")
CT_BUNDLES = ("attention_unet_pancreas_ct", "egeunet3d_pancreas_ct")
# config id prefixes (MONAI's "#" paths) that may differ between the CT bundles
CT_DIFFERENCES = {
    "train.yaml": (
        "network_def",
        "loss#weights",
        "learning_rate",
        "weight_decay",
        "bf16",
        "channels_last",
        "patch_size",
    ),
    "inference.yaml": ("network_def", "bf16", "channels_last"),
    "evaluate.yaml": (),
    "metadata.json": ("name", "description", "references", "changelog"),
}
# "@name#3" or "%name#3": a list item picked by position breaks silently when the list changes
POSITIONAL_REF = re.compile(r"[@%][\w#]*#\d+")


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, object] = {}
    for key, item in items:
        flat.update(_flatten(item, f"{prefix}#{key}" if prefix else str(key)))
    return flat


def _load(path: Path) -> object:
    return json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())


def config_differences(first: Path, second: Path, allowed: tuple[str, ...]) -> list[str]:
    """Config ids whose values differ between two config files, outside the ``allowed`` id prefixes."""
    a, b = _flatten(_load(first)), _flatten(_load(second))
    differing = sorted(k for k in a.keys() | b.keys() if a.get(k, "<missing>") != b.get(k, "<missing>"))
    return [k for k in differing if not any(k == p or k.startswith(p + "#") for p in allowed)]


def _shared_file_names() -> list[str]:
    names = set(SHARED_FILES)
    for bundle in list_bundles():
        names.update(p.name for p in (BUNDLES_DIR / bundle / "configs").glob("multi_gpu_*.yaml"))
    return sorted(names)


@pytest.mark.parametrize("name", _shared_file_names())
def test_shared_files_are_identical_in_every_bundle(name):
    contents = {b: (BUNDLES_DIR / b / "configs" / name) for b in list_bundles()}
    missing = [b for b, p in contents.items() if not p.is_file()]
    assert not missing, f"{name} is missing from {missing}"
    texts = {b: p.read_bytes() for b, p in contents.items()}
    reference = texts[list_bundles()[0]]
    drifted = [b for b, t in texts.items() if t != reference]
    assert not drifted, f"{name} differs from {list_bundles()[0]}'s copy in {drifted}"


@pytest.mark.parametrize("name", sorted(CT_DIFFERENCES))
def test_ct_bundles_differ_only_in_their_network(name):
    first, second = (BUNDLES_DIR / b / "configs" / name for b in CT_BUNDLES)
    drift = config_differences(first, second, CT_DIFFERENCES[name])
    assert not drift, f"{name} of {CT_BUNDLES[0]} and {CT_BUNDLES[1]} differ outside {CT_DIFFERENCES[name]}: {drift}"


def test_ct_bundles_have_the_same_config_files():
    first, second = ({p.name for p in (BUNDLES_DIR / b / "configs").iterdir()} for b in CT_BUNDLES)
    assert first == second
    assert first - set(SHARED_FILES) - {p for p in first if p.startswith("multi_gpu_")} <= set(CT_DIFFERENCES), (
        "a new CT config file needs its allowed differences in CT_DIFFERENCES"
    )


def test_config_differences_reports_a_drift(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("network_def: {channels: [8]}\noverlap: 0.5\nlist: [1, 2]\n")
    second.write_text("network_def: {channels: [16]}\noverlap: 0.25\nlist: [1, 2, 3]\n")
    assert config_differences(first, second, ("network_def",)) == ["list#2", "overlap"]


@pytest.mark.parametrize("bundle", list_bundles())
def test_no_config_refers_to_a_list_item_by_position(bundle):
    found = [
        f"{p.name}: {m.group(0)}"
        for p in sorted((BUNDLES_DIR / bundle / "configs").glob("*.yaml"))
        for m in POSITIONAL_REF.finditer(p.read_text())
    ]
    assert not found, f"refer to a named list instead of a position: {found}"

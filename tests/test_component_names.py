"""Every class and function of monai_unets resolves by short name in a bundle config, and to our module only."""

from __future__ import annotations

import inspect
import pkgutil

import monai
import pytest
from monai.bundle import ConfigParser
from monai.bundle.config_item import ComponentLocator
from monai.utils import load_submodules

import monai_unets

# command-line modules share the entry-point names `main`/`run`; a bundle never imports them
CLI_PACKAGE = "monai_unets.scripts"


def _our_modules() -> list[str]:
    return [
        m.name
        for m in pkgutil.walk_packages(monai_unets.__path__, "monai_unets.")
        if not m.name.startswith((CLI_PACKAGE, "monai_unets.tests"))
    ]


@pytest.mark.slow
def test_importing_the_package_leaves_the_command_line_modules_out():
    import subprocess
    import sys

    code = "import sys, monai_unets; print(any(m.startswith('%s') for m in sys.modules))" % CLI_PACKAGE
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def _our_public_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for modname in _our_modules():
        module = __import__(modname, fromlist=["_"])
        for name, obj in inspect.getmembers(module):
            if (
                (inspect.isclass(obj) or inspect.isfunction(obj))
                and obj.__module__ == modname
                and not name.startswith("_")
            ):
                names[name] = modname
    return names


@pytest.fixture(scope="module")
def locator() -> ComponentLocator:
    load_submodules(monai, True)
    for modname in _our_modules():
        __import__(modname)
    return ComponentLocator()


def test_no_name_clashes_with_monai_or_between_our_modules(locator):
    clashes = {}
    for name in _our_public_names():
        found = locator.get_component_module_name(name)
        if not isinstance(found, str):
            clashes[name] = found
    assert not clashes, f"names defined in several modules (ambiguous `_target_`): {clashes}"


EXPORTED = sorted(
    n
    for n in monai_unets.__all__
    if inspect.isclass(getattr(monai_unets, n)) or inspect.isfunction(getattr(monai_unets, n))
)


@pytest.mark.parametrize("name", EXPORTED)
def test_exported_names_resolve_to_our_module(locator, name):
    obj = getattr(monai_unets, name)
    found = locator.get_component_module_name(obj.__name__)
    assert isinstance(found, str) and found.startswith("monai_unets."), found


def test_bundle_config_instantiates_by_short_name():
    parser = ConfigParser(
        {
            "imports": ["$import monai_unets"],
            "net": {"_target_": "EGEUNet", "spatial_dims": 2, "in_channels": 3, "out_channels": 1},
            "loss": {"_target_": "DeepSupervisedDiceCELoss"},
            "binarize": {"_target_": "BinarizeLabeld", "keys": "label"},
        }
    )
    parser.parse()
    assert type(parser.get_parsed_content("net")) is monai_unets.EGEUNet
    assert type(parser.get_parsed_content("loss")) is monai_unets.DeepSupervisedDiceCELoss
    assert type(parser.get_parsed_content("binarize")) is monai_unets.BinarizeLabeld

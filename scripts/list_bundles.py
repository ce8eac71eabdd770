"""List the shipped bundles (task, network, data), the networks and the tasks a bundle runs.

Example::

    monai-unets list
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import monai_unets.networks
import torch
from monai.bundle import ConfigParser
from monai_unets.bundles import bundle_dir, bundle_metadata, list_bundles

from .bundle_run import CONFIG_FILES
from .cli import run_tool

__all__ = ["add_arguments", "bundle_summary", "main", "run"]

_TASK_HELP = {
    "train": "train the network; weights to models/model.pt, TensorBoard logs to logs/",
    "infer": "predict every test case or every image of --input_dir",
    "evaluate": "metrics per case, overlays, label volumes and an HTML report in eval/",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the bundles as JSON instead of a table")


def bundle_summary(bundle: Path) -> dict[str, str]:
    """Name, version, task, network (class and dimensions) and data of a bundle folder, from its configs.

    Example::

        >>> bundle_summary(bundle_dir("egeunet_skin_lesion"))["network"]
        'EGEUNet 2D'
    """
    configs = bundle / "configs"
    meta = bundle_metadata(bundle)
    network = ConfigParser.load_config_file(str(configs / "inference.yaml")).get("network_def", {})
    return {
        "bundle": bundle.name,
        "version": str(meta.get("version", "")),
        "task": str(meta.get("task", "")),
        "network": f"{network.get('_target_', '?')} {network.get('spatial_dims', '?')}D",
        # the data source without its web addresses and preparation notes
        "data": re.sub(r"\s*\([^)]*\)", "", str(meta.get("data_source", "")).split(";")[0]),
    }


def _table(rows: list[dict[str, str]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _networks() -> list[dict[str, str]]:
    rows = []
    for name in monai_unets.networks.__all__:
        obj = getattr(monai_unets.networks, name)
        # the four architectures only: aliases (EGEUnet) and building blocks are left out
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__name__ == name and "UNet" in name:
            rows.append({"network": name, "summary": (obj.__doc__ or "").strip().partition("\n")[0]})
    return rows


def run(args: argparse.Namespace) -> int:
    bundles = [bundle_summary(bundle_dir(name)) for name in list_bundles()]
    if args.json:
        print(json.dumps({"bundles": bundles, "networks": _networks(), "tasks": _TASK_HELP}, indent=2))
        return 0
    print("Bundles (monai-unets train|infer|evaluate <bundle> [--KEY VALUE ...]):\n")
    print(_table(bundles, ["bundle", "version", "network", "task", "data"]))
    print("\nNetworks (monai_unets.networks):\n")
    print(_table(_networks(), ["network", "summary"]))
    print("\nTasks:\n")
    tasks = [{"task": t, "configs": " + ".join(CONFIG_FILES[t]), "what": _TASK_HELP[t]} for t in CONFIG_FILES]
    print(_table(tasks, ["task", "configs", "what"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())

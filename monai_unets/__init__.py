"""monai-unets: the U-Net family as MONAI networks, transforms and bundles.

Importing the package registers every class with MONAI's config resolver, so a bundle config that runs
``$import monai_unets`` can name them by short name (``_target_: EGEUNet``).
"""

from __future__ import annotations

__version__ = "0.1.0"

import os as _os
import sys as _sys
from importlib.machinery import PathFinder as _PathFinder


class _CheckoutSubpackages:
    """Finds ``monai_unets.<folder>`` in a checkout, where the subpackages are the top-level folders.

    pyproject's package-dir maps them; an installed copy holds them inside this folder. A process started in a
    checkout (which puts the checkout first on sys.path, as the ``python -m monai.bundle`` steps of
    ``monai-unets quickstart`` run there do) imports this file from the checkout instead, and finds its
    subpackages through this finder. It is consulted first: an editable install of another checkout would
    otherwise give this file that checkout's subpackages.
    """

    root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    names = ("bundles", "data", "handlers", "networks", "scripts", "transforms")

    @classmethod
    def find_spec(cls, fullname: str, path: object = None, target: object = None) -> object:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in cls.names:
            return None
        return _PathFinder.find_spec(fullname, [cls.root])


if _os.path.isfile(_os.path.join(_CheckoutSubpackages.root, "pyproject.toml")) and not any(
    getattr(f, "__name__", "") == "_CheckoutSubpackages" for f in _sys.meta_path
):
    _sys.meta_path.insert(0, _CheckoutSubpackages)

from . import data, handlers, networks, transforms  # noqa: E402
from .data.plan import load_plan, save_plan  # noqa: E402
from .handlers.errors import check_settings, report_errors  # noqa: E402
from .networks import *  # noqa: E402,F401,F403
from .transforms import *  # noqa: E402,F401,F403

__all__ = (
    [
        "__version__",
        "check_settings",
        "data",
        "handlers",
        "load_plan",
        "networks",
        "report_errors",
        "save_plan",
        "transforms",
    ]
    + networks.__all__
    + transforms.__all__
)

"""monai-unets: the U-Net family as MONAI networks, transforms and bundles.

Importing the package registers every class with MONAI's config resolver, so a bundle config that runs
``$import monai_unets`` can name them by short name (``_target_: EGEUNet``).
"""

from __future__ import annotations

__version__ = "0.1.0"

import os as _os

# The subpackages are the repository's top-level folders (pyproject's package-dir). An installed copy holds them
# inside this folder; a process started in a checkout (which puts the checkout first on sys.path, as
# `monai-unets quickstart` run there does for its `python -m monai.bundle` steps) imports this file from the
# checkout instead, and must find them beside it.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_checkout, "pyproject.toml")) and _os.path.isdir(_os.path.join(_checkout, "networks")):
    __path__.append(_checkout)  # noqa: F821 (the package's own __path__)

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

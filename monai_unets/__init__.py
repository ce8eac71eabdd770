"""monai-unets: the U-Net family as MONAI networks, transforms and bundles.

Importing the package registers every class with MONAI's config resolver, so a bundle config that runs
``$import monai_unets`` can name them by short name (``_target_: EGEUNet``).
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import data, handlers, networks, transforms
from .data.plan import load_plan, save_plan
from .handlers.errors import check_settings, report_errors
from .networks import *  # noqa: F401,F403
from .transforms import *  # noqa: F401,F403

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

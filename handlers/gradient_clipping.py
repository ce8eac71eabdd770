"""Gradient clipping for MONAI's SupervisedTrainer, which has no clipping option of its own."""

from __future__ import annotations

import torch
from monai.engines.utils import IterationEvents
from monai.utils import min_version, optional_import

Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["GradientClipping"]


class GradientClipping:
    """Clips the network's gradients after every backward pass, before the optimizer step.

    With AMP the gradients are unscaled first (``GradScaler.unscale_``), so the threshold applies to the true
    gradients; the scaler's own step then does not unscale them again.

    Args:
        max_value: clip each gradient element to [-max_value, max_value] (``clip_grad_value_``), as the U-Net v2
            polyp recipe does with 0.5.
        max_norm: clip the total gradient norm (``clip_grad_norm_``) instead; give exactly one of the two.

    Example::

        >>> clipping = GradientClipping(max_value=0.5)
        >>> clipping.attach(trainer)  # doctest: +SKIP

    In a bundle config: ``{"_target_": "GradientClipping", "max_value": 0.5}`` in ``train#handlers``.
    """

    def __init__(self, max_value: float | None = None, max_norm: float | None = None) -> None:
        if (max_value is None) == (max_norm is None):
            raise ValueError("give exactly one of max_value and max_norm.")
        self.max_value = max_value
        self.max_norm = max_norm

    def attach(self, engine: Engine) -> None:
        if getattr(engine, "amp", False) and getattr(engine, "accumulation_steps", 1) > 1:
            # unscaling twice before one optimizer step is an error in GradScaler
            raise ValueError("GradientClipping does not support AMP together with gradient accumulation.")
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if getattr(engine, "amp", False) and getattr(engine, "scaler", None) is not None:
            engine.scaler.unscale_(engine.optimizer)
        parameters = [p for p in engine.network.parameters() if p.grad is not None]
        if self.max_value is not None:
            torch.nn.utils.clip_grad_value_(parameters, self.max_value)
        else:
            torch.nn.utils.clip_grad_norm_(parameters, self.max_norm)

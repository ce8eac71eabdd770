"""Mixed precision on the CPU: bfloat16 autocast around any MONAI inferer, the network fed plain tensors.

MONAI's engines take ``amp=True`` on CUDA only (``torch.autocast("cuda")`` with a gradient scaler). A CPU with
AMX tiles (Intel Xeon from Sapphire Rapids on) runs 3D convolutions in bfloat16 about twice as fast as in
float32, and bfloat16 keeps float32's exponent range, so training needs no gradient scaler. Wrapping the
trainer's or evaluator's inferer gives the engines that path without touching them.

The network itself gets plain tensors: a ``MetaTensor`` batch makes every operation of the forward pass go
through its metadata bookkeeping, 10-20% of a training step of this package's small 3D networks, and no network
reads the metadata. The inferer still sees the ``MetaTensor``, so sliding-window outputs keep it for ``Invertd``.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

__all__ = ["AutocastInferer", "cpu_bf16_default"]


def cpu_bf16_default(device: str | torch.device | None = None) -> bool:
    """Whether bfloat16 autocast pays on this device: a CPU with AMX tiles and oneDNN bfloat16 kernels.

    On other CPUs bfloat16 convolutions are emulated or barely faster, and CUDA has MONAI's own ``amp``.

    Args:
        device: the device the run uses (``"cpu"``, ``"cuda:0"``, a ``torch.device``); ``None`` means the CPU. Any
            device that is not a CPU gives ``False``; for a CPU, this machine's CPU is checked.

    Example::

        >>> cpu_bf16_default("cuda:0")
        False
    """
    if torch.device(device or "cpu").type != "cpu":
        return False
    return bool(torch.cpu._is_amx_tile_supported() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class AutocastInferer(Inferer):
    """Run ``inferer`` under ``torch.autocast`` and return float32 outputs, so losses and metrics stay float32.

    Gradients flow through the autocast graph as usual; the optimizer keeps float32 weights. Outputs that are
    lists or tuples (deep supervision) are cast item by item. Enabled or not, the network is called on plain
    tensors (``MetaTensor`` inputs are unwrapped for it; the inferer's own inputs are left as they are).

    Args:
        inferer: the wrapped inferer (``SimpleInferer``, ``SlidingWindowInferer``, ...).
        enabled: autocast on; ``False`` calls ``inferer`` unchanged.
        device_type: autocast's device type, ``"cpu"`` or ``"cuda"``.
        dtype: the lower precision, ``"bfloat16"`` or ``"float16"``.

    Example::

        >>> from monai.inferers import SimpleInferer
        >>> inferer = AutocastInferer(SimpleInferer(), enabled=True)
        >>> inferer(torch.randn(1, 1, 8, 8), torch.nn.Conv2d(1, 2, 3, padding=1)).dtype
        torch.float32
    """

    def __init__(
        self, inferer: Inferer, enabled: bool = True, device_type: str = "cpu", dtype: str = "bfloat16"
    ) -> None:
        super().__init__()
        self.inferer = inferer
        self.enabled = bool(enabled)
        self.device_type = str(device_type)
        self.dtype = getattr(torch, dtype)

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        def plain_network(x: torch.Tensor, *net_args: Any, **net_kwargs: Any) -> Any:
            return network(x.as_tensor() if isinstance(x, MetaTensor) else x, *net_args, **net_kwargs)

        if not self.enabled:
            return self.inferer(inputs, plain_network, *args, **kwargs)
        with torch.autocast(self.device_type, dtype=self.dtype):
            outputs = self.inferer(inputs, plain_network, *args, **kwargs)
        return _to_float(outputs)


def _to_float(outputs: Any) -> Any:
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_to_float(o) for o in outputs)
    if isinstance(outputs, dict):
        return {k: _to_float(v) for k, v in outputs.items()}
    if isinstance(outputs, torch.Tensor) and outputs.is_floating_point():
        return outputs.float()
    return outputs

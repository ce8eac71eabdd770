"""Networks of the U-Net family, their building blocks and losses.

Every network here (``EGEUNet``, ``ClassicUNet``, ``AttentionGateUNet``, ``UNetV2``) keeps one contract, so that a
bundle or a training script can swap one for another by changing ``_target_`` and the network's own options.

Constructor
    ``Network(spatial_dims, in_channels, out_channels, channels=..., ..., act=..., norm=..., dropout=...)``.
    The first three are required and come first, as in MONAI's networks. ``channels`` are the stage widths,
    finest first (MONAI's ``UNet`` and ``AttentionUnet`` name). ``act``, ``norm`` and ``dropout`` take MONAI
    factory specs (:class:`monai.networks.layers.factories.Act`, ``Norm``, ``Dropout``): a name such as
    ``"relu"``, ``"instance"``, a ``(name, kwargs)`` tuple, or for dropout a probability; ``dropout=None`` means
    none. Every other default, these included, is the published network. ``"channel_layer"`` (registered by
    this package in MONAI's ``Norm`` factory) is EGE-UNet's channels-first LayerNorm.

Deep-supervision outputs
    A network built with ``deep_supervision=True`` (the default of EGE-UNet, Attention U-Net and U-Net v2, an
    option of the classic U-Net):

    - in training mode returns a list of logits ``[main, side_1, ..., side_k]``: the main output first, then
      the side outputs from the finest to the coarsest level, every one of them resized to the input's
      spatial size, so one label tensor serves all (:class:`DeepSupervisedDiceCELoss` and
      :class:`DeepSupervisedStructureLoss` weight the list);
    - in eval mode returns the main logits only, one tensor of the input's spatial size, the same tensor as
      the list's first item in training mode.

    With ``deep_supervision=False`` the forward pass returns that one tensor in both modes. So inference,
    MONAI's sliding-window inferer, TorchScript and ONNX export see one tensor, always. (The classic U-Net in
    ``padding="valid"`` mode is the one network whose output is smaller than its input; see its
    ``output_size``. It has no deep supervision in that mode.)
"""

from __future__ import annotations

from .attention_unet import AttentionGateUNet, AttentionGateUnet
from .autocast import AutocastInferer, cpu_bf16_default
from .blocks import (
    GAB,
    GHPA,
    SDI,
    AttentionGate,
    ChannelLayerNorm,
    PVTv2Encoder,
    SDISkip,
    SelfAttentionBlock,
    UNetV2ConvEncoder,
)
from .classic_unet import ClassicUNet, ClassicUnet
from .egeunet import EGEUNet, EGEUnet, published_egeunet_state_dict
from .ensemble import EnsembleInferer, load_models, mirror_axes, model_files, served_model_file, served_model_files
from .losses import DeepSupervisedDiceCELoss
from .runtime import (
    MissingOnnxModelError,
    OnnxModelError,
    OnnxRuntimeNetwork,
    freeze_startup_objects,
    reuse_freed_memory,
    select_runtime,
)
from .structure_loss import DeepSupervisedStructureLoss, StructureLoss
from .uncertainty import UncertaintyScoring, uncertainty_score
from .unetv2 import UNetV2, UnetV2, warn_if_random_encoder
from .utils import check_input_size, count_macs, count_parameters, input_shape_problem

__all__ = [
    "AutocastInferer",
    "GAB",
    "GHPA",
    "SDI",
    "AttentionGate",
    "AttentionGateUNet",
    "AttentionGateUnet",
    "ChannelLayerNorm",
    "ClassicUNet",
    "ClassicUnet",
    "DeepSupervisedDiceCELoss",
    "DeepSupervisedStructureLoss",
    "EGEUNet",
    "EGEUnet",
    "EnsembleInferer",
    "MissingOnnxModelError",
    "OnnxModelError",
    "OnnxRuntimeNetwork",
    "PVTv2Encoder",
    "SDISkip",
    "SelfAttentionBlock",
    "StructureLoss",
    "UNetV2",
    "UncertaintyScoring",
    "UNetV2ConvEncoder",
    "UnetV2",
    "check_input_size",
    "count_macs",
    "cpu_bf16_default",
    "count_parameters",
    "load_models",
    "mirror_axes",
    "model_files",
    "served_model_file",
    "served_model_files",
    "published_egeunet_state_dict",
    "input_shape_problem",
    "freeze_startup_objects",
    "reuse_freed_memory",
    "select_runtime",
    "uncertainty_score",
    "warn_if_random_encoder",
]

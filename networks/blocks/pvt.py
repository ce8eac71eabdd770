"""Pyramid Vision Transformer v2 (PVTv2) encoder, the backbone of U-Net v2."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Dict, List, Tuple

import torch
from monai.networks.layers import DropPath
from torch import nn

from ...handlers.checkpoint import read_checkpoint

__all__ = ["PVT_V2_VARIANTS", "PVTv2Encoder"]

# Hyper-parameters of the published PVTv2 variants (Wang et al., Table 1 of the PVTv2 paper). Only the depths,
# widths and MLP ratios differ; every variant uses 1/2/5/8 heads and spatial-reduction ratios 8/4/2/1.
PVT_V2_VARIANTS: dict[str, dict[str, tuple[int, ...]]] = {
    "pvt_v2_b0": {"embed_dims": (32, 64, 160, 256), "mlp_ratios": (8, 8, 4, 4), "depths": (2, 2, 2, 2)},
    "pvt_v2_b1": {"embed_dims": (64, 128, 320, 512), "mlp_ratios": (8, 8, 4, 4), "depths": (2, 2, 2, 2)},
    "pvt_v2_b2": {"embed_dims": (64, 128, 320, 512), "mlp_ratios": (8, 8, 4, 4), "depths": (3, 4, 6, 3)},
    "pvt_v2_b3": {"embed_dims": (64, 128, 320, 512), "mlp_ratios": (8, 8, 4, 4), "depths": (3, 4, 18, 3)},
    "pvt_v2_b4": {"embed_dims": (64, 128, 320, 512), "mlp_ratios": (8, 8, 4, 4), "depths": (3, 8, 27, 3)},
    "pvt_v2_b5": {"embed_dims": (64, 128, 320, 512), "mlp_ratios": (4, 4, 4, 4), "depths": (3, 6, 40, 3)},
}


class PVTv2Encoder(nn.Module):
    """The four-stage PVTv2 transformer encoder, returning feature maps at strides 4, 8, 16 and 32.

    Wang, Xie, Li, Fan, Song, Liang, Lu, Luo, Shao: "PVT v2: Improved Baselines with Pyramid Vision
    Transformer", Computational Visual Media 2022, https://arxiv.org/abs/2106.13797. Used as the encoder of
    U-Net v2 (Peng et al., https://arxiv.org/abs/2311.17791).

    Each stage is an overlapping patch embedding (a strided conv with padding, 7x7 stride 4 for the first stage
    and 3x3 stride 2 for the others, then LayerNorm), a stack of transformer blocks with spatial-reduction
    attention (keys and values come from a ``sr_ratio``-times downsampled map) and a Mix-FFN (an MLP with a
    depthwise 3x3 conv between its two linear layers), and a final LayerNorm. The defaults are PVTv2-b2.

    The submodule names follow the official implementation (``patch_embed1.proj``, ``block1.0.attn.q``,
    ``block1.0.mlp.dwconv.dwconv``, ``norm1``, ...), so the official ImageNet checkpoints (e.g.
    ``pvt_v2_b2.pth``) load with :meth:`load_pretrained`; the classification head is not built.

    The padded patch embeddings give ceil(H / 4), ceil(H / 8), ... for any H, so the input size need not be a
    multiple of 32. The spatial-reduction convs need every stage-i map to be at least ``sr_ratios[i]`` wide,
    which for PVTv2 means every input side >= 29 (32 is the practical minimum). This encoder is 2D only.

    Args:
        in_channels: number of input channels (3 for the ImageNet weights).
        embed_dims: widths of the four stages.
        num_heads: attention heads of the four stages.
        mlp_ratios: hidden-width ratio of the Mix-FFN in the four stages.
        depths: number of transformer blocks in the four stages.
        sr_ratios: spatial-reduction ratio of the attention in the four stages.
        qkv_bias: add a bias to the query, key and value projections.
        drop_rate: dropout after the attention projection and in the MLP.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic-depth rate, increasing linearly from 0 over the blocks up to this value.
        norm_eps: epsilon of the blocks' and stages' LayerNorms (the patch embeddings and the
            spatial-reduction norms keep PyTorch's default 1e-5, as in the official code).
        pretrained: path of a local checkpoint to load after the random initialisation (see
            :meth:`load_pretrained`); ``None`` keeps the random initialisation.

    Example::

        >>> enc = PVTv2Encoder()  # PVTv2-b2, random initialisation
        >>> [f.shape[1:] for f in enc(torch.randn(1, 3, 256, 192))]
        [torch.Size([64, 64, 48]), torch.Size([128, 32, 24]), torch.Size([320, 16, 12]), torch.Size([512, 8, 6])]
    """

    def __init__(
        self,
        in_channels: int = 3,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        depths: Sequence[int] = (3, 4, 6, 3),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_eps: float = 1e-6,
        pretrained: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("embed_dims", embed_dims),
            ("num_heads", num_heads),
            ("mlp_ratios", mlp_ratios),
            ("depths", depths),
            ("sr_ratios", sr_ratios),
        ):
            if len(value) != 4:
                raise ValueError(f"{name} must have 4 entries (one per stage), got {tuple(value)}.")
        self.out_channels = tuple(int(d) for d in embed_dims)
        self.strides = (4, 8, 16, 32)
        self.sr_ratios = [int(r) for r in sr_ratios]

        # stochastic depth grows linearly with the block index over the whole network
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        start = 0
        for i in range(4):
            dim = self.out_channels[i]
            embed = _OverlapPatchEmbed(
                in_channels if i == 0 else self.out_channels[i - 1],
                dim,
                kernel_size=7 if i == 0 else 3,
                stride=4 if i == 0 else 2,
            )
            blocks = nn.ModuleList(
                _PVTv2Block(
                    dim,
                    num_heads=num_heads[i],
                    mlp_ratio=mlp_ratios[i],
                    qkv_bias=qkv_bias,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=rates[start + j],
                    sr_ratio=self.sr_ratios[i],
                    norm_eps=norm_eps,
                )
                for j in range(depths[i])
            )
            start += depths[i]
            # official names: patch_embed{i}, block{i}, norm{i} (1-based)
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"block{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dim, eps=norm_eps))

        self.apply(_init_weights)
        if pretrained is not None:
            self.load_pretrained(pretrained)

    @classmethod
    def from_variant(cls, variant: str = "pvt_v2_b2", **kwargs) -> PVTv2Encoder:
        """Build a published variant (a key of :data:`PVT_V2_VARIANTS`); ``kwargs`` go to the constructor."""
        if variant not in PVT_V2_VARIANTS:
            raise ValueError(f"unknown PVTv2 variant '{variant}'; choose one of {sorted(PVT_V2_VARIANTS)}.")
        return cls(**{**PVT_V2_VARIANTS[variant], **kwargs})

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Load a local PVTv2 checkpoint, e.g. the official ImageNet ``pvt_v2_b2.pth``.

        The file may hold the state dict itself or wrap it under ``"state_dict"`` or ``"model"``; a leading
        ``"module."`` (from DataParallel) is stripped and the classification head (``head.*``) is dropped.
        Every other key must match this encoder exactly, in name and shape: otherwise a ``ValueError`` lists
        the offending keys and nothing is loaded. There is no silent fall-back to random weights.

        Args:
            path: path of the checkpoint file on the local disk (nothing is downloaded).

        Raises:
            FileNotFoundError: ``path`` is not an existing file.
            ValueError: the file is not a state dict of this encoder (missing, unexpected or mis-shaped keys), or
                (:class:`~monai_unets.handlers.CheckpointError`) not a readable PyTorch file at all (truncated).
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"PVTv2 checkpoint not found: '{path}'. Download the official weights (e.g. pvt_v2_b2.pth from "
                "https://github.com/whai362/PVT) and pass the local path, or pass pretrained=None for random "
                "initialisation."
            )
        checkpoint = read_checkpoint(path, remedy="download it again")
        state = _unwrap_state_dict(checkpoint, path)
        state = {k: v for k, v in state.items() if not k.startswith("head.")}

        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [
            f"{k} (file {tuple(v.shape)}, model {tuple(own[k].shape)})"
            for k, v in state.items()
            if k in own and tuple(v.shape) != tuple(own[k].shape)
        ]
        if missing or unexpected or mismatched:
            problems = []
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
                if keys:
                    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
                    problems.append(f"{len(keys)} {label}: {', '.join(keys[:5])}{more}")
            raise ValueError(
                f"'{path}' does not match this PVTv2 encoder (embed_dims={self.out_channels}, "
                f"{len(own)} tensors): " + "; ".join(problems) + ". Check the variant and in_channels."
            )
        self.load_state_dict(state, strict=True)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:  # noqa: UP006
        # the four stages are written out rather than looped over getattr, which keeps the official module
        # names and TorchScript both happy
        x, h, w = self.patch_embed1(x)
        self._check_size(h, w, 0)
        for block in self.block1:
            x = block(x, h, w)
        f1 = _tokens_to_map(self.norm1(x), h, w)

        x, h, w = self.patch_embed2(f1)
        self._check_size(h, w, 1)
        for block in self.block2:
            x = block(x, h, w)
        f2 = _tokens_to_map(self.norm2(x), h, w)

        x, h, w = self.patch_embed3(f2)
        self._check_size(h, w, 2)
        for block in self.block3:
            x = block(x, h, w)
        f3 = _tokens_to_map(self.norm3(x), h, w)

        x, h, w = self.patch_embed4(f3)
        self._check_size(h, w, 3)
        for block in self.block4:
            x = block(x, h, w)
        f4 = _tokens_to_map(self.norm4(x), h, w)
        return [f1, f2, f3, f4]

    def _check_size(self, h: int, w: int, stage: int) -> None:
        # the strided spatial-reduction conv would otherwise produce an empty key/value map
        ratio = self.sr_ratios[stage]
        if h < ratio or w < ratio:
            raise ValueError(
                "PVTv2 input too small: the stage-"
                + str(stage + 1)
                + " map is "
                + str(h)
                + "x"
                + str(w)
                + ", smaller than its spatial-reduction ratio "
                + str(ratio)
                + "; every input side must be >= 29 (use >= 32)."
            )


def _tokens_to_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, H*W, C) tokens -> (N, C, H, W) feature map."""
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class _OverlapPatchEmbed(nn.Module):
    """Strided conv with padding (overlapping patches), flattened to tokens, then LayerNorm."""

    def __init__(self, in_channels: int, embed_dim: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        # padding k // 2 makes the output ceil(H / stride) for any H, hence any input size works
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int]:  # noqa: UP006
        x = self.proj(x)
        h, w = x.shape[2], x.shape[3]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class _SRAttention(nn.Module):
    """Multi-head attention whose keys and values come from a ``sr_ratio``-times downsampled token map."""

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float, sr_ratio: int
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        # parameter-free identities at ratio 1 keep the official key layout (no sr/norm there) while giving
        # TorchScript a module on both branches of forward
        self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio) if sr_ratio > 1 else nn.Identity()
        self.norm = nn.LayerNorm(dim) if sr_ratio > 1 else nn.Identity()

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        q = self.q(x).reshape(b, n, self.num_heads, c // self.num_heads).permute(0, 2, 1, 3)
        kv_in = x
        if self.sr_ratio > 1:
            kv_in = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            kv_in = self.norm(kv_in)
        kv = self.kv(kv_in).reshape(b, -1, 2, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = self.attn_drop(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(x))


class _DWConv(nn.Module):
    """Depthwise 3x3 conv on a token sequence (official name: ``mlp.dwconv.dwconv``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class _MixFFN(nn.Module):
    """Linear -> depthwise 3x3 conv -> GELU -> linear; the conv gives the positional information."""

    def __init__(self, dim: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = _DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x), h, w)))
        return self.drop(self.fc2(x))


class _PVTv2Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), both with stochastic depth."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop: float,
        attn_drop: float,
        drop_path: float,
        sr_ratio: int,
        norm_eps: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = _SRAttention(dim, num_heads, qkv_bias, attn_drop, drop, sr_ratio)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = _MixFFN(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


def _init_weights(module: nn.Module) -> None:
    """The PVTv2 initialisation: truncated-normal linears, unit LayerNorms, He-normal (fan-out) convs."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = math.prod(module.kernel_size) * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _unwrap_state_dict(checkpoint: object, path: str) -> Dict[str, torch.Tensor]:  # noqa: UP006
    """The flat state dict inside a checkpoint: unwrap ``state_dict``/``model`` and strip ``module.``."""
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            if key in checkpoint and isinstance(checkpoint[key], Mapping):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"'{path}' does not hold a state dict (a mapping of parameter names to tensors).")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in checkpoint.items()}

"""Tests of the PVTv2 encoder: size, official key layout, shapes, scripting and the local-weights loader."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from monai_unets.networks.blocks.pvt import PVT_V2_VARIANTS, PVTv2Encoder
from monai_unets.networks.utils import count_parameters

# PVTv2-b2 without its 1000-class head (the official model has 25.36 M with it)
B2_PARAMS = 24_849_856

pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit")


@pytest.fixture(scope="module")
def encoder() -> PVTv2Encoder:
    torch.manual_seed(0)
    return PVTv2Encoder().eval()


def test_parameter_count(encoder):
    assert count_parameters(encoder) == B2_PARAMS


def test_official_key_layout(encoder):
    keys = set(encoder.state_dict())
    # 334 tensors in the official classification model, minus head.weight and head.bias
    assert len(keys) == 332
    for key in (
        "patch_embed1.proj.weight",
        "patch_embed1.norm.bias",
        "block1.0.norm1.weight",
        "block1.0.attn.q.weight",
        "block1.0.attn.q.bias",
        "block1.0.attn.kv.weight",
        "block1.0.attn.sr.weight",
        "block1.0.attn.norm.weight",
        "block1.2.mlp.dwconv.dwconv.weight",
        "block3.5.mlp.fc2.bias",
        "patch_embed4.proj.weight",
        "norm4.weight",
    ):
        assert key in keys, key
    # stage 4 has spatial-reduction ratio 1: no sr conv and no sr norm, as in the official model
    assert not any(k.startswith("block4.0.attn.sr") or k.startswith("block4.0.attn.norm") for k in keys)
    assert not any(k.startswith("head") for k in keys)


def test_config(encoder):
    assert encoder.out_channels == (64, 128, 320, 512)
    assert encoder.patch_embed1.proj.kernel_size == (7, 7) and encoder.patch_embed1.proj.stride == (4, 4)
    assert encoder.patch_embed2.proj.kernel_size == (3, 3) and encoder.patch_embed2.proj.stride == (2, 2)
    assert [len(encoder.block1), len(encoder.block2), len(encoder.block3), len(encoder.block4)] == [3, 4, 6, 3]
    assert [encoder.block1[0].attn.num_heads, encoder.block4[0].attn.num_heads] == [1, 8]
    assert encoder.block1[0].mlp.fc1.out_features == 8 * 64 and encoder.block3[0].mlp.fc1.out_features == 4 * 320
    assert encoder.block2[0].attn.sr.kernel_size == (4, 4)
    assert encoder.block1[0].norm1.eps == 1e-6 and encoder.norm4.eps == 1e-6
    assert encoder.block1[0].attn.q.bias is not None  # qkv_bias
    # stochastic depth grows linearly to 0.1 over the 16 blocks
    assert encoder.block1[0].drop_path.drop_prob == 0.0
    assert encoder.block4[2].drop_path.drop_prob == pytest.approx(0.1)


def test_random_init(encoder):
    assert torch.all(encoder.norm1.weight == 1) and torch.all(encoder.norm1.bias == 0)
    assert torch.all(encoder.block2[0].attn.q.bias == 0)
    # trunc_normal_(std=0.02) as in PVTv2 (its bounds are +-2 absolute, so effectively untruncated)
    assert encoder.block3[0].mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.05)
    # He-normal (fan-out) convs: std sqrt(2 / (3 * 3 * 1280 / 1280)) for the depthwise conv
    assert encoder.block3[0].mlp.dwconv.dwconv.weight.std().item() == pytest.approx((2 / 9) ** 0.5, rel=0.05)


@pytest.mark.parametrize("size", [(64, 48), (97, 131), (29, 29)], ids=lambda s: "x".join(map(str, s)))
def test_shapes_any_size(encoder, size):
    with torch.no_grad():
        feats = encoder(torch.randn(1, 3, *size))
    assert len(feats) == 4
    for feat, channels, stride in zip(feats, (64, 128, 320, 512), (4, 8, 16, 32)):
        # the padded patch embeddings give ceil(size / stride) for every size
        assert feat.shape == (1, channels, -(-size[0] // stride), -(-size[1] // stride))
        assert torch.isfinite(feat).all()


def test_too_small_input_raises(encoder):
    with pytest.raises(ValueError, match="too small"):
        encoder(torch.randn(1, 3, 28, 64))


def test_variants():
    small = PVTv2Encoder.from_variant("pvt_v2_b0", in_channels=1).eval()
    assert small.out_channels == PVT_V2_VARIANTS["pvt_v2_b0"]["embed_dims"]
    with torch.no_grad():
        assert [f.shape[1] for f in small(torch.randn(1, 1, 32, 40))] == [32, 64, 160, 256]
    with pytest.raises(ValueError, match="unknown PVTv2 variant"):
        PVTv2Encoder.from_variant("pvt_v2_b9")
    with pytest.raises(ValueError, match="4 entries"):
        PVTv2Encoder(depths=(1, 1, 1))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    enc = PVTv2Encoder.from_variant("pvt_v2_b0").train()
    feats = enc(torch.randn(2, 3, 40, 32))
    sum(f.mean() for f in feats).backward()
    for name, param in enc.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_torchscript_matches_eager(encoder):
    scripted = torch.jit.script(encoder)
    x = torch.randn(1, 3, 40, 32)
    with torch.no_grad():
        for a, b in zip(scripted(x), encoder(x)):
            assert torch.allclose(a, b, atol=1e-5)


# --- loading local weights -------------------------------------------------------------------------------------


def _checkpoint(encoder: PVTv2Encoder, seed: int = 1) -> dict:
    """A state dict in the official classification layout: encoder weights perturbed, plus a 1000-class head."""
    torch.manual_seed(seed)
    state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in encoder.state_dict().items()}
    state["head.weight"] = torch.randn(1000, 512)
    state["head.bias"] = torch.randn(1000)
    return state


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_load_round_trip(encoder, tmp_path):
    state = _checkpoint(encoder)
    path = tmp_path / "pvt_v2_b2.pth"
    torch.save(state, path)
    loaded = PVTv2Encoder(pretrained=str(path))
    expected = {k: v for k, v in state.items() if not k.startswith("head.")}
    assert _same_weights(loaded.state_dict(), expected)


def test_load_wrapped_checkpoint(encoder, tmp_path):
    state = _checkpoint(encoder, seed=2)
    path = tmp_path / "wrapped.pth"
    torch.save({"model": {"module." + k: v for k, v in state.items()}}, path)
    other = copy.deepcopy(encoder)
    other.load_pretrained(path)
    assert torch.equal(other.norm4.weight, state["norm4.weight"])


def test_missing_file_raises(encoder, tmp_path):
    path = tmp_path / "nowhere" / "pvt_v2_b2.pth"
    with pytest.raises(FileNotFoundError, match="pvt_v2_b2.pth"):
        copy.deepcopy(encoder).load_pretrained(path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        PVTv2Encoder.from_variant("pvt_v2_b0", pretrained=str(path))


def test_an_unreadable_file_is_named_in_one_line(encoder, tmp_path):
    # a truncated download: torch's own error named neither the file nor what to do
    path = tmp_path / "pvt_v2_b2.pth"
    path.write_bytes(b"PK\x03\x04truncated")
    with pytest.raises(ValueError) as raised:
        copy.deepcopy(encoder).load_pretrained(path)
    assert str(raised.value).startswith(f"{path}: not a readable PyTorch checkpoint (RuntimeError)")
    assert str(raised.value).endswith("download it again.")


def test_mismatched_file_raises_and_keeps_weights(encoder, tmp_path):
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    other = copy.deepcopy(encoder)

    # a different variant: stage widths differ
    path = tmp_path / "b0.pth"
    torch.save(PVTv2Encoder.from_variant("pvt_v2_b0").state_dict(), path)
    with pytest.raises(ValueError, match="shape mismatch") as err:
        other.load_pretrained(path)
    assert "patch_embed1.proj.weight" in str(err.value)

    # unexpected and missing keys
    state = _checkpoint(encoder)
    state["decoder.conv.weight"] = torch.zeros(1)
    del state["norm4.bias"]
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        other.load_pretrained(path)
    assert "decoder.conv.weight" in str(err.value) and "norm4.bias" in str(err.value)
    assert "missing" in str(err.value) and "unexpected" in str(err.value)

    # not a state dict at all
    path = tmp_path / "junk.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="state dict"):
        other.load_pretrained(path)

    # nothing was loaded: no silent partial load, no fall-back
    assert _same_weights(other.state_dict(), before)


def test_in_channels_mismatch_is_reported(tmp_path):
    path = tmp_path / "rgb.pth"
    torch.save(PVTv2Encoder.from_variant("pvt_v2_b0").state_dict(), path)
    with pytest.raises(ValueError, match="patch_embed1.proj.weight"):
        PVTv2Encoder.from_variant("pvt_v2_b0", in_channels=1, pretrained=path)

"""The student's maths against direct computations; the teacher against torchvision."""

import math

import pytest
import torch
import torchvision

from vispipe.classify.models import build_model, count_params, param_breakdown
from vispipe.classify.resnet import ResNet
from vispipe.classify.vit import N_SPECIAL, Attention, Block, DistilledViT, RelPosBias2D

SEED_VIT = dict(
    arch="vit",
    image_size=32,
    patch_size=4,
    dim=256,
    depth=12,
    heads=8,
    mlp_ratio=4,
    class_attn_blocks=4,
    dropout=0.05,
    drop_path=0.15,
)


def test_relative_bias_matches_direct_definition():
    torch.manual_seed(0)
    g, h = 3, 2
    rb = RelPosBias2D(grid=g, heads=h)
    bias = rb()
    n = N_SPECIAL + g * g
    assert bias.shape == (h, n, n)
    for head in range(h):
        for i in range(n):
            for j in range(n):
                if i < N_SPECIAL and j < N_SPECIAL:
                    want = rb.special_to_special[head, i, j]
                elif i < N_SPECIAL:
                    want = rb.special_to_patch[head, i]
                elif j < N_SPECIAL:
                    want = rb.patch_to_special[head, j]
                else:
                    (ri, ci), (rj, cj) = divmod(i - N_SPECIAL, g), divmod(j - N_SPECIAL, g)
                    want = rb.row[head, ri - rj + g - 1] + rb.col[head, ci - cj + g - 1]
                assert torch.isclose(bias[head, i, j], want), (head, i, j)


def test_patch_bias_depends_only_on_offsets():
    rb = RelPosBias2D(grid=4, heads=1)
    b = rb()[0, N_SPECIAL:, N_SPECIAL:]
    # (0,0)->(1,2) and (2,1)->(3,3) share the offset (-1,-2)
    assert torch.isclose(b[0 * 4 + 0, 1 * 4 + 2], b[2 * 4 + 1, 3 * 4 + 3])


def direct_attention(attn: Attention, x: torch.Tensor, n_queries: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v, written out, head by head."""
    b, n, d = x.shape
    hd = d // attn.heads
    q = attn.q(x[:, :n_queries])
    k, v = attn.kv(x).chunk(2, dim=-1)
    bias = attn.bias()
    outs = []
    for h in range(attn.heads):
        sl = slice(h * hd, (h + 1) * hd)
        logits = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(hd) + bias[h, :n_queries]
        outs.append(logits.softmax(-1) @ v[..., sl])
    return attn.proj(torch.cat(outs, dim=-1))


@pytest.mark.parametrize("class_attention", [False, True])
def test_attention_matches_direct_computation(class_attention):
    torch.manual_seed(0)
    attn = Attention(dim=16, heads=4, grid=3, dropout=0.0, class_attention=class_attention).eval()
    x = torch.randn(2, N_SPECIAL + 9, 16)
    n_queries = N_SPECIAL if class_attention else x.shape[1]
    out = attn(x)
    assert out.shape == (2, n_queries, 16)
    torch.testing.assert_close(out, direct_attention(attn, x, n_queries), atol=1e-5, rtol=1e-4)


def test_class_attention_block_updates_only_special_tokens():
    torch.manual_seed(0)
    blk = Block(dim=16, heads=4, grid=3, mlp_ratio=2, dropout=0.0, drop_path=0.0, class_attention=True).eval()
    x = torch.randn(2, N_SPECIAL + 9, 16)
    y = blk(x)
    torch.testing.assert_close(y[:, N_SPECIAL:], x[:, N_SPECIAL:])
    assert not torch.allclose(y[:, :N_SPECIAL], x[:, :N_SPECIAL])
    # the special tokens see the patches: changing one patch changes them
    x2 = x.clone()
    x2[:, -1] = torch.randn(2, 16)  # (a constant shift would vanish in LayerNorm)
    assert not torch.allclose(blk(x2)[:, :N_SPECIAL], y[:, :N_SPECIAL])


def test_self_attention_block_updates_patches():
    blk = Block(dim=16, heads=4, grid=3, mlp_ratio=2, dropout=0.0, drop_path=0.0, class_attention=False).eval()
    x = torch.randn(2, N_SPECIAL + 9, 16)
    assert not torch.allclose(blk(x)[:, N_SPECIAL:], x[:, N_SPECIAL:])


def test_seed_vit_structure_and_size():
    model = build_model(SEED_VIT, 10)
    kinds = [blk.class_attention for blk in model.blocks]
    assert kinds == [False] * 8 + [True] * 4
    rates = [blk.drop_path.p for blk in model.blocks]
    assert rates[0] == 0 and math.isclose(rates[-1], 0.15) and rates == sorted(rates)
    # every listed part, counted: 9.50M (the seed reports 10.6M; see docs/classification.md)
    assert count_params(model) == 9_499_476
    parts = param_breakdown(model)
    assert parts["self-attention blocks"] == 8 * 790_064 and parts["class-attention blocks"] == 4 * 790_064
    assert sum(parts.values()) == count_params(model)


def test_vit_forward_averages_the_two_heads():
    torch.manual_seed(0)
    model = DistilledViT(num_classes=10, dim=32, depth=3, heads=4, class_attn_blocks=1).eval()
    x = torch.randn(3, 3, 32, 32)
    cls, dist = model.forward_heads(x)
    assert cls.shape == dist.shape == (3, 10)
    assert not torch.allclose(cls, dist)  # two heads, two tokens
    torch.testing.assert_close(model(x), (cls + dist) / 2)


def test_vit_rejects_bad_shapes():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        DistilledViT(10, image_size=30, patch_size=4)
    with pytest.raises(ValueError, match="class_attn_blocks"):
        DistilledViT(10, depth=4, class_attn_blocks=4)


def test_resnet50_matches_torchvision():
    ours = ResNet(num_classes=10, stem="imagenet")
    ref = torchvision.models.resnet50(num_classes=10)
    assert count_params(ours) == count_params(ref) == 23_528_522
    # the same network, not only as many parameters: torchvision's weights (every tensor, buffers
    # included) load into ours by name and give the same outputs
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref.train()(x)  # moves BatchNorm's running statistics off their initial values, which eval reads
        ours.load_state_dict(ref.state_dict(), strict=True)
        assert torch.equal(ours.eval()(x), ref.eval()(x))
    cifar = ResNet(num_classes=10, stem="cifar")
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, torch.nn.Identity)
    assert cifar(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_resnet_width_scales_every_stage():
    small = build_model(dict(arch="resnet", layers=[1, 1, 1, 1], width=16, stem="cifar"), 10)
    assert [small.layer1[0].conv3.out_channels, small.layer4[0].conv3.out_channels] == [64, 512]
    assert small.fc.in_features == 512
    x = torch.randn(2, 3, 32, 32)
    assert small(x).shape == (2, 10)
    # features flow through the scaled stages: 32 -> 4 spatially with the CIFAR stem
    feats = small.layer4(small.layer3(small.layer2(small.layer1(small.relu(small.bn1(small.conv1(x)))))))
    assert feats.shape == (2, 512, 4, 4)


def test_without_the_distillation_token_both_outputs_are_the_cls_head():
    torch.manual_seed(0)
    seed_like = DistilledViT(num_classes=10, dim=32, depth=3, heads=4, class_attn_blocks=1)
    model = DistilledViT(num_classes=10, dim=32, depth=3, heads=4, class_attn_blocks=1, distill_token=False).eval()
    assert model.dist_token is None and model.head_dist is None and model.n_special == 1
    # one token (dim) and one head (dim * classes + classes) fewer; the relative bias loses one special row/column
    assert count_params(seed_like) - count_params(model) == 32 + (32 * 10 + 10) + 3 * 4 * (1 + 1 + 3)
    x = torch.randn(3, 3, 32, 32)
    cls, dist = model.forward_heads(x)
    assert cls is dist and cls.shape == (3, 10)
    torch.testing.assert_close(model(x), cls)
    blk = model.blocks[-1]
    assert blk.class_attention and blk.attn.bias().shape == (4, 1 + 16 * 4, 1 + 16 * 4)


def test_absolute_position_embedding_replaces_the_relative_bias():
    torch.manual_seed(0)
    model = DistilledViT(num_classes=10, dim=32, depth=3, heads=4, class_attn_blocks=1, pos_embed="absolute").eval()
    assert all(blk.attn.bias is None for blk in model.blocks)
    assert model.pos_embed.shape == (1, 64, 32) and model.pos_embed.requires_grad
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    with torch.no_grad():
        model.pos_embed.add_(torch.randn_like(model.pos_embed))
    assert not torch.allclose(model(x), before)  # the embedding is used
    with pytest.raises(ValueError, match="pos_embed"):
        DistilledViT(num_classes=10, dim=32, depth=3, heads=4, class_attn_blocks=1, pos_embed="rope")


def test_all_self_attention_when_class_attn_blocks_is_zero():
    model = DistilledViT(num_classes=10, dim=32, depth=3, heads=4, class_attn_blocks=0)
    assert [blk.class_attention for blk in model.blocks] == [False] * 3
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_an_old_checkpoints_arch_block_builds_the_seed_model():
    """Checkpoints written before the ablation switches existed lack them: the defaults are the seed's."""
    from conftest import ROOT
    from vispipe.config import load

    shipped = load([ROOT / "config/config.yaml"])["classify"]["student"]["model"]
    assert (shipped["distill_token"], shipped["pos_embed"]) == (True, "relative")
    assert "distill_token" not in SEED_VIT and "pos_embed" not in SEED_VIT
    assert count_params(build_model(SEED_VIT, 10)) == count_params(build_model(shipped, 10)) == 9_499_476

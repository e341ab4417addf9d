"""The student: a small ViT for 32x32 images, after the seed notebook.

Parts and where they come from:
- 4x4 patch embedding (ViT, Dosovitskiy et al. 2021), no absolute position embedding
  (``pos_embed="absolute"`` swaps the relative bias below for ViT's learned one, an ablation).
- 2D decomposed relative position bias: a per-head learned bias for the row offset plus
  one for the column offset between two patches (the decomposition of MViTv2, Li et al.
  2022, applied to the attention logits as in Swin), with separate learned terms for the
  special tokens (special->patch, patch->special, special<->special).
- A CLS and a distillation token with one head each; at inference the two heads'
  logits are averaged (DeiT, Touvron et al. 2021). ``distill_token=False`` keeps the CLS
  token alone (an ablation; with a teacher its one head then learns both targets).
- The last blocks are class-attention blocks: only the special tokens are queries and
  only they are updated; the patch tokens are frozen keys/values (CaiT, Touvron et al. 2021).
- Pre-norm blocks, MLP ratio 4 with GELU, dropout after the projections, stochastic depth
  rising linearly over depth.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import MLP, StochasticDepth

N_SPECIAL = 2  # CLS + distillation token


class RelPosBias2D(nn.Module):
    """Attention bias of shape (heads, N, N) for N = specials + grid*grid tokens.

    For patches i=(r_i, c_i), j=(r_j, c_j): ``row[h, r_i - r_j] + col[h, c_i - c_j]``.
    Rows and columns involving a special token take its own learned terms instead.
    """

    def __init__(self, grid: int, heads: int, n_special: int = N_SPECIAL) -> None:
        super().__init__()
        self.grid, self.heads, self.n_special = grid, heads, n_special
        self.row = nn.Parameter(torch.zeros(heads, 2 * grid - 1))
        self.col = nn.Parameter(torch.zeros(heads, 2 * grid - 1))
        self.special_to_patch = nn.Parameter(torch.zeros(heads, n_special))
        self.patch_to_special = nn.Parameter(torch.zeros(heads, n_special))
        self.special_to_special = nn.Parameter(torch.zeros(heads, n_special, n_special))
        r, c = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
        r, c = r.flatten(), c.flatten()
        self.register_buffer("rel_row", (r[:, None] - r[None, :] + grid - 1), persistent=False)
        self.register_buffer("rel_col", (c[:, None] - c[None, :] + grid - 1), persistent=False)
        for p in self.parameters():
            nn.init.trunc_normal_(p, std=0.02)

    def forward(self) -> torch.Tensor:
        h, s, p = self.heads, self.n_special, self.grid * self.grid
        patch = self.row[:, self.rel_row] + self.col[:, self.rel_col]  # (h, P, P)
        top = torch.cat([self.special_to_special, self.special_to_patch[:, :, None].expand(h, s, p)], dim=2)
        bottom = torch.cat([self.patch_to_special[:, None, :].expand(h, p, s), patch], dim=2)
        return torch.cat([top, bottom], dim=1)


class Attention(nn.Module):
    """Multi-head attention, with the 2D relative bias unless ``rel_pos`` is False.

    With ``class_attention`` only the first ``n_special`` tokens are queries (CaiT):
    the output holds their updates alone.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        grid: int,
        dropout: float,
        class_attention: bool = False,
        n_special: int = N_SPECIAL,
        rel_pos: bool = True,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be a multiple of heads {heads}")
        self.heads, self.class_attention, self.n_special = heads, class_attention, n_special
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        self.bias = RelPosBias2D(grid, heads, n_special) if rel_pos else None

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        queries = x[:, : self.n_special] if self.class_attention else x
        q = self._split(self.q(queries))
        k, v = (self._split(t) for t in self.kv(x).chunk(2, dim=-1))
        bias = None if self.bias is None else self.bias()[:, : queries.shape[1]].to(q.dtype).unsqueeze(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(queries.shape)
        return self.proj_drop(self.proj(out))


class Block(nn.Module):
    """Pre-norm transformer block; a class-attention block updates only the special tokens."""

    def __init__(
        self,
        dim: int,
        heads: int,
        grid: int,
        mlp_ratio: float,
        dropout: float,
        drop_path: float,
        class_attention: bool,
        n_special: int = N_SPECIAL,
        rel_pos: bool = True,
    ) -> None:
        super().__init__()
        self.class_attention, self.n_special = class_attention, n_special
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, grid, dropout, class_attention, n_special, rel_pos)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, [int(dim * mlp_ratio), dim], activation_layer=nn.GELU, dropout=dropout)
        self.drop_path = StochasticDepth(drop_path, mode="row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.class_attention:
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        special, patches = x[:, : self.n_special], x[:, self.n_special :]
        special = special + self.drop_path(self.attn(self.norm1(x)))
        special = special + self.drop_path(self.mlp(self.norm2(special)))
        return torch.cat([special, patches], dim=1)


class DistilledViT(nn.Module):
    """ViT with CLS + distillation tokens, relative position bias and class-attention tail.

    Two switches exist for ablations; their defaults are the seed's model:
    ``distill_token=False`` drops the distillation token and its head (both outputs of
    :meth:`forward_heads` are then the CLS head's), and ``pos_embed="absolute"`` adds a learned
    position embedding to the patch tokens instead of the relative bias in every block.
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int = 32,
        patch_size: int = 4,
        dim: int = 256,
        depth: int = 12,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        class_attn_blocks: int = 4,
        dropout: float = 0.05,
        drop_path: float = 0.15,
        distill_token: bool = True,
        pos_embed: str = "relative",
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
        if not 0 <= class_attn_blocks < depth:
            raise ValueError(f"class_attn_blocks must lie in [0, depth={depth}), got {class_attn_blocks}")
        if pos_embed not in ("relative", "absolute"):
            raise ValueError(f"pos_embed must be 'relative' or 'absolute', got {pos_embed!r}")
        grid = image_size // patch_size
        self.n_special = 2 if distill_token else 1
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if distill_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, dim)) if pos_embed == "absolute" else None
        self.pos_drop = nn.Dropout(dropout)
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(
                dim,
                heads,
                grid,
                mlp_ratio,
                dropout,
                rates[i],
                class_attention=i >= depth - class_attn_blocks,
                n_special=self.n_special,
                rel_pos=self.pos_embed is None,
            )  # fmt: skip
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.head_dist = nn.Linear(dim, num_classes) if distill_token else None
        self._init_weights()

    def _init_weights(self) -> None:
        for token in (self.cls_token, self.dist_token, self.pos_embed):
            if token is not None:
                nn.init.trunc_normal_(token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_heads(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the CLS head and of the distillation head (the CLS head's twice without the token)."""
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        b = x.shape[0]
        special = [self.cls_token] if self.dist_token is None else [self.cls_token, self.dist_token]
        x = torch.cat([*(t.expand(b, -1, -1) for t in special), x], dim=1)
        x = self.pos_drop(x)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x[:, : self.n_special])
        cls = self.head(x[:, 0])
        return cls, (cls if self.head_dist is None else self.head_dist(x[:, 1]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Inference logits: the average of both heads (DeiT), or the CLS head alone without the token."""
        cls, dist = self.forward_heads(images)
        return cls if self.head_dist is None else (cls + dist) / 2

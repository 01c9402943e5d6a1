"""AFUNet (Li, Ni, Yang, ICCV 2025), written from docs/afunet-spec.md.

A deep-unfolding network: four Alignment-Fusion Modules, each a pair of
window cross-attention alignments (SAM), a Swin transformer group (SFM), two
global channel-attention proximal operators (CAPO) and small MLPs that play
the role of the unfolded optimisation step.

Call contract:

* Input ``x``: ``B×18×H×W`` float32, three 6-channel frames (short,
  reference, long), each ``lin R, G, B, ldr R, G, B`` with
  ``ldr = code / 65536`` and ``lin = ldr ** 2.2 / e_i`` (``e_0 = 1``, the
  shortest frame). :func:`make_input` builds it.
* Any H, W >= 8; the network reflect-pads to a multiple of 8 itself and crops.
  Its output depends on how much padding there is (the CAPO statistics are
  global): :func:`pad_amounts` gives the authors' test-time rule.
* Output: ``B×3×H×W`` HDR in the short-exposure linear domain, in (0, 1)
  (sigmoid), not tone-mapped.

Module attribute names follow the authors' state-dict keys exactly
(``SFM.0.residual_group.blocks.1.attn.qkv.weight`` …), because strict loading
compares them key by key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

#: Window side of every attention (spec section 4): 64 tokens per window.
WINDOW = 8
#: Shift of the odd SFM blocks.
SHIFT = WINDOW // 2
#: Embedding width and per-frame width.
EMBED = 72
FRAME_CH = EMBED // 3
#: Unfolding iterations (len(depths)) and Swin blocks per SFM.
ITERATIONS = 4
DEPTH = 5
#: The authors' test-time padding unit (test.py ``--patch_size``).
TEST_PATCH = 128
#: Mask value between tokens of different regions of a shifted window (not −inf).
MASK_VALUE = -100.0
#: ``img_size`` the authors built the model with: only sizes the stored masks.
_STORED_MASK_SIZE = 40
#: Windows per attention batch. Each window's result depends on that window
#: alone, so batching only bounds memory: the logits of 256 windows are
#: 16 MiB (4 heads × 64 × 64 floats each) instead of 1 KiB per pixel of the
#: image, several times over (logits, softmax, q/k/v).
WINDOW_BATCH = 256

#: Callback for intermediate tensors: ``tap(name, tensor)``, names as the
#: debug fixture's keys (``conv1``, ``SFM.0``, ``inv.0.input``, ``out.0`` …).
Tap = Callable[[str, torch.Tensor], None]


def relative_position_index(window: int = WINDOW) -> torch.Tensor:
    """``(yi − yj + w−1)·(2w−1) + (xi − xj + w−1)`` for tokens i, j of a window (int64, w²×w²)."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack((ys.flatten(), xs.flatten()))  # 2×64
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return rel[0] * (2 * window - 1) + rel[1]


def shift_mask(hp: int, wp: int, window: int = WINDOW, shift: int = SHIFT) -> torch.Tensor:
    """Attention mask of a shifted block for an Hp×Wp map: nW×64×64, 0 or −100 (spec 6.3)."""

    def band(n: int) -> torch.Tensor:
        lab = torch.zeros(n, dtype=torch.int64)
        lab[n - window : n - shift] = 1
        lab[n - shift :] = 2
        return lab

    labels = (3 * band(hp)[:, None] + band(wp)[None, :]).float()
    wins = partition(labels[None, :, :, None], window).squeeze(-1)  # nW×64
    diff = wins[:, None, :] != wins[:, :, None]
    return torch.where(diff, torch.tensor(MASK_VALUE), torch.tensor(0.0))


def partition(x: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """``B×Hp×Wp×C`` → ``(B·nW)×w²×C``, windows row-major, tokens row-major inside."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def unpartition(x: torch.Tensor, b: int, h: int, w: int, window: int = WINDOW) -> torch.Tensor:
    """Inverse of :func:`partition`: ``(B·nW)×w²×C`` → ``B×Hp×Wp×C``."""
    c = x.shape[-1]
    x = x.view(b, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``B×C×H×W`` → ``B×(H·W)×C`` (row-major token order)."""
    return x.flatten(2).transpose(1, 2)


def to_image(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``B×(H·W)×C`` → ``B×C×H×W``."""
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)


def conv3x3(c_in: int, c_out: int, *, groups: int = 1) -> nn.Conv2d:
    """3×3 convolution with bias and 1-pixel **reflect** padding (every 3×3 conv of AFUNet)."""
    return nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="reflect", groups=groups)


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` over the last axis (exact erf GELU)."""

    def __init__(self, c_in: int, hidden: int, c_out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(c_in, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """softmax(q·kᵀ + bias [+ mask]) · v for windows ``b×heads×64×d``.

    ``q`` is already scaled; ``bias`` heads×64×64; ``mask`` either one per
    window (b×64×64) or the nW×64×64 of one image when b is a multiple of nW.
    """
    logits = q @ k.transpose(-2, -1)
    logits += bias  # in place: the logits are the largest tensors of the network
    if mask is not None:
        nw = mask.shape[0]
        logits.view(-1, nw, *logits.shape[1:]).add_(mask[None, :, None])
    return logits.softmax(dim=-1) @ v


class _RelativeBias(nn.Module):
    """The relative-position bias table (225×heads) and its index buffer."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * WINDOW - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index())

    def bias(self) -> torch.Tensor:
        """heads×64×64 bias, ``B_h[i, j] = table[index[i, j], h]``."""
        n = WINDOW * WINDOW
        table = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return table.view(n, n, self.heads).permute(2, 0, 1).contiguous()


class SelfAttention(_RelativeBias):
    """Window multi-head self-attention of the SFM blocks (72 ch, 4 heads)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(heads)
        self.dim = dim
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x``: windows ``(B·nW)×64×C`` → same shape, :data:`WINDOW_BATCH` windows at a time.

        ``mask``: nW×64×64 for the windows of one image (repeated over the batch).
        """
        bw, n, c = x.shape
        bias = self.bias()
        if bw <= WINDOW_BATCH:
            return self._windows(x, bias, mask)
        out = torch.empty_like(x)
        for i in range(0, bw, WINDOW_BATCH):
            j = min(bw, i + WINDOW_BATCH)
            m = None
            if mask is not None:
                m = mask[torch.arange(i, j, device=mask.device) % mask.shape[0]]
            out[i:j] = self._windows(x[i:j], bias, m)
        return out

    def _windows(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        o = _window_attention(qkv[0] * self.scale, qkv[1], qkv[2], bias, mask)
        return self.proj(o.transpose(1, 2).reshape(bw, n, c))


class SwinBlock(nn.Module):
    """Pre-norm window attention (shifted or not) and MLP, both residual (spec 6.4)."""

    def __init__(self, dim: int, heads: int, shift: int) -> None:
        super().__init__()
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, 2 * dim, dim)
        if shift:
            # Stored by the authors for a 40×40 map and kept for strict loading;
            # the forward pass computes the mask for the actual size (identical at 40×40).
            self.register_buffer("attn_mask", shift_mask(_STORED_MASK_SIZE, _STORED_MASK_SIZE))

    def forward(self, u: torch.Tensor, hp: int, wp: int, mask: torch.Tensor | None) -> torch.Tensor:
        """``u``: ``B×N×C`` token map of an Hp×Wp image; ``mask`` for shifted blocks."""
        b, n, c = u.shape
        x = self.norm1(u).view(b, hp, wp, c)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        o = unpartition(self.attn(partition(x), mask if self.shift else None), b, hp, wp)
        if self.shift:
            o = torch.roll(o, shifts=(self.shift, self.shift), dims=(1, 2))
        u = u + o.reshape(b, n, c)
        return u + self.mlp(self.norm2(u))


class _Group(nn.Module):
    """Holds ``blocks`` so that keys read ``residual_group.blocks.j``."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


class SFM(nn.Module):
    """Spatial feature module: five Swin blocks, a 3×3 conv, a residual (spec 6)."""

    def __init__(self) -> None:
        super().__init__()
        self.residual_group = _Group([SwinBlock(EMBED, 4, 0 if j % 2 == 0 else SHIFT) for j in range(DEPTH)])
        self.conv = conv3x3(EMBED, EMBED)

    def forward(self, z: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
        mask = shift_mask(hp, wp).to(device=z.device, dtype=z.dtype)
        u = z
        for block in self.residual_group.blocks:
            u = block(u, hp, wp, mask)
        return to_tokens(self.conv(to_image(u, hp, wp))) + z


class CrossAttention(_RelativeBias):
    """Window cross-attention of SAM: queries from the frame, keys/values from the sum (24 ch, 2 heads)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(heads)
        self.scale = (dim // heads) ** -0.5
        self.kv = nn.Linear(dim, 2 * dim)
        self.q = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``a``, ``z``: windows ``(B·nW)×64×C`` → same shape."""
        bw, n, c = a.shape
        d = c // self.heads
        q = self.q(a).view(bw, n, self.heads, d).transpose(1, 2)
        kv = self.kv(z).view(bw, n, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        o = _window_attention(q * self.scale, kv[0], kv[1], self.bias(), None)
        return self.proj(o.transpose(1, 2).reshape(bw, n, c))


class SAMBlock(nn.Module):
    """The one block of a SAM: no LayerNorm, its "mlp" a depthwise 3×3 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = CrossAttention(FRAME_CH, 2)
        self.mlp = conv3x3(FRAME_CH, FRAME_CH, groups=FRAME_CH)


class SAM(nn.Module):
    """Spatial alignment module ``SAM(p, a)`` (spec 8): unshifted, p added twice."""

    def __init__(self) -> None:
        super().__init__()
        self.residual_group = _Group([SAMBlock()])

    def forward(self, p: torch.Tensor, a: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
        block = self.residual_group.blocks[0]
        b, n, c = p.shape
        z = p + a
        o = block.attn(partition(a.view(b, hp, wp, c)), partition(z.view(b, hp, wp, c)))
        x = p + unpartition(o, b, hp, wp).reshape(b, n, c)
        x = x + to_tokens(block.mlp(to_image(x, hp, wp)))
        return x + p


class ChannelAttention(nn.Module):
    """CAPO's global "transposed" attention: 12×12 per head over all pixels."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, 1, bias=False)
        self.k = nn.Conv2d(dim, dim, 1, bias=False)
        self.v = nn.Conv2d(dim, dim, 1, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, d: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``d``, ``z``: ``B×C×H×W`` → ``B×C×H×W``."""
        b, c, h, w = d.shape
        split = lambda t: t.reshape(b, self.heads, c // self.heads, h * w)  # noqa: E731
        q = F.normalize(split(self.q(d)), dim=-1, eps=1e-12)
        k = F.normalize(split(self.k(z)), dim=-1, eps=1e-12)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        o = (attn @ split(self.v(z))).reshape(b, c, h, w)
        return self.project_out(o)


class CAPO(nn.Module):
    """Cross-attention proximal operator ``CAPO(x, d)`` (spec 7); the caller adds x again."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = ChannelAttention(FRAME_CH, 2)
        self.conv = conv3x3(FRAME_CH, FRAME_CH, groups=FRAME_CH)

    def forward(self, x: torch.Tensor, d: torch.Tensor, hp: int, wp: int) -> torch.Tensor:
        xi, di = to_image(x, hp, wp), to_image(d, hp, wp)
        c = xi + self.attn(di, xi + di)
        return to_tokens(c + self.conv(c))


class _PatchNorm(nn.Module):
    """Holds ``norm`` so that keys read ``patch_embed.norm.weight``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-5)


def _modules(make: Callable[[], nn.Module]) -> nn.ModuleList:
    return nn.ModuleList([make() for _ in range(ITERATIONS)])


class AFUNet(nn.Module):
    """AFUNet as the authors' test.py builds it: 1,162,035 parameters."""

    arch: ClassVar[str] = "AFUNet"
    #: Input channels: three frames × (linear RGB, LDR RGB).
    in_channels: ClassVar[int] = 18

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(conv3x3(6, FRAME_CH))
        self.conv2 = nn.Sequential(conv3x3(6, FRAME_CH))
        self.conv3 = nn.Sequential(conv3x3(6, FRAME_CH))
        self.patch_embed = _PatchNorm(EMBED)
        self.patch_embed_div3 = _PatchNorm(FRAME_CH)  # in the checkpoints, never used
        hidden = 2 * FRAME_CH
        self.A1 = _modules(lambda: Mlp(FRAME_CH, hidden, FRAME_CH))
        self.A3 = _modules(lambda: Mlp(FRAME_CH, hidden, FRAME_CH))
        self.A2_T = _modules(lambda: Mlp(FRAME_CH, hidden, FRAME_CH))
        self.inv = _modules(lambda: Mlp(FRAME_CH, hidden, FRAME_CH))
        self.a_12 = _modules(SAM)
        self.a_32 = _modules(SAM)
        self.SFM = _modules(SFM)
        self.f_12 = _modules(CAPO)
        self.f_32 = _modules(CAPO)
        self.mlps_end = _modules(lambda: Mlp(EMBED, hidden, FRAME_CH))
        self.beta1 = nn.ParameterList([nn.Parameter(torch.tensor(0.5)) for _ in range(ITERATIONS)])
        self.beta2 = nn.ParameterList([nn.Parameter(torch.tensor(0.5)) for _ in range(ITERATIONS)])
        self.conv_skip = conv3x3(FRAME_CH, FRAME_CH)
        self.out = nn.Sequential(conv3x3(FRAME_CH, 3))

    def foreign_buffers(self) -> list[str]:
        """Names of loaded buffers that differ from what the architecture computes.

        ``relative_position_index`` (used by the forward pass) must equal the
        spec 6.2 formula, ``attn_mask`` (stored, never used) the 40×40 mask.
        """
        index, mask = relative_position_index(), shift_mask(_STORED_MASK_SIZE, _STORED_MASK_SIZE)
        bad = []
        for name, buf in self.named_buffers():
            want = index if name.endswith("relative_position_index") else mask
            if not torch.equal(buf.cpu(), want.to(buf.dtype)):
                bad.append(name)
        return bad

    def forward(self, x: torch.Tensor, tap: Tap | None = None) -> torch.Tensor:
        """``x``: ``B×18×H×W`` → HDR ``B×3×H×W`` in (0, 1) (module docstring).

        ``tap``, if given, receives every intermediate the debug fixture holds.
        """
        note: Tap = tap or (lambda name, t: None)
        h, w = x.shape[-2:]
        hp, wp = -(-h // WINDOW) * WINDOW, -(-w // WINDOW) * WINDOW
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h), mode="reflect")
        f1, f2, f3 = self.conv1(x[:, 0:6]), self.conv2(x[:, 6:12]), self.conv3(x[:, 12:18])
        for name, f in (("conv1", f1), ("conv2", f2), ("conv3", f3)):
            note(name, f)
        t = self.patch_embed.norm(to_tokens(torch.cat((f1, f2, f3), dim=1)))
        note("patch_embed", t)
        a1, r, a3 = t[..., 0:FRAME_CH], t[..., FRAME_CH : 2 * FRAME_CH], t[..., 2 * FRAME_CH :]
        state = r
        for k in range(ITERATIONS):
            p1, p3 = self.A1[k](state), self.A3[k](state)
            note(f"A1.{k}", p1)
            note(f"A3.{k}", p3)
            a1 = self.a_12[k](p1, a1, hp, wp)
            a3 = self.a_32[k](p3, a3, hp, wp)
            note(f"a_12.{k}", a1)
            note(f"a_32.{k}", a3)
            d = self.SFM[k](torch.cat((a1, state, a3), dim=-1), hp, wp)
            note(f"SFM.{k}", d)
            du, dx, dv = d[..., 0:FRAME_CH], d[..., FRAME_CH : 2 * FRAME_CH], d[..., 2 * FRAME_CH :]
            cu, cv = self.f_12[k](state, du, hp, wp), self.f_32[k](state, dv, hp, wp)
            note(f"f_12.{k}", cu)
            note(f"f_32.{k}", cv)
            u, v = cu + state, cv + state
            dr = self.A2_T[k](r)
            note(f"A2_T.{k}", dr)
            s = dr + self.beta1[k] * u + self.beta2[k] * v
            note(f"inv.{k}.input", s)
            xc = self.inv[k](s)
            note(f"inv.{k}", xc)
            m = self.mlps_end[k](torch.cat((u, xc, v), dim=-1))
            note(f"mlps_end.{k}", m)
            state = m + dx
        skip = self.conv_skip(f2)
        note("conv_skip", skip)
        logits = self.out(to_image(state, hp, wp) + skip)
        note("out.0", logits)
        y = torch.sigmoid(logits)
        note("out", y)
        return y[:, :, 0:h, 0:w]


def pad_amounts(h: int, w: int, unit: int = TEST_PATCH) -> tuple[int, int]:
    """Bottom and right padding of the authors' test.py: up to the next multiple of ``unit``.

    Reflect padding needs ``pad < side``; where the authors' rule would break
    that (a side of 64 px or less) the side gets no padding beyond the
    network's own (to a multiple of 8).
    """
    pad_h, pad_w = (-h) % unit, (-w) % unit
    return (pad_h if pad_h < h else 0), (pad_w if pad_w < w else 0)


def make_input(
    ldrs: Sequence[torch.Tensor], exposures: Sequence[float], gamma: float = 2.2
) -> torch.Tensor:
    """The 18-channel network input (spec section 2) from three LDR frames.

    ``ldrs``: short, reference, long, each ``B×3×H×W`` float32 in [0, 1)
    (``code / 65536`` for the authors' 16-bit data). ``exposures``: exposure
    of each frame relative to the shortest, ``2 ** (ev − ev_0)``. Returns
    ``B×18×H×W``: per frame ``ldr ** 2.2 / e`` then ``ldr``.
    """
    # SAFNet's three 6-channel inputs, side by side (imported here: the
    # models package imports this module).
    from hdrmerge.models import make_frames

    return torch.cat(make_frames(ldrs, exposures, gamma), dim=1)


def run_padded(model: AFUNet, x: torch.Tensor) -> torch.Tensor:
    """The authors' test.py procedure: reflect-pad to a multiple of 128, run, crop (spec 3)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = pad_amounts(h, w)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    return model(x)[:, :, 0:h, 0:w]

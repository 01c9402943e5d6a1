"""Building blocks shared by SAFNet and SAFNet-S (spec sections 2-4).

All tensors are ``B×C×H×W``. Module attribute names follow the parameter names
of the authors' checkpoints exactly (``encoder.pyramid1.0.0.weight`` and so on),
because strict loading compares them key by key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_prelu(
    c_in: int, c_out: int, *, stride: int = 1, dilation: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv 3×3 with bias followed by a per-channel PReLU.

    Registered as ``Sequential(conv, prelu)`` so that the parameters are named
    ``<name>.0.weight``, ``<name>.0.bias`` and ``<name>.1.weight``.
    """
    return nn.Sequential(
        nn.Conv2d(
            c_in,
            c_out,
            3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            groups=groups,
            bias=True,
        ),
        nn.PReLU(c_out),
    )


def up2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear resize to exactly twice the height and width (align_corners=False)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _source_index(in_size: int, out_size: int, start: int, stop: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps of output positions ``start..stop`` (align_corners=False).

    Returns the lower and upper input indices and the upper tap's weight, for
    pixel-centre sampling: ``src = (dst + 0.5)·in/out − 0.5``, clamped at 0.
    """
    dst = torch.arange(start, stop, device=device, dtype=torch.float32)
    src = ((dst + 0.5) * (in_size / out_size) - 0.5).clamp_(min=0.0)
    i0 = src.floor().clamp_(max=in_size - 1)
    w1 = src - i0
    i0 = i0.long()
    i1 = (i0 + 1).clamp_(max=in_size - 1)
    return i0, i1, w1


def resize(
    x: torch.Tensor,
    size: tuple[int, int],
    *,
    rows: tuple[int, int] | None = None,
    cols: tuple[int, int] | None = None,
    full: tuple[int, int] | None = None,
    origin: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """Bilinear resize (align_corners=False) to ``size = (h, w)``, or a window of it.

    ``x`` may be a crop of a larger input of size ``full`` whose top-left is at
    ``origin``; ``rows``/``cols`` pick the output window to compute (default:
    all of it). The crop must hold every input row and column the window
    reads. Each output value is computed by the same arithmetic whatever the
    crop or window, so a resize done in pieces equals the whole one exactly.
    """
    in_h, in_w = full or (x.shape[-2], x.shape[-1])
    r0, r1 = rows or (0, size[0])
    c0, c1 = cols or (0, size[1])
    y0, y1, wy = _source_index(in_h, size[0], r0, r1, x.device)
    x0, x1, wx = _source_index(in_w, size[1], c0, c1, x.device)
    oy, ox = origin
    wy = wy.to(x.dtype).view(1, 1, -1, 1)
    wx = wx.to(x.dtype).view(1, 1, 1, -1)
    top = x.index_select(-2, y0 - oy)
    bottom = x.index_select(-2, y1 - oy)
    rows_mixed = top + (bottom - top) * wy
    left = rows_mixed.index_select(-1, x0 - ox)
    right = rows_mixed.index_select(-1, x1 - ox)
    return left + (right - left) * wx


def _channels_innermost(x: torch.Tensor) -> bool:
    """True when a B×C×H×W tensor keeps its channels adjacent in memory (channels_last)."""
    return x.dim() == 4 and x.shape[1] > 1 and x.stride(1) == 1


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """View C channels as ``groups × C/groups``, transpose, flatten back.

    A channels_last input is shuffled within each pixel's channel vector and
    stays channels_last: one copy with local access, where the NCHW recipe
    would copy across the whole image twice (out of and back to channels_last).
    """
    b, c, h, w = x.shape
    if _channels_innermost(x):
        nhwc = x.permute(0, 2, 3, 1).reshape(b, h, w, groups, c // groups)
        return nhwc.transpose(3, 4).reshape(b, h, w, c).permute(0, 3, 1, 2)
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def warp(
    x: torch.Tensor,
    flow: torch.Tensor,
    *,
    target_origin: tuple[int, int] = (0, 0),
    source_origin: tuple[int, int] = (0, 0),
    full: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Backward-warp ``x`` by ``flow`` (B×2×h×w, pixels; x then y): spec section 2.

    Samples ``x`` bilinearly at ``p + flow(p)``; samples outside the image take
    the nearest border pixel. Works in absolute pixel coordinates of an image
    of size ``full`` (default: the flow's size): the flow covers the window
    whose top-left is ``target_origin``, and ``x`` is a crop whose top-left is
    ``source_origin`` and which holds every pixel the samples touch. Each
    output value is computed by the same arithmetic whatever the windows, so
    warping tile by tile equals warping the whole image exactly.
    """
    b, c = x.shape[0], x.shape[1]
    h, w = flow.shape[-2], flow.shape[-1]
    full_h, full_w = full or (h, w)
    ty, tx = target_origin
    sy, sx = source_origin
    ys = torch.arange(ty, ty + h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(tx, tx + w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    px = (xs + flow[:, 0]).clamp_(0.0, full_w - 1.0)
    py = (ys + flow[:, 1]).clamp_(0.0, full_h - 1.0)
    x0f, y0f = px.floor(), py.floor()
    wx, wy = (px - x0f).unsqueeze(1).to(x.dtype), (py - y0f).unsqueeze(1).to(x.dtype)
    x0, y0 = x0f.long(), y0f.long()
    x1, y1 = (x0 + 1).clamp_(max=full_w - 1), (y0 + 1).clamp_(max=full_h - 1)
    src_w = x.shape[-1]
    if _channels_innermost(x):
        # channels_last: each tap fetches a pixel's whole channel vector (one
        # row of a (H·W)×C table), and the result stays channels_last.
        rows = x.permute(0, 2, 3, 1).reshape(-1, c)
        per_image = x.shape[-2] * src_w
        first_row = (torch.arange(b, device=x.device) * per_image).view(b, 1, 1)

        def tap(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
            idx = (yy - sy) * src_w + (xx - sx) + first_row
            picked = rows.index_select(0, idx.view(-1))
            return picked.view(b, h, w, c).permute(0, 3, 1, 2)
    else:
        flat = x.reshape(b, c, -1)

        def tap(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
            idx = ((yy - sy) * src_w + (xx - sx)).view(b, 1, h * w).expand(b, c, h * w)
            return flat.gather(2, idx).view(b, c, h, w)

    a, b_ = tap(y0, x0), tap(y0, x1)
    top = a + (b_ - a) * wx
    a, b_ = tap(y1, x0), tap(y1, x1)
    bottom = a + (b_ - a) * wx
    return top + (bottom - top) * wy


class Encoder(nn.Module):
    """Four stride-2 stages, 40 channels each (spec section 3).

    Input: one frame, B×6×h×w (h, w multiples of 16). Output: features at 1/2,
    1/4, 1/8 and 1/16 of the input size, each B×40×·×·.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pyramid1 = nn.Sequential(conv_prelu(6, 40, stride=2), conv_prelu(40, 40))
        self.pyramid2 = nn.Sequential(conv_prelu(40, 40, stride=2), conv_prelu(40, 40))
        self.pyramid3 = nn.Sequential(conv_prelu(40, 40, stride=2), conv_prelu(40, 40))
        self.pyramid4 = nn.Sequential(conv_prelu(40, 40, stride=2), conv_prelu(40, 40))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.pyramid1(x)
        f2 = self.pyramid2(f1)
        f3 = self.pyramid3(f2)
        f4 = self.pyramid4(f3)
        return [f1, f2, f3, f4]


class Decoder(nn.Module):
    """One coarse-to-fine step of flow and mask estimation (spec section 4).

    The same weights serve all four levels. Takes the three frames' features at
    one level (B×40×h×w each) and the state at that resolution (flows in pixels
    of that level, mask logits); returns the state at twice the resolution.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv_prelu(126, 120)
        self.conv2 = conv_prelu(120, 120, groups=3)
        self.conv3 = conv_prelu(120, 120, groups=3)
        self.conv4 = conv_prelu(120, 120, groups=3)
        self.conv5 = conv_prelu(120, 120)
        self.conv6 = nn.ConvTranspose2d(120, 6, 4, stride=2, padding=1, bias=True)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 … conv6 on the 126-channel input: B×6×2h×2w (steps 2-5)."""
        x = self.conv1(x)
        x = channel_shuffle(self.conv2(x), 3)
        x = channel_shuffle(self.conv3(x), 3)
        x = channel_shuffle(self.conv4(x), 3)
        return self.conv6(self.conv5(x))

    def forward(
        self,
        g0: torch.Tensor,
        g1: torch.Tensor,
        g2: torch.Tensor,
        f0: torch.Tensor,
        f2: torch.Tensor,
        m0: torch.Tensor,
        m2: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        r = self.residual(torch.cat((warp(g0, f0), g1, warp(g2, f2), f0, f2, m0, m2), dim=1))
        return (
            2.0 * up2(f0) + r[:, 0:2],
            2.0 * up2(f2) + r[:, 2:4],
            up2(m0) + r[:, 4:5],
            up2(m2) + r[:, 5:6],
        )

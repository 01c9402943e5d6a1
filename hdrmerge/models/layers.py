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


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to ``size = (h, w)`` (align_corners=False)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """View C channels as ``groups × C/groups``, transpose, flatten back."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def _base_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """Normalised sampling grid (1×H×W×2, x then y) of the pixel centres.

    Column j maps to ``-1 + 2j/(W-1)``: the "corner pixels are centres"
    convention of ``grid_sample(align_corners=True)``.
    """
    ys = torch.linspace(-1.0, 1.0, h, device=like.device, dtype=like.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=like.device, dtype=like.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1).unsqueeze(0)


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``x`` (B×C×H×W) by ``flow`` (B×2×H×W, pixels; x then y).

    Samples ``x`` bilinearly at ``p + flow(p)``; samples outside the image take
    the nearest border pixel (spec section 2).
    """
    _, _, h, w = flow.shape
    # Pixel displacements to normalised units: d / ((W-1)/2). A 1-pixel-wide or
    # -high image has no extent to normalise against; its displacement is moot
    # (border padding returns the single row/column anyway).
    sx = 2.0 / (w - 1) if w > 1 else 0.0
    sy = 2.0 / (h - 1) if h > 1 else 0.0
    offset = torch.stack((flow[:, 0] * sx, flow[:, 1] * sy), dim=-1)
    grid = _base_grid(h, w, flow) + offset
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


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
        x = torch.cat((warp(g0, f0), g1, warp(g2, f2), f0, f2, m0, m2), dim=1)
        x = self.conv1(x)
        x = channel_shuffle(self.conv2(x), 3)
        x = channel_shuffle(self.conv3(x), 3)
        x = channel_shuffle(self.conv4(x), 3)
        x = self.conv5(x)
        r = self.conv6(x)
        return (
            2.0 * up2(f0) + r[:, 0:2],
            2.0 * up2(f2) + r[:, 2:4],
            up2(m0) + r[:, 4:5],
            up2(m2) + r[:, 5:6],
        )

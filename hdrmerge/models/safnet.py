"""SAFNet and SAFNet-S (Kong et al., ECCV 2024), written from docs/safnet-spec.md.

Call contract (both architectures):

* Inputs: three frames ``x0, x1, x2`` (short, reference, long), each
  ``B×6×H×W`` float32: channels 0-2 the linear image ``ldr ** 2.2 / e_i``,
  channels 3-5 the LDR image in [0, 1] (gamma 2.2), where ``e_i`` is the
  exposure of frame i relative to the shortest (``e_0 = 1``). Use
  :func:`hdrmerge.models.make_frames` to build them.
* Any H, W >= 2: the flow network runs at ``16·ceil(H·s/16) × 16·ceil(W·s/16)``
  and its output is resized back, so no padding is needed by the caller.
* Output: the HDR image ``B×3×H×W`` in the short-exposure linear domain (1.0 =
  saturation of the shortest exposure), clamped to [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from hdrmerge.models.layers import Decoder, Encoder, conv_prelu, resize, warp


@dataclass
class Motion:
    """What the flow network estimates, at full size H×W.

    ``flow0``/``flow2``: B×2×H×W, displacement in pixels (x, y) from the
    reference frame to frame 0 / frame 2. ``mask0``/``mask2``: B×1×H×W in
    [0, 1], after the sigmoid.
    """

    flow0: torch.Tensor
    flow2: torch.Tensor
    mask0: torch.Tensor
    mask2: torch.Tensor


@dataclass
class SAFNetOutput:
    """Everything one forward pass produces (all B×C×H×W, float).

    ``hdr``: refined HDR (3 ch, [0, 1]); ``hdr_m``: first-stage fused HDR
    (3 ch); ``motion``: flows and masks.
    """

    hdr: torch.Tensor
    hdr_m: torch.Tensor
    motion: Motion


def flow_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """Size at which the flow network runs for an H×W frame at scale ``s``."""
    return 16 * math.ceil(h * scale / 16), 16 * math.ceil(w * scale / 16)


def triangle_weights(i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Λlow, Λmid, Λhigh of the reference LDR ``i`` in [0, 1] (spec section 6)."""
    lo = i < 0.5
    w_low = torch.where(lo, torch.zeros_like(i), (i - 0.5) / 0.5)
    w_mid = torch.where(lo, i / 0.5, (1.0 - i) / 0.5)
    w_high = torch.where(lo, (0.5 - i) / 0.5, torch.zeros_like(i))
    return w_low, w_mid, w_high


def explicit_fusion(
    x0w: torch.Tensor,
    x1: torch.Tensor,
    x2w: torch.Tensor,
    mask0: torch.Tensor,
    mask2: torch.Tensor,
) -> torch.Tensor:
    """First-stage HDR ``Hm`` (B×3×H×W) from warped frames 0, 2 and frame 1.

    With masks of one and unwarped frames this is the plain triangle-weighted
    merge (used as a baseline by ``hdrmerge eval``).
    """
    w_low, w_mid, w_high = triangle_weights(x1[:, 3:6])
    w0 = w_low * mask0
    w1 = w_mid + w_low * (1.0 - mask0) + w_high * (1.0 - mask2)
    w2 = w_high * mask2
    num = w0 * x0w[:, 0:3] + w1 * x1[:, 0:3] + w2 * x2w[:, 0:3]
    return num / (w0 + w1 + w2 + 1e-9)


class RefineS(nn.Module):
    """SAFNet-S refinement: 27 → 32 channels, dilations 1,1,2,4,2,1, → 3."""

    #: How far (pixels) the refinement's convolutions reach (spec section 8).
    reach: ClassVar[int] = 12
    #: Context the warped sources need before warping (none: frames are warped as they are).
    source_reach: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = conv_prelu(27, 32)
        self.conv2 = conv_prelu(32, 32)
        self.conv3 = conv_prelu(32, 32, dilation=2)
        self.conv4 = conv_prelu(32, 32, dilation=4)
        self.conv5 = conv_prelu(32, 32, dilation=2)
        self.conv6 = conv_prelu(32, 32)
        self.conv7 = nn.Conv2d(32, 3, 3, padding=1)

    def source(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """What gets warped of frame ``k`` (0 or 2) for the refinement: the frame itself."""
        return x

    def sources(self, x0: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x0, x2

    def forward(
        self,
        s0w: torch.Tensor,
        x1: torch.Tensor,
        s2w: torch.Tensor,
        motion: Motion,
        hdr_m: torch.Tensor,
    ) -> torch.Tensor:
        """Residual from the warped frames 0, 2 (``s0w``, ``s2w``), frame 1, motion and Hm."""
        x = torch.cat(
            (
                s0w,
                x1,
                s2w,
                motion.flow0 / 20.0,
                motion.flow2 / 20.0,
                motion.mask0,
                motion.mask2,
                hdr_m,
            ),
            dim=1,
        )
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5, self.conv6):
            x = conv(x)
        return self.conv7(x)


class ResBlock(nn.Module):
    """``out = PReLU_c(x + conv_b(PReLU_a(conv_a(x))))`` with one dilation."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = conv_prelu(channels, channels, dilation=dilation)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.prelu = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(x + self.conv2(self.conv1(x)))


class RefineFull(nn.Module):
    """SAFNet refinement: per-frame features, five dilated residual blocks."""

    reach: ClassVar[int] = 23
    #: conv0/conv2 (two 3×3 convs) run before warping: 2 px of context.
    source_reach: ClassVar[int] = 2

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(conv_prelu(6, 20), conv_prelu(20, 20))
        self.conv1 = nn.Sequential(conv_prelu(15, 40), conv_prelu(40, 40))
        self.conv2 = nn.Sequential(conv_prelu(6, 20), conv_prelu(20, 20))
        self.resblock1 = ResBlock(80, 1)
        self.resblock2 = ResBlock(80, 2)
        self.resblock3 = ResBlock(80, 4)
        self.resblock4 = ResBlock(80, 2)
        self.resblock5 = ResBlock(80, 1)
        self.conv3 = nn.Conv2d(80, 3, 3, padding=1)

    def source(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """What gets warped of frame ``k`` (0 or 2): its conv0 / conv2 features."""
        return self.conv0(x) if k == 0 else self.conv2(x)

    def sources(self, x0: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv0(x0), self.conv2(x2)

    def forward(
        self,
        s0w: torch.Tensor,
        x1: torch.Tensor,
        s2w: torch.Tensor,
        motion: Motion,
        hdr_m: torch.Tensor,
    ) -> torch.Tensor:
        """Residual from the warped features of frames 0, 2, frame 1, motion and Hm."""
        c1 = self.conv1(
            torch.cat(
                (x1, motion.flow0 / 20.0, motion.flow2 / 20.0, motion.mask0, motion.mask2, hdr_m),
                dim=1,
            )
        )
        x = torch.cat((s0w, c1, s2w), dim=1)
        for block in (self.resblock1, self.resblock2, self.resblock3, self.resblock4, self.resblock5):
            x = block(x)
        return self.conv3(x)


class _SAFNetBase(nn.Module):
    """Encoder, decoder and explicit fusion; subclasses add the refinement."""

    #: Architecture name as shown to users and stored in registries.
    arch: ClassVar[str]
    refinenet: RefineS | RefineFull

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()

    @property
    def reach(self) -> int:
        """Pixels of real context the refinement needs around a tile."""
        return self.refinenet.reach

    def motion_lowres(
        self,
        x0: torch.Tensor,
        x1: torch.Tensor,
        x2: torch.Tensor,
        last_step: Callable[..., tuple[torch.Tensor, ...]] | None = None,
    ) -> torch.Tensor:
        """Flows and mask logits at the flow network's own resolution.

        Inputs: the three frames already at the flow size (multiples of 16).
        Returns B×6×h×w: flow0 (x, y), flow2 (x, y) in pixels of that size,
        mask0 and mask2 logits (before the sigmoid). ``last_step`` replaces the
        decoder for the finest level (hdrmerge.tiling runs it in tiles).
        """
        return self.decode([self.encoder(x) for x in (x0, x1, x2)], last_step)

    def decode(
        self,
        feats: list[list[torch.Tensor]],
        last_step: Callable[..., tuple[torch.Tensor, ...]] | None = None,
    ) -> torch.Tensor:
        """The coarse-to-fine decoder over the three frames' encoder features.

        ``feats[k]`` is frame k's feature pyramid (:class:`Encoder` output).
        Encoding frame by frame (rather than as one batch) keeps only one
        frame's full-size activations alive at a time.
        """
        coarsest = feats[1][3]
        b, _, h16, w16 = coarsest.shape
        zeros2 = coarsest.new_zeros((b, 2, h16, w16))
        zeros1 = coarsest.new_zeros((b, 1, h16, w16))
        f0, f2, m0, m2 = zeros2, zeros2, zeros1, zeros1
        for level in (3, 2, 1, 0):
            g0, g1, g2 = feats[0][level], feats[1][level], feats[2][level]
            step = last_step if level == 0 and last_step is not None else self.decoder
            f0, f2, m0, m2 = step(g0, g1, g2, f0, f2, m0, m2)
        return torch.cat((f0.float(), f2.float(), m0.float(), m2.float()), dim=1)

    @staticmethod
    def motion_window(
        low: torch.Tensor,
        size: tuple[int, int],
        rows: tuple[int, int] | None = None,
        cols: tuple[int, int] | None = None,
    ) -> Motion:
        """Full-size motion (spec section 5 steps 4-5) for a window of an H×W image."""
        h, w = size
        fh, fw = low.shape[-2], low.shape[-1]
        r0, r1 = rows or (0, h)
        c0, c1 = cols or (0, w)
        if (fh, fw) == (h, w):
            win = low[..., r0:r1, c0:c1]
        else:
            win = resize(low, (h, w), rows=(r0, r1), cols=(c0, c1))
            gain = torch.tensor([w / fw, h / fh, w / fw, h / fh, 1.0, 1.0], dtype=win.dtype, device=win.device)
            win = win * gain.view(1, 6, 1, 1)
        return Motion(win[:, 0:2], win[:, 2:4], torch.sigmoid(win[:, 4:5]), torch.sigmoid(win[:, 5:6]))

    def estimate_motion(
        self, x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, scale: float = 0.5
    ) -> Motion:
        """Flows and masks at full size from the frames at scale ``s`` (spec section 5)."""
        if not scale > 0:
            raise ValueError(f"flow scale must be > 0, got {scale}")
        h, w = x1.shape[-2], x1.shape[-1]
        fh, fw = flow_size(h, w, scale)
        if (fh, fw) != (h, w):
            x0, x1, x2 = (resize(x, (fh, fw)) for x in (x0, x1, x2))
        return self.motion_window(self.motion_lowres(x0, x1, x2), (h, w))

    def fuse(
        self, x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, motion: Motion
    ) -> SAFNetOutput:
        """First-stage and refined HDR from the frames and their motion."""
        x0w, x2w = warp(x0, motion.flow0), warp(x2, motion.flow2)
        hdr_m = explicit_fusion(x0w, x1, x2w, motion.mask0, motion.mask2)
        if self.refinenet.source_reach == 0:
            s0w, s2w = x0w, x2w  # SAFNet-S refines the warped frames themselves
        else:
            s0, s2 = self.refinenet.sources(x0, x2)
            s0w, s2w = warp(s0, motion.flow0), warp(s2, motion.flow2)
        residual = self.refinenet(s0w, x1, s2w, motion, hdr_m)
        return SAFNetOutput(torch.clamp(hdr_m + residual, 0.0, 1.0), hdr_m, motion)

    def run(
        self, x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, scale: float = 0.5
    ) -> SAFNetOutput:
        """The whole network; returns the HDR with its intermediates."""
        return self.fuse(x0, x1, x2, self.estimate_motion(x0, x1, x2, scale))

    def forward(
        self, x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, scale: float = 0.5
    ) -> torch.Tensor:
        """The refined HDR only, B×3×H×W in [0, 1]."""
        return self.run(x0, x1, x2, scale).hdr


class SAFNet(_SAFNetBase):
    """Full SAFNet: 1.12 M parameters."""

    arch = "SAFNet"

    def __init__(self) -> None:
        super().__init__()
        self.refinenet = RefineFull()


class SAFNetS(_SAFNetBase):
    """SAFNet-S, the small variant: 0.57 M parameters."""

    arch = "SAFNet-S"

    def __init__(self) -> None:
        super().__init__()
        self.refinenet = RefineS()


SAFNetModel = SAFNet | SAFNetS

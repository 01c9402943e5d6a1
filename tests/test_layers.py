"""The building blocks give the same numbers whatever the memory layout."""

from __future__ import annotations

import pytest
import torch

from hdrmerge.models.layers import channel_shuffle, warp


@pytest.fixture(params=[1, 2], ids=["batch1", "batch2"])
def batch(request) -> int:
    return request.param


def test_channel_shuffle_cardinality_and_order():
    x = torch.arange(6, dtype=torch.float32).view(1, 6, 1, 1).expand(1, 6, 2, 3).contiguous()
    y = channel_shuffle(x, 3)
    assert y.shape == x.shape
    # Channels g·2 + j go to j·3 + g: 0 1 | 2 3 | 4 5 → 0 2 4 1 3 5.
    assert y[0, :, 0, 0].tolist() == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]


def test_channel_shuffle_channels_last_equals_nchw(batch):
    x = torch.randn(batch, 120, 17, 23)
    cl = x.to(memory_format=torch.channels_last)
    y = channel_shuffle(cl, 3)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, channel_shuffle(x, 3))


@pytest.mark.parametrize("channels", [3, 6, 40])
def test_warp_channels_last_equals_nchw_bitwise(batch, channels):
    g = torch.Generator().manual_seed(channels)
    x = torch.randn(batch, channels, 31, 45, generator=g)
    flow = 12 * torch.randn(batch, 2, 31, 45, generator=g)  # reaches past the borders too
    ref = warp(x, flow)
    got = warp(x.to(memory_format=torch.channels_last), flow)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, ref)


def test_warp_of_a_channels_last_crop_equals_the_whole(batch):
    """A crop (strided, neither layout contiguous) warps like the full image."""
    x = torch.randn(batch, 40, 50, 60).to(memory_format=torch.channels_last)
    flow = torch.full((batch, 2, 10, 12), 1.5)
    whole = warp(x, torch.nn.functional.pad(flow, (20, 28, 20, 20)))[..., 20:30, 20:32]
    crop = x[..., 18:34, 18:36]
    got = warp(crop, flow, target_origin=(20, 20), source_origin=(18, 18), full=(50, 60))
    assert torch.equal(got, whole)


def test_warp_zero_flow_is_identity():
    x = torch.randn(1, 6, 9, 7).to(memory_format=torch.channels_last)
    assert torch.equal(warp(x, torch.zeros(1, 2, 9, 7)), x)

"""Decoded frames kept on disk for ``hdrmerge finetune`` (hdrmerge.frame_cache, finetune_inputs).

Real JPEG brackets rendered by hdrmerge.demo_scene are found and decoded as
``finetune`` does it; the crops read back from the cache are compared with the
frames decoded in memory, and the cache folder must be gone after the block,
also when it ends by an exception.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from hdrmerge.demo_scene import write_bracket
from hdrmerge.errors import HdrmergeError
from hdrmerge.finetune_inputs import find_brackets, load_training_brackets
from hdrmerge.frame_cache import CachedFrame, FrameCache
from hdrmerge.response import parse_response_option
from hdrmerge.tiling import Window, frame_window

T0 = datetime(2026, 3, 1, 9, 0, 0)


@pytest.fixture(scope="module")
def card(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("card")
    for i in range(3):
        write_bracket(folder, size=(48, 80), seed=i, motion_px=3, start=T0 + timedelta(minutes=i), prefix=f"b{i + 1}")
    return folder


def test_cached_brackets_give_the_same_network_inputs_as_brackets_in_memory(card, tmp_path):
    found = find_brackets([card]).brackets
    response = parse_response_option("gamma2.2")
    in_memory, _ = load_training_brackets(found, response)
    with FrameCache(tmp_path) as cache:
        cached, _ = load_training_brackets(found, response, cache=cache)
        files = sorted(cache.folder.iterdir())  # type: ignore[union-attr]
        # Three brackets of three 48×80 RGB uint8 shots, one raw file each.
        assert [f.stat().st_size for f in files] == [48 * 80 * 3] * 9
        assert [b.name for b in cached] == [b.name for b in in_memory]
        for mem, disk in zip(in_memory, cached):
            assert disk.exposures == mem.exposures
            for fm, fd in zip(mem.frames, disk.frames):
                assert isinstance(fd, CachedFrame) and (fd.size, fd.scale, fd.path) == (fm.size, fm.scale, fm.path)
                assert np.array_equal(np.asarray(fd.pixels), fm.pixels)
                win = Window(5, 37, 11, 59)
                for e in (1.0, 4.0):
                    assert torch.equal(frame_window(fd, e, win, torch.device("cpu")),
                                       frame_window(fm, e, win, torch.device("cpu")))
    assert list(tmp_path.iterdir()) == []


def test_the_cache_folder_is_deleted_when_the_block_ends_by_an_exception(card, tmp_path):
    found = find_brackets([card]).brackets
    with pytest.raises(KeyboardInterrupt):
        with FrameCache(tmp_path) as cache:
            load_training_brackets(found[:1], parse_response_option("gamma2.2"), cache=cache)
            assert len(list(cache.folder.iterdir())) == 3  # type: ignore[union-attr]
            raise KeyboardInterrupt  # as Ctrl-C while the brackets are read
    assert list(tmp_path.iterdir()) == []


def test_exception_brackets_that_will_not_fit_on_the_disk_are_refused_after_the_first_decode(card, tmp_path, monkeypatch):
    found = find_brackets([card]).brackets
    bracket_bytes = 3 * 48 * 80 * 3
    # 65 MiB free: less than three brackets need with the 64 MiB (+1 %) margin kept free.
    monkeypatch.setattr(FrameCache, "free_bytes", lambda self: 64 * 2**20 + bracket_bytes)
    with FrameCache(tmp_path) as cache:
        with pytest.raises(HdrmergeError) as info:
            load_training_brackets(found, parse_response_option("gamma2.2"), cache=cache)
        assert str(info.value) == (
            f"3 decoded brackets need 104 kB of disk in {cache.folder}, but 67 MB is free; free some space, "
            "point TMPDIR at a larger disk, or fine-tune on fewer brackets"
        )
        assert list(cache.folder.iterdir()) == []  # type: ignore[union-attr]  # refused before the first write
    assert list(tmp_path.iterdir()) == []

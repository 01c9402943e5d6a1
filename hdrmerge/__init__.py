"""hdrmerge: ghost-free HDR merging of bracketed photos with the SAFNet network.

This module must stay cheap to import: ``hdrmerge --version`` and ``--help``
import it, and nothing here may pull in torch, OpenCV or rawpy.
"""

from __future__ import annotations

import os

# Ask PyTorch to back its large CPU tensors (>= 2 MiB) with transparent huge
# pages. Every convolution makes a fresh activation of tens of MiB, and with
# 4 KiB pages each one cost ~10 000 page faults: half a million per 1500×1000
# merge, a quarter of its time; with huge pages the network runs 1.2× faster
# at 1.5 MP and 1.55× at 24 MP, and its peak memory does not grow
# (docs/performance.md). PyTorch reads this variable once, at its first
# allocation, so it must be set before torch is imported; a value the user
# set (e.g. 0) is kept.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"

__all__ = ["__version__"]

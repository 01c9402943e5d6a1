"""hdrmerge: ghost-free HDR merging of bracketed photos with the SAFNet network.

This module must stay cheap to import: ``hdrmerge --version`` and ``--help``
import it, and nothing here may pull in torch, OpenCV or rawpy.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

"""Third-party programs some tests run (exiftool, darktable-cli, rawtherapee-cli).

Locally a missing program skips its tests with the package to install; under
CI (``CI=true``, which .ci/run sets) it fails them instead, since .ci/run
installs every one of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

#: Debian package of each program.
PACKAGES = {
    "exiftool": "libimage-exiftool-perl",
    "darktable-cli": "darktable",
    "rawtherapee-cli": "rawtherapee",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(program: str) -> str:
    """The path of ``program``; skip (locally) or fail (CI) when it is not installed."""
    path = shutil.which(program)
    if path:
        return path
    message = f"{program} is not installed (Debian package {PACKAGES[program]}; .ci/run installs it)"
    if in_ci():
        pytest.fail(f"{message}, but CI is set: the client tests must run in CI")
    pytest.skip(message)


def exiftool_json(path: Path, *args: str) -> dict:
    """exiftool's tags of ``path`` as one JSON object (``-n``: numbers, not prose)."""
    import json

    exe = require("exiftool")
    r = subprocess.run([exe, "-j", "-n", "-G1", "-a", *args, str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


def exiftool_validate(path: Path) -> str:
    """What ``exiftool -validate -warning -a`` says of ``path`` (``OK`` when valid)."""
    exe = require("exiftool")
    r = subprocess.run([exe, "-validate", "-warning", "-a", "-s3", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()

"""The package metadata setuptools builds from pyproject.toml: an SPDX licence
expression with its file, and no deprecation warnings while building."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import REPO

_BUILD = """
import sys, warnings
warnings.simplefilter("always")
from setuptools import build_meta
with warnings.catch_warnings(record=True) as caught:
    name = build_meta.prepare_metadata_for_build_wheel(sys.argv[1])
for w in caught:
    print("WARNING", w.category.__name__, str(w.message).splitlines()[0])
print("DIST", name)
"""


def test_metadata_has_spdx_licence_and_builds_without_warnings(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "hdrmerge", src / "hdrmerge", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "meta"
    out.mkdir()
    r = subprocess.run([sys.executable, "-c", _BUILD, str(out)], cwd=src, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "WARNING" not in r.stdout and "Deprecat" not in r.stderr, r.stdout + r.stderr
    dist = r.stdout.split("DIST ")[1].strip()
    meta = (out / dist / "METADATA").read_text()
    assert "License-Expression: MIT" in meta.splitlines()
    assert "License-File: LICENSE" in meta.splitlines()
    assert (out / dist / "licenses" / "LICENSE").read_text() == (REPO / "LICENSE").read_text()

"""The hdrmerge CLI in a subprocess, for the scripts under benchmarks/ and docs/make_*_figures.py.

Benchmark scripts import it directly (their folder is on ``sys.path`` when run
as ``python benchmarks/NAME.py``); the figure scripts under docs/ put
benchmarks/ on ``sys.path`` first. Not a benchmark itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import MutableMapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """HDRMERGE_SHARED, by default ../shared next to this checkout (where the project keeps it)."""
    return Path(os.environ.get("HDRMERGE_SHARED", REPO.parent / "shared"))


def use_shared_weights(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Set HDRMERGE_WEIGHTS_DIR in ``env``, unless set, to ``shared_dir()/weights`` (as the Makefile
    sets it), so that hdrmerge finds the checkpoint without the cache or a download; returns ``env``.

    For a child's environment (:func:`hdrmerge`), or ``os.environ`` in a script that loads the
    weights in-process (before :func:`hdrmerge.weights.load_weights`, which reads it at call time).
    """
    env.setdefault("HDRMERGE_WEIGHTS_DIR", str(shared_dir() / "weights"))
    return env


def hdrmerge(*args: str, exit_on_failure: bool = False, shared_weights: bool = False,
             one_thread: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hdrmerge ARGS`` in a fresh interpreter and return it finished, output captured as text.

    This checkout's package wins when the caller runs with ``PYTHONPATH`` set to it (the child
    inherits the environment). ``one_thread``: OMP_NUM_THREADS=1 unless the environment already
    sets it; scores do not depend on it, and on a shared 2-core machine two threads per process
    mostly wait on each other (6.7 s vs 1.1 s per radiometry scene measured). ``shared_weights``:
    HDRMERGE_WEIGHTS_DIR, unless set, is ``shared_dir()/weights`` (as the Makefile sets it), so the
    run needs neither the cache nor a download. ``exit_on_failure``: a non-zero exit ends the
    calling script with ``hdrmerge <first two args> failed: <stderr>`` instead of returning.
    """
    env = dict(os.environ)
    if one_thread:
        env.setdefault("OMP_NUM_THREADS", "1")
    if shared_weights:
        use_shared_weights(env)
    r = subprocess.run([sys.executable, "-m", "hdrmerge", *args], capture_output=True, text=True, env=env)
    if exit_on_failure and r.returncode != 0:
        sys.exit(f"hdrmerge {' '.join(args[:2])} failed: {r.stderr.strip()}")
    return r

"""The download path against a local server speaking the Hub's resolve protocol.

``HF_ENDPOINT`` points huggingface_hub at the server; ``HDRMERGE_FALLBACK_URL``
points the second source (the authors' address) at the same server's /raw/.
Each case runs ``hdrmerge weights download`` in a fresh process, as a user
would, and checks the exit code, the one-line message and the cache contents.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from tests.conftest import SAFNET_S_PTH, run_cli
from tests.hubserver import HubServer, HubState

NAME = "SAFNet_S_siggraph17.pth"
INSTALL_HINT = ("fetch SAFNet_S_siggraph17.pth elsewhere and run `hdrmerge weights install safnet-s PATH`, "
                "or put it in a folder named by HDRMERGE_WEIGHTS_DIR")


@pytest.fixture(scope="module")
def checkpoint_bytes() -> bytes:
    return SAFNET_S_PTH.read_bytes()


def _download(env: dict[str, str], url: str, *, fallback: bool = False, extra: tuple[str, ...] = ()):
    env = dict(env, HF_ENDPOINT=url, HDRMERGE_FALLBACK_URL=f"{url}/raw" if fallback else "none")
    return run_cli("weights", "download", "safnet-s", *extra, env=env)


def _cache_listing(env: dict[str, str]) -> list[str]:
    root = Path(env["HDRMERGE_CACHE_DIR"])
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_smoke_download_verifies_and_caches_safetensors(isolated_env, checkpoint_bytes):
    state = HubState(files={NAME: checkpoint_bytes})
    with HubServer(state) as url:
        r = _download(isolated_env, url)
    assert r.returncode == 0, r.stderr
    assert "HEAD /hdrmerge/safnet/resolve/main/SAFNet_S_siggraph17.pth" in state.requests
    assert _cache_listing(isolated_env) == ["safnet-s.safetensors"]
    with safe_open(f"{isolated_env['HDRMERGE_CACHE_DIR']}/safnet-s.safetensors", "pt") as f:
        assert f.metadata()["source_sha256"].startswith("9d4e1819")
    # Offline afterwards, the cached copy serves `weights verify`.
    r = run_cli("weights", "verify", "--json", env=dict(isolated_env, HF_HUB_OFFLINE="1"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"] == [
        {"name": "safnet-s", "where": f"{isolated_env['HDRMERGE_CACHE_DIR']}/safnet-s.safetensors",
         "ok": True, "detail": "matches sha256:" + "9d4e18199fb7dd990ec9ca94e706b823c2eb0c451e514fc403103e86d69bd5fe"}
    ]


def test_hub_repo_and_revision_are_configurable(isolated_env, checkpoint_bytes):
    state = HubState(repo_id="someone/mirror", files={NAME: checkpoint_bytes})
    with HubServer(state) as url:
        r = _download(dict(isolated_env, HDRMERGE_HUB_REVISION="v1"), url, extra=("--hub-repo", "someone/mirror"))
    assert r.returncode == 0, r.stderr
    assert "GET /someone/mirror/resolve/v1/SAFNet_S_siggraph17.pth" in state.requests


def test_exception_wrong_hash_is_refused_and_not_cached(isolated_env, checkpoint_bytes):
    with HubServer(HubState(files={NAME: checkpoint_bytes}, mode={NAME: "corrupt"})) as url:
        r = _download(isolated_env, url)
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert "fails the integrity check for safnet-s: sha256" in line
    assert line.endswith(INSTALL_HINT)
    assert _cache_listing(isolated_env) == []


def test_exception_truncated_body_is_refused_and_not_cached(isolated_env, checkpoint_bytes):
    with HubServer(HubState(files={NAME: checkpoint_bytes}, mode={NAME: "truncate"})) as url:
        r = _download(isolated_env, url)
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert "expected 2287342" in line and line.endswith(INSTALL_HINT)
    assert _cache_listing(isolated_env) == []


def test_exception_server_error(isolated_env, checkpoint_bytes):
    with HubServer(HubState(files={NAME: checkpoint_bytes}, mode={NAME: "error-get"})) as url:
        r = _download(isolated_env, url)
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert "500" in line and line.endswith(INSTALL_HINT)
    assert _cache_listing(isolated_env) == []


def test_fallback_to_authors_address_when_hub_lacks_the_file(isolated_env, checkpoint_bytes):
    # The Hub answers 404 for the resolve URL; /raw/ (the fallback) has it.
    state = HubState(repo_id="not/this-one", files={NAME: checkpoint_bytes})
    with HubServer(state) as url:
        r = _download(isolated_env, url, fallback=True, extra=("--json",))
    assert r.returncode == 0, r.stderr
    assert "GET /raw/SAFNet_S_siggraph17.pth" in state.requests
    assert _cache_listing(isolated_env) == ["safnet-s.safetensors"]


def test_exception_fallback_also_truncated(isolated_env, checkpoint_bytes):
    state = HubState(repo_id="not/this-one", files={NAME: checkpoint_bytes}, mode={NAME: "truncate"})
    with HubServer(state) as url:
        r = _download(isolated_env, url, fallback=True)
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert "/raw/SAFNet_S_siggraph17.pth: " in line
    assert "1143671" in line  # how much arrived, whichever layer noticed
    assert _cache_listing(isolated_env) == []


def test_exception_offline_mode(isolated_env, checkpoint_bytes):
    state = HubState(files={NAME: checkpoint_bytes})
    with HubServer(state) as url:
        r = _download(dict(isolated_env, HF_HUB_OFFLINE="1"), url, fallback=True)
    assert r.returncode == 1
    assert _one_line(r.stderr) == (
        "error: safnet-s is not cached and HF_HUB_OFFLINE is set, so it cannot be downloaded; "
        "unset HF_HUB_OFFLINE, or " + INSTALL_HINT
    )
    assert state.requests == []  # not one request went out


def test_exception_no_network_at_all(isolated_env):
    # isolated_env points both sources at a port where nothing listens.
    r = run_cli("weights", "download", "safnet-s", env=isolated_env)
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert line.startswith("error: cannot download safnet-s (Hub hdrmerge/safnet@main: cannot connect")
    assert line.endswith(INSTALL_HINT)
    assert _cache_listing(isolated_env) == []


def _backoff_waits(monkeypatch) -> list[float]:
    """The seconds huggingface_hub's retry loop sleeps, recorded instead of slept."""
    from huggingface_hub.utils import _http as hub_http

    waits: list[float] = []
    monkeypatch.setattr(hub_http.time, "sleep", waits.append)
    return waits


def test_no_network_is_told_at_once_without_retry_waits(isolated_env, monkeypatch):
    # Nothing listens at the Hub's address: one refused connection is the answer
    # (huggingface_hub alone would wait 1+2+4+8+8 s between five more tries).
    from hdrmerge.errors import WeightsError
    from hdrmerge.weights.download import download
    from hdrmerge.weights.registry import CHECKPOINTS

    waits = _backoff_waits(monkeypatch)
    with pytest.raises(WeightsError) as err:
        download(CHECKPOINTS["safnet-s"], progress=False)
    assert str(err.value).startswith("cannot download safnet-s (Hub hdrmerge/safnet@main: cannot connect")
    assert waits == []


def test_server_error_is_still_retried_with_backoff(isolated_env, monkeypatch, checkpoint_bytes):
    # A server that answers, with HTTP 500, is busy rather than absent: huggingface_hub's retries stay.
    from hdrmerge.errors import WeightsError
    from hdrmerge.weights.download import download
    from hdrmerge.weights.registry import CHECKPOINTS

    waits = _backoff_waits(monkeypatch)
    state = HubState(files={NAME: checkpoint_bytes}, mode={NAME: "error"})
    with HubServer(state) as url:
        import huggingface_hub.constants as hub_constants

        monkeypatch.setattr(hub_constants, "ENDPOINT", url)
        monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HDRMERGE_FALLBACK_URL", "none")
        with pytest.raises(WeightsError, match=r"^cannot download safnet-s \(Hub hdrmerge/safnet@main: "):
            download(CHECKPOINTS["safnet-s"], progress=False)
    assert waits == [1, 2, 4, 8, 8]
    # hdrmerge's single look, huggingface_hub's first try, then its retry loop's six.
    assert state.requests.count(f"HEAD /hdrmerge/safnet/resolve/main/{NAME}") == 1 + 1 + 6


# --- AFUNet: hdrmerge's Hub mirror first, then the authors' repository at the pinned commit.


def test_afunet_fallback_address_is_the_pinned_commit(monkeypatch):
    from hdrmerge.weights.download import fallback_url, hub_repo
    from hdrmerge.weights.registry import CHECKPOINTS

    for key in ("HDRMERGE_FALLBACK_URL", "HDRMERGE_HUB_REPO", "HDRMERGE_HUB_REVISION"):
        monkeypatch.delenv(key, raising=False)
    ckpt = CHECKPOINTS["afunet-hu"]
    assert fallback_url(ckpt) == (
        "https://github.com/eezkni/AFUNet/raw/d57f7832f2d2a7d6d654a1d7f5668828d375c7dd/pretrain_model/Hu.pth"
    )
    assert hub_repo(ckpt) == ("hdrmerge/afunet", "main")
    assert hub_repo(CHECKPOINTS["safnet"]) == ("hdrmerge/safnet", "main")


def test_exception_afunet_download_with_other_blob_id_is_refused_by_both_sources(
    isolated_env, random_afunet_state, tmp_path
):
    import torch

    path = tmp_path / "Kalantari.pth"
    torch.save({"state_dict": random_afunet_state}, path)
    state = HubState(repo_id="hdrmerge/afunet", files={"Kalantari.pth": path.read_bytes()})
    with HubServer(state) as url:
        env = dict(isolated_env, HF_ENDPOINT=url, HDRMERGE_FALLBACK_URL=f"{url}/raw")
        r = run_cli("weights", "download", "afunet-kalantari", env=env)
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert "GET /hdrmerge/afunet/resolve/main/Kalantari.pth" in state.requests
    assert "GET /raw/Kalantari.pth" in state.requests
    refusal = "fails the integrity check for afunet-kalantari: git blob "
    assert line.startswith("error: cannot download afunet-kalantari (Hub hdrmerge/afunet@main: Kalantari.pth (")
    assert line.count(refusal) == 2 and line.count("expected 9e4cd349b7508d81…") == 2
    assert line.endswith("fetch Kalantari.pth elsewhere and run `hdrmerge weights install afunet-kalantari PATH`, "
                         "or put it in a folder named by HDRMERGE_WEIGHTS_DIR")
    assert _cache_listing(isolated_env) == []


def _start_stalled_download(env: dict[str, str], url: str, state: HubState) -> tuple[subprocess.Popen, Path]:
    """``weights download`` in a real process, stalled half-way: the process and its temporary folder."""
    env = {**os.environ, **env, "HF_ENDPOINT": url, "HDRMERGE_FALLBACK_URL": "none", "HF_HUB_DOWNLOAD_TIMEOUT": "120"}
    root = Path(env["HDRMERGE_CACHE_DIR"])
    before = set(root.glob(".download-*"))
    stalled = state.stalled
    proc = subprocess.Popen([sys.executable, "-m", "hdrmerge", "weights", "download", "safnet-s"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while state.stalled == stalled:  # until the server has sent it half the file
        assert proc.poll() is None and time.monotonic() < deadline, "the download did not start"
        time.sleep(0.1)
    (folder,) = set(root.glob(".download-*")) - before
    return proc, folder


def test_folder_of_a_killed_download_is_removed_by_the_next_but_a_running_ones_is_kept(isolated_env, checkpoint_bytes):
    state = HubState(files={NAME: checkpoint_bytes}, mode={NAME: "stall"})
    with HubServer(state) as url:
        killed, killed_dir = _start_stalled_download(isolated_env, url, state)
        running, running_dir = _start_stalled_download(isolated_env, url, state)
        try:
            os.kill(killed.pid, signal.SIGKILL)
            killed.wait()
            assert killed_dir.is_dir()  # kill -9 gives no chance to clean up
            assert f"-{killed.pid}-" in killed_dir.name and f"-{running.pid}-" in running_dir.name  # owners named
            state.mode[NAME] = "ok"
            r = _download(isolated_env, url)
            assert r.returncode == 0, r.stderr
            assert not killed_dir.exists()
            assert running.poll() is None and running_dir.is_dir()  # still downloading: left alone
            assert _cache_listing(isolated_env) == sorted([running_dir.name, "safnet-s.safetensors"])
        finally:
            running.kill()
            running.wait()
            state.release.set()

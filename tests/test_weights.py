"""The registry, integrity pins, the safetensors cache and the resolution order."""

from __future__ import annotations

import json
import re
import shutil
import sys

import pytest
import torch
from safetensors import safe_open

from hdrmerge.errors import ArchitectureError, InputError, WeightsError
from hdrmerge.weights import install, load_weights
from hdrmerge.weights.registry import CHECKPOINTS
from hdrmerge.weights.store import cached_path, file_digests, load_cached, verify_file
from tests.conftest import RANDOM_SAFNET_PTH, REPO, SAFNET_S_PTH, SHARED, run_cli


def test_registry_has_the_three_published_checkpoints():
    assert set(CHECKPOINTS) >= {"safnet-s", "safnet", "safnet-challenge123"}
    assert CHECKPOINTS["safnet-s"].arch == "SAFNet-S"
    assert CHECKPOINTS["safnet"].arch == "SAFNet"
    assert CHECKPOINTS["safnet-challenge123"].arch == "SAFNet"
    for c in CHECKPOINTS.values():
        assert "academic" in c.licence
        assert re.fullmatch(r"[0-9a-f]{40}", c.git_blob)


def test_registry_pins_agree_with_the_authors_facts():
    # shared/weights/README.md lists blob ids and sha256; SHA256SUMS the hash.
    facts = (SHARED / "weights" / "README.md").read_text()
    sums = dict(reversed(line.split()) for line in (SHARED / "weights" / "SHA256SUMS").read_text().splitlines())
    for c in CHECKPOINTS.values():
        assert c.git_blob in facts
        if c.sha256:
            assert sums[c.filename] == c.sha256


def test_project_sha256sums_file_matches_registry():
    lines = (REPO / "weights" / "SHA256SUMS").read_text().split("\n")
    listed = dict(reversed(line.split()) for line in lines if line.strip())
    assert listed == {c.filename: c.sha256 for c in CHECKPOINTS.values() if c.sha256}


def test_real_checkpoint_passes_both_pins():
    d = file_digests(SAFNET_S_PTH)
    c = CHECKPOINTS["safnet-s"]
    assert (d.sha256, d.git_blob, d.size) == (c.sha256, c.git_blob, c.size)
    assert verify_file(SAFNET_S_PTH, c) == d


def test_exception_damaged_file_fails_verification(tmp_path):
    bad = tmp_path / "SAFNet_S_siggraph17.pth"
    data = bytearray(SAFNET_S_PTH.read_bytes())
    data[5000] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"fails the integrity check for safnet-s: sha256 [0-9a-f]{16}…, expected 9d4e18199fb7dd99…"):
        verify_file(bad, CHECKPOINTS["safnet-s"])


def test_exception_git_blob_pin_for_unknown_sha256(tmp_path):
    with pytest.raises(WeightsError, match=r"fails the integrity check for safnet: git blob eebce8392160d16f…, expected b374983e7fbcada2…; it is the safnet-s checkpoint, not safnet"):
        verify_file(SAFNET_S_PTH, CHECKPOINTS["safnet"])


def test_install_forth_and_back_as_safetensors(isolated_env, safnet_s_state):
    dest = install("safnet-s", SAFNET_S_PTH)
    assert dest == cached_path(CHECKPOINTS["safnet-s"])
    with safe_open(str(dest), framework="pt") as f:
        meta = f.metadata()
        assert meta["source_sha256"] == CHECKPOINTS["safnet-s"].sha256
        assert meta["arch"] == "SAFNet-S"
        for k, v in safnet_s_state.items():
            assert torch.equal(f.get_tensor(k), v)
    loaded = load_weights("safnet-s")
    assert loaded.source == "cache" and loaded.name == "safnet-s" and loaded.arch == "SAFNet-S"
    assert loaded.sha256 == CHECKPOINTS["safnet-s"].sha256
    # Nothing but the safetensors file is left in the cache.
    assert sorted(p.name for p in dest.parent.iterdir()) == ["safnet-s.safetensors"]


def test_cached_load_never_unpickles(isolated_env, monkeypatch):
    install("safnet-s", SAFNET_S_PTH)

    def forbidden(*a, **k):
        raise AssertionError("torch.load called for a cached checkpoint")

    monkeypatch.setattr(torch, "load", forbidden)
    assert load_weights("safnet-s").source == "cache"


def test_exception_damaged_cache_is_removed(isolated_env):
    dest = install("safnet-s", SAFNET_S_PTH)
    data = bytearray(dest.read_bytes())
    data[-100] ^= 0xFF  # inside the last tensor's bytes
    dest.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"^cached safnet-s at .* was damaged \(its tensors do not match their recorded hash\) and has been removed; run `hdrmerge weights download safnet-s`"):
        load_cached(CHECKPOINTS["safnet-s"])
    assert not dest.exists()


def test_exception_install_wrong_file(isolated_env):
    with pytest.raises(WeightsError, match="fails the integrity check for safnet-s"):
        install("safnet-s", RANDOM_SAFNET_PTH)
    assert not cached_path(CHECKPOINTS["safnet-s"]).exists()


def test_resolution_order(isolated_env, tmp_path, monkeypatch):
    # 4. Nothing anywhere and no network: a download is attempted and fails.
    with pytest.raises(WeightsError, match="hdrmerge weights install safnet-s PATH"):
        load_weights("safnet-s")
    # 3. The cache.
    install("safnet-s", SAFNET_S_PTH)
    assert load_weights().source == "cache"
    # 2. HDRMERGE_WEIGHTS_DIR wins over the cache.
    wdir = tmp_path / "wdir"
    wdir.mkdir()
    shutil.copy(SAFNET_S_PTH, wdir / "SAFNet_S_siggraph17.pth")
    monkeypatch.setenv("HDRMERGE_WEIGHTS_DIR", str(wdir))
    got = load_weights("safnet-s")
    assert (got.source, got.path) == ("HDRMERGE_WEIGHTS_DIR", wdir / "SAFNet_S_siggraph17.pth")
    # 1. --weights wins over everything, and may be unregistered.
    got = load_weights(weights=RANDOM_SAFNET_PTH)
    assert (got.source, got.name, got.arch) == ("--weights", None, "SAFNet")


def test_exception_weights_dir_file_is_verified(isolated_env, tmp_path, monkeypatch):
    wdir = tmp_path / "wdir"
    wdir.mkdir()
    shutil.copy(RANDOM_SAFNET_PTH, wdir / "SAFNet_S_siggraph17.pth")
    monkeypatch.setenv("HDRMERGE_WEIGHTS_DIR", str(wdir))
    with pytest.raises(WeightsError, match="fails the integrity check for safnet-s"):
        load_weights("safnet-s")


def test_exception_weights_of_other_architecture_than_model(isolated_env):
    with pytest.raises(ArchitectureError, match=r"holds a SAFNet checkpoint, but SAFNet-S was asked for"):
        load_weights("safnet-s", weights=RANDOM_SAFNET_PTH)


def test_exception_weights_file_missing_or_foreign(isolated_env, tmp_path):
    with pytest.raises(InputError, match=r"^--weights .*nope\.pth: no such file$"):
        load_weights(weights=tmp_path / "nope.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(InputError, match=r"is not a readable"):
        load_weights(weights=text)


def test_cli_weights_list_offline_json(isolated_env):
    env = dict(isolated_env, HF_HUB_OFFLINE="1", HDRMERGE_WEIGHTS_DIR=str(SHARED / "weights"))
    r = run_cli("weights", "list", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)["checkpoints"]}
    assert rows["safnet-s"]["where"].endswith("SAFNet_S_siggraph17.pth (HDRMERGE_WEIGHTS_DIR)")
    assert rows["safnet"]["cached"] is False
    assert "academic research use only" in rows["safnet"]["licence"]


def test_cli_weights_list_table_shows_licence(isolated_env):
    r = run_cli("weights", "list", env=isolated_env)
    assert r.returncode == 0
    assert "safnet-challenge123" in r.stdout.replace("\n", "") or "safnet-challe" in r.stdout
    assert "academic research use only" in r.stdout


def test_cli_install_then_verify(isolated_env):
    r = run_cli("weights", "install", "safnet-s", str(SAFNET_S_PTH), env=isolated_env)
    assert r.returncode == 0, r.stderr
    assert "safnet-s: verified and cached at" in r.stdout
    r = run_cli("weights", "verify", "--json", env=isolated_env)
    assert r.returncode == 0
    assert json.loads(r.stdout)["ok"] is True
    # Damage the cache: verify fails with exit 1 and says so.
    path = cached_path(CHECKPOINTS["safnet-s"])
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    r = run_cli("weights", "verify", "--json", env=isolated_env)
    assert r.returncode == 1
    result = json.loads(r.stdout)["results"][0]
    assert result["ok"] is False and "was damaged" in result["detail"]


def test_cli_help_and_version_do_not_import_torch():
    code = (
        "import sys\n"
        "from hdrmerge.cli import run\n"
        "for args in (['--version'], ['--help'], ['fuse', '--help'], ['weights', 'list', '--help']):\n"
        "    assert run(args) == 0\n"
        "heavy = [m for m in ('torch', 'cv2', 'rawpy', 'huggingface_hub') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    import subprocess

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

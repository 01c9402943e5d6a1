"""The registry, integrity pins, the safetensors cache and the resolution order."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from hdrmerge.errors import ArchitectureError, InputError, WeightsError
from hdrmerge.weights import install, load_weights
from hdrmerge.weights.registry import CHECKPOINTS
from hdrmerge.weights.store import cached_path, file_digests, load_cached, verify_file
from tests.conftest import RANDOM_SAFNET_PTH, REPO, SAFNET_S_PTH, SHARED, run_cli, run_cli_in_process

AFUNET = ("afunet-kalantari", "afunet-hu", "afunet-tel")


def test_registry_has_the_published_checkpoints():
    assert set(CHECKPOINTS) >= {"safnet-s", "safnet", "safnet-challenge123", *AFUNET}
    assert CHECKPOINTS["safnet-s"].arch == "SAFNet-S"
    assert CHECKPOINTS["safnet"].arch == "SAFNet"
    assert CHECKPOINTS["safnet-challenge123"].arch == "SAFNet"
    for c in CHECKPOINTS.values():
        if c.arch == "AFUNet":
            assert c.licence.startswith("MIT, as stated by the AFUNet authors' README")
            assert "no separate statement covers the checkpoints" in c.licence
            assert c.licence_short == "MIT"
        else:
            assert "academic" in c.licence
        assert re.fullmatch(r"[0-9a-f]{40}", c.git_blob)


def test_afunet_pins_and_addresses_agree_with_the_spec():
    # docs/afunet-spec.md section 0: file, training set and git blob id per
    # checkpoint, the commit, and the raw download address.
    spec = (SHARED / "docs" / "afunet-spec.md").read_text()
    commit = "d57f7832f2d2a7d6d654a1d7f5668828d375c7dd"
    assert f"`{commit}`" in spec
    for name, stem in zip(AFUNET, ("Kalantari", "Hu", "Tel")):
        c = CHECKPOINTS[name]
        assert (c.arch, c.filename, c.sha256) == ("AFUNet", f"{stem}.pth", None)
        assert f"| `pretrain_model/{stem}.pth` | " in spec
        assert f"`{c.git_blob}` |" in spec.split(f"`pretrain_model/{stem}.pth`")[1].split("\n")[0]
        assert c.url == f"https://github.com/eezkni/AFUNet/raw/{commit}/pretrain_model/{stem}.pth"
        assert c.pin == f"git-blob:{c.git_blob}"


def test_registry_pins_agree_with_the_authors_facts():
    # shared/weights/README.md lists SAFNet's blob ids and sha256; SHA256SUMS the hash.
    facts = (SHARED / "weights" / "README.md").read_text()
    sums = dict(reversed(line.split()) for line in (SHARED / "weights" / "SHA256SUMS").read_text().splitlines())
    for c in CHECKPOINTS.values():
        if c.arch == "AFUNet":
            continue  # pinned from docs/afunet-spec.md (test above)
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


@pytest.mark.parametrize(
    "env",
    [
        {"XDG_CACHE_HOME": "{tmp}/xdg"},  # HF_HOME unset: $XDG_CACHE_HOME/huggingface
        {},  # neither set: ~/.cache/huggingface
        {"XDG_CACHE_HOME": "{tmp}/xdg", "HF_HOME": "~/hf"},  # HF_HOME wins, ~ expanded
        {"HF_HOME": "$HDRMERGE_TEST_ROOT/hf", "HDRMERGE_TEST_ROOT": "{tmp}/root"},  # $VARS expanded
        {"XDG_CACHE_HOME": ""},  # set but empty counts as set, as in huggingface_hub
    ],
    ids=["xdg", "home", "hf-home-tilde", "hf-home-var", "xdg-empty"],
)
def test_cache_dir_is_hf_home_as_huggingface_hub_resolves_it(tmp_path, env):
    """The cache is $HF_HOME/hdrmerge, HF_HOME being what huggingface_hub itself computes."""
    clean = {k: v for k, v in os.environ.items() if k not in ("HDRMERGE_CACHE_DIR", "HF_HOME", "XDG_CACHE_HOME")}
    clean["HOME"] = str(tmp_path / "home")
    clean.update({k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()})
    code = (
        "import huggingface_hub.constants as c; from hdrmerge.weights.store import cache_dir; "
        "print(cache_dir()); print(c.HF_HOME)"
    )
    r = subprocess.run([sys.executable, "-c", code], env=clean, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    ours, hf_home = r.stdout.splitlines()
    assert ours == str(Path(hf_home) / "hdrmerge")
    assert "~" not in ours and "$" not in ours


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
    r = run_cli_in_process("weights", "list", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)["checkpoints"]}
    assert rows["safnet-s"]["where"].endswith("SAFNet_S_siggraph17.pth (HDRMERGE_WEIGHTS_DIR)")
    assert rows["safnet"]["cached"] is False
    assert rows["safnet"]["where"] == "not here; HF_HUB_OFFLINE is set: `hdrmerge weights install safnet PATH`"
    online = json.loads(run_cli_in_process("weights", "list", "--json", env=dict(env, HF_HUB_OFFLINE="0")).stdout)
    where = {row["name"]: row["where"] for row in online["checkpoints"]}
    assert where["safnet"] == f"downloaded on first use to {Path(isolated_env['HDRMERGE_CACHE_DIR']) / 'safnet.safetensors'}"
    assert "academic research use only" in rows["safnet"]["licence"]


def test_cli_weights_list_table_shows_licence(isolated_env):
    r = run_cli("weights", "list", env=isolated_env)
    assert r.returncode == 0
    # Piped: tab-separated lines, nothing wrapped; the licence note on stderr.
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert rows[0] == ["name", "architecture", "training set", "licence", "cached", "where"]
    assert [row[0] for row in rows[1:]] == list(CHECKPOINTS)
    cache = isolated_env["HDRMERGE_CACHE_DIR"]
    assert rows[1 + list(CHECKPOINTS).index("safnet-challenge123")] == ["safnet-challenge123", "SAFNet", "Challenge123", "academic only", "no",
                       f"downloaded on first use to {cache}/safnet-challenge123.safetensors"]
    assert "academic research use only" in r.stderr


def test_cli_install_then_verify(isolated_env):
    r = run_cli_in_process("weights", "install", "safnet-s", str(SAFNET_S_PTH), env=isolated_env)
    assert r.returncode == 0, r.stderr
    assert "safnet-s: verified and cached at" in r.stdout
    r = run_cli_in_process("weights", "verify", "--json", env=isolated_env)
    assert r.returncode == 0
    assert json.loads(r.stdout)["ok"] is True
    # Damage the cache: verify fails with exit 1 and says so.
    path = cached_path(CHECKPOINTS["safnet-s"])
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    r = run_cli_in_process("weights", "verify", "--json", env=isolated_env)
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


# --- AFUNet checkpoints: the authors' files are not available here, so a file
# in their exact format is built from the fixture's random weights. Its blob id
# differs from every pin, which is what the refusal tests need; the acceptance
# tests pin it in place of the published file for the duration of the test.


@pytest.fixture
def afunet_pth(tmp_path, random_afunet_state):
    """A file in the authors' format (train.py's dict, ``module.`` keys) named Kalantari.pth."""
    path = tmp_path / "src" / "Kalantari.pth"
    path.parent.mkdir()
    torch.save({"epoch": 1, "state_dict": random_afunet_state, "optimizer": {"state": {}, "param_groups": []}}, path)
    return path


def test_exception_afunet_file_with_other_blob_id_is_refused(isolated_env, afunet_pth):
    blob = file_digests(afunet_pth).git_blob
    with pytest.raises(WeightsError) as err:
        install("afunet-kalantari", afunet_pth)
    assert str(err.value) == (
        f"Kalantari.pth ({afunet_pth.stat().st_size} bytes) fails the integrity check for afunet-kalantari: "
        f"git blob {blob[:16]}…, expected 9e4cd349b7508d81…; "
        "the file is damaged or not the published checkpoint; fetch it again"
    )
    assert not cached_path(CHECKPOINTS["afunet-kalantari"]).exists()


def test_exception_afunet_file_in_weights_dir_is_verified(isolated_env, afunet_pth, monkeypatch):
    monkeypatch.setenv("HDRMERGE_WEIGHTS_DIR", str(afunet_pth.parent))
    with pytest.raises(WeightsError, match=r"^Kalantari\.pth .* fails the integrity check for afunet-kalantari: git blob"):
        load_weights("afunet-kalantari")


def test_afunet_install_caches_safetensors_and_loads_as_afunet(isolated_env, afunet_pth, monkeypatch, random_afunet_state):
    from dataclasses import replace

    pinned = replace(CHECKPOINTS["afunet-kalantari"], git_blob=file_digests(afunet_pth).git_blob)
    monkeypatch.setitem(CHECKPOINTS, "afunet-kalantari", pinned)
    dest = install("afunet-kalantari", afunet_pth)
    assert dest.name == "afunet-kalantari.safetensors"
    with safe_open(str(dest), framework="pt") as f:
        assert f.metadata()["arch"] == "AFUNet"
        assert f.metadata()["source_git_blob"] == pinned.git_blob
        assert torch.equal(f.get_tensor("module.SFM.0.conv.weight"), random_afunet_state["module.SFM.0.conv.weight"])
    got = load_weights("afunet-kalantari")
    assert (got.source, got.name, got.arch) == ("cache", "afunet-kalantari", "AFUNet")
    # The same file under HDRMERGE_WEIGHTS_DIR wins over the cache, verified.
    monkeypatch.setenv("HDRMERGE_WEIGHTS_DIR", str(afunet_pth.parent))
    got = load_weights("afunet-kalantari")
    assert (got.source, got.path, got.arch) == ("HDRMERGE_WEIGHTS_DIR", afunet_pth, "AFUNet")


def test_exception_safnet_file_given_for_an_afunet_model(isolated_env):
    with pytest.raises(ArchitectureError, match=r"holds a SAFNet checkpoint, but AFUNet was asked for"):
        load_weights("afunet-hu", weights=RANDOM_SAFNET_PTH)


def test_weights_option_accepts_an_unregistered_afunet_file(isolated_env, afunet_pth):
    got = load_weights("afunet-tel", weights=afunet_pth)
    assert (got.source, got.name, got.arch) == ("--weights", None, "AFUNet")


def test_cli_weights_list_shows_afunet_licence(isolated_env):
    r = run_cli_in_process("weights", "list", "--json", env=isolated_env)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)["checkpoints"]}
    for name in AFUNET:
        assert rows[name]["arch"] == "AFUNet"
        assert rows[name]["licence"] == CHECKPOINTS[name].licence
        assert rows[name]["origin"].startswith("github.com/eezkni/AFUNet pretrain_model/")
    r = run_cli("weights", "list", env=dict(isolated_env, COLUMNS="250"))
    assert r.returncode == 0
    # Piped, stdout holds the table's tab-separated lines; the licence notes go to stderr.
    assert "Licence of afunet-kalantari, afunet-hu, afunet-tel: MIT, as stated by the AFUNet authors' README" in r.stderr
    assert "no separate statement covers the checkpoints" in r.stderr.replace("\n", " ")


def test_cli_install_refuses_afunet_file_with_other_blob_id(isolated_env, afunet_pth):
    r = run_cli_in_process("weights", "install", "afunet-kalantari", str(afunet_pth), env=isolated_env)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith("error: Kalantari.pth (")
    assert "fails the integrity check for afunet-kalantari: git blob " in lines[0]
    assert not (Path(isolated_env["HDRMERGE_CACHE_DIR"]) / "afunet-kalantari.safetensors").exists()

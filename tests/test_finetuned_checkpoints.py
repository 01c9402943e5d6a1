"""Fine-tuned checkpoints (hdrmerge.weights.finetuned) as every command meets them: the file's
metadata read back by safetensors itself, strict loading by ``fuse --weights`` and ``--model NAME``,
provenance in ``--json`` and the EXR header, ``weights list`` and ``weights remove``, and damaged files.

The fine-tuned weights here are the authors' SAFNet-S with one tensor changed (training itself is
tested in test_finetune_cli.py), so the file is not the registered checkpoint under another name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from hdrmerge.demo_scene import write_bracket
from hdrmerge.errors import ArchitectureError, InputError, WeightsError
from hdrmerge.inference import Engine
from hdrmerge.weights import finetuned, load_weights
from hdrmerge.weights.registry import CHECKPOINTS, LICENCE
from hdrmerge.weights.store import file_digests, tensors_digest
from tests.conftest import SAFNET_S_PTH, run_cli

SAFNET_S_SHA = CHECKPOINTS["safnet-s"].sha256


def tuned_state(state: dict) -> dict:
    """SAFNet-S with its first tensor scaled by 1.01: other weights, the same keys and shapes."""
    out = {k: v.clone() for k, v in state.items()}
    first = sorted(out)[0]
    out[first] = out[first] * 1.01
    return out


def info_for(name: str, state: dict, base_state: dict) -> finetuned.FinetunedInfo:
    return finetuned.FinetunedInfo(
        name=name, arch="SAFNet-S", base_name="safnet-s", base_sha256=SAFNET_S_SHA,
        base_tensors_sha256=tensors_digest(base_state), licence=LICENCE, brackets_train=3, brackets_val=1,
        steps=7, best_step=6, loss_start_val=0.125, loss_best_val=0.0625, stopped_early=False,
        config={"steps": 7, "crop": 128, "seed": 0},
    )


def cache_tuned(file_name: str, recorded_name: str, base_state: dict) -> tuple[dict, Path, finetuned.FinetunedInfo]:
    """A fine-tuned SAFNet-S saved in the (empty) cache as ``file_name``, recorded as ``recorded_name``:
    its tensors, its path and the metadata written."""
    state = tuned_state(base_state)
    dest = finetuned.cached_file(file_name)
    dest.parent.mkdir(parents=True)
    return state, dest, finetuned.save(dest, state, info_for(recorded_name, state, base_state))


@pytest.fixture
def bracket(tmp_path):
    return write_bracket(tmp_path / "in", size=(64, 96), motion_px=0)


def test_finetuned_file_metadata_is_read_by_safetensors_and_load_weights_names_it(isolated_env, tmp_path, safnet_s_state):
    state = tuned_state(safnet_s_state)
    path = tmp_path / "mycam.safetensors"
    written = finetuned.save(path, state, info_for("mycam", state, safnet_s_state))

    # An independent reader: safetensors' own header parser, and the tensors it returns.
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(safnet_s_state)
        first = sorted(state)[0]
        assert f.get_tensor(first).equal(state[first])
    assert set(meta) == {
        "hdrmerge_format", "hdrmerge_name", "arch", "base_name", "base_sha256", "base_tensors_sha256", "licence",
        "brackets_train", "brackets_val", "steps", "best_step", "loss_start_val", "loss_best_val", "stopped_early",
        "config", "created", "hdrmerge_version", "tensors_sha256",
    }
    assert {k: meta[k] for k in ("hdrmerge_format", "hdrmerge_name", "arch", "base_name", "base_sha256", "steps",
                                 "brackets_train", "brackets_val", "loss_start_val", "loss_best_val", "stopped_early")} == {
        "hdrmerge_format": "hdrmerge-finetuned/1", "hdrmerge_name": "mycam", "arch": "SAFNet-S", "base_name": "safnet-s",
        "base_sha256": SAFNET_S_SHA, "steps": "7", "brackets_train": "3", "brackets_val": "1",
        "loss_start_val": "0.125", "loss_best_val": "0.0625", "stopped_early": "false"}
    assert meta["licence"] == LICENCE
    assert json.loads(meta["config"]) == {"steps": 7, "crop": 128, "seed": 0}
    assert meta["tensors_sha256"] == tensors_digest(state) == written.tensors_sha256
    assert meta["base_tensors_sha256"] == tensors_digest(safnet_s_state) != meta["tensors_sha256"]

    # Loaded as --weights loads it (fuse with --weights, and the EXR header, are tested on a real
    # fine-tune's file in test_finetune_cli.py): named by its metadata, its tensors as written.
    w = load_weights(weights=path)
    assert (w.name, w.arch, w.source, w.sha256, w.licence) == ("mycam", "SAFNet-S", "--weights", file_digests(path).sha256, LICENCE)
    assert all(w.state[k].equal(v) for k, v in state.items())
    assert w.describe()["finetuned_from"] == {"name": "safnet-s", "sha256": SAFNET_S_SHA, "brackets": 3, "steps": 7,
                                              "created": written.created, "licence": LICENCE}


def test_exception_finetuned_file_with_changed_tensors_or_a_missing_tensor_is_refused(isolated_env, tmp_path, safnet_s_state):
    state = tuned_state(safnet_s_state)
    path = tmp_path / "mycam.safetensors"
    finetuned.save(path, state, info_for("mycam", state, safnet_s_state))
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # inside the last tensor's bytes: the header still parses
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as e:
        load_weights(weights=path)
    assert e.value.exit_code == 1
    assert str(e.value) == (f"{path} is damaged: its tensors do not match the hash recorded when it was "
                            "fine-tuned; restore it from a backup or fine-tune again")

    # Strict loading applies as to any checkpoint: a tensor missing (and the file's hash
    # recomputed, so that only strictness can catch it) is refused when the network is built.
    missing = {k: v for k, v in state.items() if k != sorted(state)[0]}
    short = tmp_path / "short.safetensors"
    finetuned.save(short, missing, info_for("short", missing, safnet_s_state))
    with pytest.raises(ArchitectureError) as e:
        Engine.load(load_weights(weights=short), "cpu", "fp32")
    assert e.value.exit_code == 2 and sorted(state)[0] in str(e.value)


def test_cached_finetuned_checkpoint_is_used_by_name_listed_and_removed(env, tmp_path, bracket, safnet_s_state, capsys):
    from hdrmerge.cli import run

    def cli(*args: str) -> tuple[int, str, str]:
        """``hdrmerge ARGS`` in this process: (exit code, stdout, stderr)."""
        capsys.readouterr()
        code = run(list(args))
        return (code, *capsys.readouterr())

    state, dest, written = cache_tuned("mycam", "mycam", safnet_s_state)

    r = run_cli("weights", "list", env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # Piped: the registered checkpoints' table, then the fine-tuned ones', tab-separated.
    at = lines.index("name\tarchitecture\tfine-tuned from\tbrackets\tsteps\theld-out loss\tcreated\tlicence")
    assert at == 1 + len(CHECKPOINTS)
    assert lines[at + 1:] == [f"mycam\tSAFNet-S\tsafnet-s (sha256 {SAFNET_S_SHA[:12]}…)\t3 + 1 held out\t7\t"
                              f"0.125 → 0.0625\t{written.created[:10]}\tacademic only"]
    assert f"Licence of mycam (carried over from the starting weights): {LICENCE}." in r.stderr
    rows = json.loads(cli("weights", "list", "--json")[1])["finetuned"]
    assert [(x["name"], x["path"], x["base_sha256"], x["licence"], x["tensors_sha256"]) for x in rows] == [
        ("mycam", str(dest), SAFNET_S_SHA, LICENCE, tensors_digest(state))]

    code, out, err = cli("fuse", *map(str, bracket), "-o", str(tmp_path / "o.hdr"), "--model", "mycam", "--json", "--no-preview")
    assert code == 0, err
    model = json.loads(out)["model"]
    assert (model["name"], model["source"], model["finetuned_from"]["name"]) == ("mycam", "cache", "safnet-s")
    # The Radiance header names the weights and what they were tuned from.
    head = (tmp_path / "o.hdr").read_bytes()[:2000].decode("latin-1")
    assert f"\n# model: SAFNet-S mycam sha256:{file_digests(dest).sha256} (fine-tuned from safnet-s sha256:{SAFNET_S_SHA})\n" in head

    # weights verify re-checks it with the registered ones; damaged, it fails (exit 1) and says so.
    code, out, _ = cli("weights", "verify", "mycam", "--json")
    assert code == 0 and [(r["name"], r["where"], r["ok"]) for r in json.loads(out)["results"]] == [("mycam", str(dest), True)]
    data = bytearray(dest.read_bytes())
    data[-10] ^= 0xFF
    dest.write_bytes(bytes(data))
    code, out, _ = cli("weights", "verify", "--json")
    assert code == 1
    assert [r for r in json.loads(out)["results"] if r["name"] == "mycam"] == [
        {"name": "mycam", "where": str(dest), "ok": False, "detail": f"{dest} is damaged: its tensors do not match the hash "
         "recorded when it was fine-tuned; restore it from a backup or fine-tune again"}]

    assert cli("weights", "remove", "mycam") == (0, f"mycam: removed {dest}\n", "")
    assert not dest.exists()
    assert cli("weights", "remove", "mycam") == (
        2, "", "error: no fine-tuned checkpoint 'mycam' in the cache (fine-tuned ones there: none)\n")
    assert cli("weights", "remove", "safnet-s") == (
        2, "", "error: safnet-s is a registered checkpoint; `weights remove` deletes fine-tuned checkpoints only "
        "(see `hdrmerge weights list`)\n")
    with pytest.raises(InputError) as e:
        load_weights("mycam")
    assert str(e.value) == f"unknown model 'mycam'; known: {', '.join(CHECKPOINTS)} (see `hdrmerge weights list`)"


def test_weights_list_names_a_renamed_checkpoint_as_model_takes_it(env, safnet_s_state, monkeypatch, capsys):
    from hdrmerge.cli import run

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Fine-tuned as "mycam", then renamed in the cache: --model takes "renamed", so that is its name.
    _, dest, _ = cache_tuned("renamed", "mycam", safnet_s_state)
    capsys.readouterr()
    assert run(["weights", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["finetuned"]
    assert [(x["name"], x["hdrmerge_name"], x["path"]) for x in rows] == [("renamed", "mycam", str(dest))]
    assert load_weights("renamed").path == dest


def test_weights_remove_leaves_a_stopped_runs_state_and_says_so(env, safnet_s_state, monkeypatch, capsys):
    from hdrmerge.cli import run

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # `finetune --name mycam --overwrite`, stopped by Ctrl-C, keeps its state beside the finished mycam.
    state, dest, _ = cache_tuned("mycam", "mycam", safnet_s_state)
    resume = dest.with_name("mycam.safetensors.resume")
    resume.write_bytes(b"the stopped run's state (its content is not read here)")
    capsys.readouterr()
    assert run(["weights", "remove", "mycam"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (f"mycam: removed {dest}\n", f"note: {resume} is the state of a stopped fine-tune to this name, left "
                          f"in place; continue it with `hdrmerge finetune ... --name mycam --resume {resume}`, or delete it\n")
    assert not dest.exists() and resume.is_file()
    finetuned.save(dest, state, info_for("mycam", state, safnet_s_state))
    assert run(["weights", "remove", "mycam", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "mycam", "removed": str(dest), "state_left": str(resume)}


def test_a_pth_or_registered_file_is_not_taken_for_a_finetuned_one(tmp_path):
    assert finetuned.read_info(SAFNET_S_PTH) is None
    foreign = tmp_path / "x.safetensors"
    foreign.write_bytes(b"not a safetensors file")
    assert finetuned.read_info(foreign) is None


@pytest.mark.parametrize("name", ["", "-x", "a/b", "x" * 65, "my cam", "mycam.safetensors"])
def test_exception_names_a_cache_file_cannot_have(name):
    with pytest.raises(InputError) as e:
        finetuned.check_name(name)
    assert e.value.exit_code == 2
    assert str(e.value) == (f"--name {name!r}: use letters, digits, '.', '-' and '_' (at most 64, starting with a "
                            "letter or digit), e.g. --name mycam")


def test_exception_a_registered_name_is_not_a_finetuned_name():
    with pytest.raises(InputError) as e:
        finetuned.check_name("safnet-s")
    assert e.value.exit_code == 2
    assert str(e.value) == "--name safnet-s: that is a registered checkpoint's name; choose another, e.g. safnet-s-mycam"

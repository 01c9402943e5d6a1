"""``hdrmerge finetune`` end to end, as a user runs it: a folder of brackets, a real Ctrl-C, ``--resume``,
the checkpoint it writes read back by safetensors itself and loaded strictly by ``fuse --weights``,
``weights list``, and every bad input's one line and exit code with nothing written.

One short fine-tune (three 64×96 brackets rendered by hdrmerge.demo_scene, plus a fourth whose
reference shot is truncated, 64 px crops, 3 steps) is stopped by SIGINT after its first step and
resumed to the end; the other tests reuse its files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import OpenEXR
import pytest
from safetensors import safe_open

from hdrmerge.demo_scene import write_bracket
from hdrmerge.weights.registry import CHECKPOINTS, LICENCE
from hdrmerge.weights.store import file_digests
from tests.conftest import SHARED, run_cli

SAFNET_S_SHA = CHECKPOINTS["safnet-s"].sha256
T0 = datetime(2026, 3, 1, 9, 0, 0)
#: The short run's options (three steps: validation at the last; crops as small as allowed).
RUN = ("--steps", "3", "--crop", "64", "--val-fraction", "0.34")


def write_card(folder: Path, n: int = 3) -> Path:
    """``n`` brackets of three JPEGs, a minute apart, each of another rendering of the demo scene."""
    for i in range(n):
        write_bracket(folder, size=(64, 96), seed=i, motion_px=3, start=T0 + timedelta(minutes=i), prefix=f"b{i + 1}")
    return folder


def add_truncated_bracket(folder: Path) -> Path:
    """A fourth bracket whose reference shot keeps only its first 500 bytes (the EXIF survives, so it is
    found as a bracket; the image does not, so it cannot be decoded). Returns the damaged file."""
    write_bracket(folder, size=(64, 96), seed=3, motion_px=3, start=T0 + timedelta(minutes=3), prefix="b4")
    bad = folder / "b4_02.jpg"
    bad.write_bytes(bad.read_bytes()[:500])
    return bad


def make_env(root: Path) -> dict[str, str]:
    env = {
        "HDRMERGE_CACHE_DIR": str(root / "cache"),
        "HF_HOME": str(root / "hf"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HDRMERGE_FALLBACK_URL": "http://127.0.0.1:9/raw",
        "HDRMERGE_WEIGHTS_DIR": str(SHARED / "weights"),
        "HF_HUB_OFFLINE": "1",
        # One thread: on a loaded 2-core machine two spin against each other.
        "OMP_NUM_THREADS": "1",
    }
    return env


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@dataclass
class Run:
    root: Path
    card: Path
    env: dict[str, str]
    out: Path
    state_copy: Path  # the state the interrupted run saved, kept before --resume used it up
    interrupted: subprocess.CompletedProcess
    resumed: subprocess.CompletedProcess
    tmp: Path  # the runs' TMPDIR
    tmp_during: dict[str, int]  # its files (path: size) while the first run trained
    tmp_after_interrupt: list[str]  # its hdrmerge-finetune-* folders after the Ctrl-C


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("finetune")
    card = write_card(root / "card")
    add_truncated_bracket(card)
    env = make_env(root)
    tmp = root / "tmp"
    tmp.mkdir()
    env["TMPDIR"] = str(tmp)  # where the decoded brackets are kept while training
    out = root / "mycam.safetensors"
    # Started as an interactive shell starts it (SIGINT not ignored), stderr piped: plain progress lines.
    proc = subprocess.Popen(
        [sys.executable, "-m", "hdrmerge", "finetune", str(card), "-o", str(out), "--name", "mycam", *RUN],
        env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Unbuffered reads of the raw pipe until the first step's line: whatever follows is left in
    # the pipe for communicate() (a buffered reader would swallow it).
    seen = b""
    fd = proc.stderr.fileno()  # type: ignore[union-attr]
    while b"step 1/3:" not in seen or not seen.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        seen += byte
    tmp_during = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in tmp.rglob("*") if p.is_file()}
    proc.send_signal(signal.SIGINT)
    stdout, rest = proc.communicate(timeout=300)
    tmp_after_interrupt = sorted(p.name for p in tmp.glob("hdrmerge-finetune-*"))
    interrupted = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, seen.decode() + rest)
    state = Path(str(out) + ".resume")
    copy = root / "saved.resume"
    if state.is_file():
        shutil.copyfile(state, copy)
    # --crop and --seed given again, other than the first run's: they are ignored, with a warning.
    resumed = run_cli("finetune", str(card), "-o", str(out), "--name", "mycam", "--resume", str(state), "--json",
                      "--crop", "96", "--seed", "5", env=env)
    return Run(root, card, env, out, copy, interrupted, resumed, tmp, tmp_during, tmp_after_interrupt)


def test_decoded_brackets_are_kept_on_disk_while_training_and_deleted_on_ctrl_c_and_at_the_end(run):
    # While training: one cache folder, holding the three decodable brackets' nine 64×96 RGB
    # 8-bit shots as raw files (the frames are not held in memory).
    # (PyTorch may keep files of its own in TMPDIR.)
    folders = {name.split("/")[0] for name in run.tmp_during if name.startswith("hdrmerge-finetune-")}
    assert len(folders) == 1 and next(iter(folders)).startswith("hdrmerge-finetune-"), run.tmp_during
    assert sorted(size for name, size in run.tmp_during.items() if name.startswith("hdrmerge-")) == [64 * 96 * 3] * 9
    # Gone after the Ctrl-C (exit 130) and after the resumed run that finished.
    assert run.interrupted.returncode == 130 and run.tmp_after_interrupt == []
    assert run.resumed.returncode == 0 and list(run.tmp.glob("hdrmerge-finetune-*")) == []


def test_ctrl_c_saves_a_resumable_state_and_says_how_to_continue(run):
    r = run.interrupted
    state = f"{run.out}.resume"
    assert r.returncode == 130, r.stderr
    lines = r.stderr.splitlines()
    bad = run.card / "b4_02.jpg"
    assert lines[0] == f"warning: bracket {bad} left out: {bad}: damaged or truncated JPEG file; re-export or copy it again"
    lines = lines[1:]
    assert lines[0].startswith("step 1/3: loss ")
    # The signal lands while step 1's line is read, or during step 2: that step finishes.
    done = 1 if lines[-1].startswith("interrupted at step 1 ") else 2
    assert lines[1:] == [
        "warning: stopping after the current step (Ctrl-C again to abort at once)",
        f"interrupted at step {done} of 3; the state is saved in {state}; to continue, run the same command with --resume {state}",
    ]
    assert r.stdout == ""
    # The state, and no checkpoint: the run did not finish.
    assert run.state_copy.is_file()
    with safe_open(str(run.state_copy), framework="pt") as f:
        meta = json.loads(f.metadata()["hdrmerge.finetune_state"])
    assert (meta["format"], meta["step"], meta["config"]["steps"], meta["config"]["crop"]) == ("hdrmerge-finetune-state", done, 3, 64)
    assert sorted(meta["train"] + meta["val"]) == sorted(str((run.card / f"b{i}_02.jpg").resolve()) for i in (1, 2, 3))
    # Every bracket found is recorded, the one that could not be decoded too: --resume compares them.
    assert meta["found"] == [str((run.card / f"b{i}_02.jpg").resolve()) for i in (1, 2, 3, 4)]


def test_resume_completes_and_writes_the_checkpoint_to_both_places(run):
    # The first run left the truncated bracket out; it is found again now, and the resume goes on.
    r = run.resumed
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    bad = run.card / "b4_02.jpg"
    assert report["skipped"] == [f"bracket {bad} left out: {bad}: damaged or truncated JPEG file; re-export or copy it again"]
    assert r.stderr.splitlines() == [
        "warning: --crop 96 is ignored: a resumed run keeps its first run's setting (64)",
        "warning: --seed 5 is ignored: a resumed run keeps its first run's setting (0)",
        f"warning: {report['skipped'][0]}",
    ]
    cached = Path(run.env["HDRMERGE_CACHE_DIR"]) / "finetuned" / "mycam.safetensors"
    assert report["outputs"] == [str(run.out), str(cached)]
    assert run.out.read_bytes() == cached.read_bytes()
    # The history holds the interrupted run's step 1, then the resumed steps 2 and 3.
    assert [h["step"] for h in report["history"]] == [1, 2, 3]
    assert report["history"][2]["val_loss"] is not None
    # Its state is used up: nothing is left to resume.
    assert not Path(f"{run.out}.resume").exists()
    assert files_under(run.root) == sorted(
        [*(f"card/b{i}_0{j}.jpg" for i in (1, 2, 3, 4) for j in (1, 2, 3)), "cache/finetuned/mycam.safetensors",
         "mycam.safetensors", "saved.resume"])


def test_checkpoint_metadata_as_safetensors_reads_it(run):
    import torch

    with safe_open(str(run.out), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert {k: meta[k] for k in ("hdrmerge_format", "hdrmerge_name", "arch", "base_name", "base_sha256", "licence",
                                 "brackets_train", "brackets_val", "steps", "stopped_early")} == {
        "hdrmerge_format": "hdrmerge-finetuned/1", "hdrmerge_name": "mycam", "arch": "SAFNet-S",
        "base_name": "safnet-s", "base_sha256": SAFNET_S_SHA, "licence": LICENCE,
        "brackets_train": "2", "brackets_val": "1", "steps": "3", "stopped_early": "false"}
    # The only validation after the start is at the last step: the kept weights are the start's or step 3's,
    # whichever scored lower, and the recorded losses are those scores.
    val_at_3 = json.loads(run.resumed.stdout)["history"][2]["val_loss"]
    start, best = float(meta["loss_start_val"]), float(meta["loss_best_val"])
    assert (int(meta["best_step"]), best) == ((3, val_at_3) if val_at_3 < start else (0, start))
    config = json.loads(meta["config"])
    assert (config["steps"], config["crop"], config["seed"], config["val_fraction"]) == (3, 64, 0, 0.34)
    assert datetime.fromisoformat(meta["created"]).tzinfo is not None
    reference = torch.load(SHARED / "weights" / "SAFNet_S_siggraph17.pth", weights_only=True, map_location="cpu")
    assert keys == set(reference)


def test_fuse_loads_the_checkpoint_strictly_and_records_its_provenance(run):
    shots = [run.card / f"b1_0{j}.jpg" for j in (1, 2, 3)]
    exr = run.root / "fused" / "o.exr"
    exr.parent.mkdir()
    try:
        r = run_cli("fuse", *map(str, shots), "-o", str(exr), "--weights", str(run.out), "--json", "--no-preview", env=run.env)
        assert r.returncode == 0, r.stderr
        model = json.loads(r.stdout)["model"]
        assert (model["name"], model["arch"], model["sha256"]) == ("mycam", "SAFNet-S", file_digests(run.out).sha256)
        assert (model["finetuned_from"]["name"], model["finetuned_from"]["sha256"]) == ("safnet-s", SAFNET_S_SHA)
        header = OpenEXR.File(str(exr)).header()
        assert header["hdrmerge:weights"] == "mycam"
        assert header["hdrmerge:weightsFinetunedFrom"] == f"fine-tuned from safnet-s sha256:{SAFNET_S_SHA}"
    finally:
        shutil.rmtree(exr.parent)


def test_weights_list_shows_the_named_checkpoint(run):
    r = run_cli("weights", "list", "--json", env=run.env)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["finetuned"]
    assert [(x["name"], x["base_name"], x["brackets_train"], x["brackets_val"], x["steps"], x["licence"]) for x in rows] == [
        ("mycam", "safnet-s", 2, 1, 3, LICENCE)]


# --- bad input: one line, exit 2, nothing written ---------------------------------------------------


@pytest.fixture
def bad(run, monkeypatch, capsys):
    """Run ``hdrmerge finetune ARGS`` in this process (refusals need no fresh interpreter) and
    check that it wrote and removed nothing; return (exit code, stderr) as a CompletedProcess."""
    from hdrmerge.cli import run as cli

    for key, value in run.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HDRMERGE_DEBUG", raising=False)

    def call(*args: str) -> subprocess.CompletedProcess:
        before = files_under(run.root)
        capsys.readouterr()
        code = cli(["finetune", *args])
        out, err = capsys.readouterr()
        assert files_under(run.root) == before, "a refused run wrote or removed something"
        return subprocess.CompletedProcess(args, code, out, err)

    return call


def test_exception_no_brackets_found(run, bad):
    empty = run.root / "empty"
    empty.mkdir()
    try:
        r = bad(str(empty), "-o", str(run.root / "x.safetensors"))
        assert (r.returncode, r.stderr) == (2, f"error: no brackets found in {empty}: no photos (JPEG, PNG, TIFF or camera "
                                               "RAW) (subfolders are not searched); give folders of bracketed shots, or add --recursive\n")
        for name in ("b1_01.jpg", "b1_02.jpg"):
            shutil.copy(run.card / name, empty / name)
        r = bad(str(empty), "-o", str(run.root / "x.safetensors"))
        assert (r.returncode, r.stderr) == (2, f"error: no brackets found in {empty}: 2 photo(s), but no three of them form a "
                                               f"bracket; see how they group with `hdrmerge batch {empty} --dry-run`\n")
    finally:
        shutil.rmtree(empty)


def test_exception_output_that_exists_or_is_not_safetensors_or_missing(run, bad):
    r = bad(str(run.card), "-o", str(run.out))
    assert (r.returncode, r.stderr) == (2, f"error: {run.out} exists already; pass --overwrite to replace it\n")
    r = bad(str(run.card), "-o", str(run.root / "mycam.pth"))
    assert (r.returncode, r.stderr) == (2, f"error: -o {run.root / 'mycam.pth'}: a fine-tuned checkpoint is a .safetensors "
                                           "file; give a name ending in .safetensors\n")
    r = bad(str(run.card))
    assert (r.returncode, r.stderr) == (2, "error: say where the checkpoint goes: -o FILE.safetensors, --name NAME (kept in "
                                           "the weights cache), or both\n")
    cached = Path(run.env["HDRMERGE_CACHE_DIR"]) / "finetuned" / "mycam.safetensors"
    r = bad(str(run.card), "--name", "mycam")
    assert (r.returncode, r.stderr) == (2, f"error: a fine-tuned checkpoint named mycam is in the cache already ({cached}); "
                                           "choose another --name, or pass --overwrite to replace it\n")
    r = bad(str(run.card), "--name", "safnet-s")
    assert (r.returncode, r.stderr) == (2, "error: --name safnet-s: that is a registered checkpoint's name; choose another, "
                                           "e.g. safnet-s-mycam\n")
    r = bad(str(run.card), "-o", str(run.root / "x.safetensors"), "--model", "afunet-kalantari")
    assert (r.returncode, r.stderr) == (2, "error: --model afunet-kalantari is AFUNet; fine-tuning works on SAFNet-S and "
                                           "SAFNet: use --model safnet-s or safnet\n")


def test_exception_a_state_left_by_a_stopped_run_is_not_overwritten_without_resume(run, bad):
    out = run.root / "other.safetensors"
    state = run.root / "other.safetensors.resume"
    shutil.copyfile(run.state_copy, state)
    try:
        r = bad(str(run.card), "-o", str(out))
        assert (r.returncode, r.stderr) == (2, f"error: {state} exists: the state of a stopped fine-tune; add --resume "
                                               f"{state} to continue it, or --overwrite to start again\n")
    finally:
        state.unlink()


def test_exception_resume_does_not_replace_another_runs_state(run, bad):
    # --resume a's state -o b: b's own state, left by another stopped run, would be overwritten at the
    # first validation (and deleted at the end).
    out = run.root / "b.safetensors"
    state = run.root / "b.safetensors.resume"
    shutil.copyfile(run.state_copy, state)
    try:
        r = bad(str(run.card), "-o", str(out), "--resume", str(run.state_copy))
        assert (r.returncode, r.stderr) == (2, f"error: {state} exists: the state of another stopped fine-tune, which this "
                                               f"run would replace; continue that one with --resume {state}, or pass "
                                               "--overwrite to replace it\n")
    finally:
        state.unlink()


def test_exception_steps_crop_and_val_fraction_out_of_range(run, bad):
    out = str(run.root / "x.safetensors")
    r = bad(str(run.card), "-o", out, "--steps", "0")
    assert (r.returncode, r.stderr) == (2, "error: --steps 0: must be at least 1; give the number of training steps, "
                                           "e.g. --steps 240\n")
    r = bad(str(run.card), "-o", out, "--crop", "48")
    assert (r.returncode, r.stderr) == (2, "error: --crop 48: must be at least 64 pixels; give --crop 64 or more "
                                           "(default 192)\n")
    r = bad(str(run.card), "-o", out, "--val-fraction", "0.6")
    assert (r.returncode, r.stderr) == (2, "error: --val-fraction 0.6: must be between 0 and 0.5; give a share such as "
                                           "0.2, or 0 to hold no bracket out\n")


def test_exception_a_bad_option_value_creates_no_cache_folder(run, bad, tmp_path, monkeypatch):
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("HDRMERGE_CACHE_DIR", str(cache))
    r = bad(str(run.card), "--name", "fresh", "--steps", "0")
    assert (r.returncode, r.stderr) == (2, "error: --steps 0: must be at least 1; give the number of training steps, "
                                           "e.g. --steps 240\n")
    assert not cache.exists()


def test_exception_a_refusal_after_the_cache_folder_was_made_leaves_no_empty_folder(run, bad, tmp_path, monkeypatch):
    # --name makes the cache's finetuned/ folder before the brackets are searched (its lock lives
    # there); a refusal after that removes the folders it made.
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("HDRMERGE_CACHE_DIR", str(cache))
    empty = tmp_path / "empty"
    empty.mkdir()
    r = bad(str(empty), "--name", "fresh")
    assert (r.returncode, r.stderr) == (2, f"error: no brackets found in {empty}: no photos (JPEG, PNG, TIFF or camera "
                                           "RAW) (subfolders are not searched); give folders of bracketed shots, or add --recursive\n")
    assert not cache.exists()
    # A cache folder that was there before is kept, empty or not.
    (cache / "finetuned").mkdir(parents=True)
    r = bad(str(empty), "--name", "fresh")
    assert r.returncode == 2 and sorted(p.name for p in cache.rglob("*")) == ["finetuned"]


def test_val_fraction_0_records_no_held_out_loss(run, tmp_path):
    # Nothing held out: the weights are chosen on training crops, and the checkpoint says so instead of
    # calling that score a held-out loss.
    out = tmp_path / "all.safetensors"
    r = run_cli("finetune", str(run.card), "-o", str(out), "--steps", "1", "--crop", "64", "--val-fraction", "0",
                env=run.env)
    assert r.returncode == 0, r.stderr
    # Progress and the last line say what the score was taken on.
    lines = r.stderr.splitlines()
    # "(best)", or the starting weights' lower score when step 1 did not beat it.
    assert re.fullmatch(r"step 1/1: loss [0-9.e-]+, training crops [0-9.e-]+ \(best( [0-9.e-]+)?\); [0-9.]+ s/step, about 0 s left", lines[1])
    assert re.fullmatch(r"wrote .*; no bracket held out; loss on training crops [0-9.e-]+ → [0-9.e-]+ \(best at step [01]\); "
                        r"[0-9]+ s", lines[2])
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert (meta["brackets_train"], meta["brackets_val"], meta["loss_start_val"], meta["loss_best_val"]) == ("3", "0", "", "")
    assert json.loads(meta["config"])["scored_on"] == "training crops"
    assert json.loads(run.resumed.stdout)["checkpoint"]["config"]["scored_on"] == "held-out brackets"


def test_exception_resume_file_missing_or_foreign(run, bad):
    out = str(run.root / "x.safetensors")
    missing = run.root / "nothing.resume"
    r = bad(str(run.card), "-o", out, "--resume", str(missing))
    assert (r.returncode, r.stderr) == (2, f"error: --resume {missing}: no such file; give the state a stopped `hdrmerge "
                                           "finetune` saved\n")
    # A fine-tuned checkpoint is a safetensors file too, but no training state.
    r = bad(str(run.card), "-o", out, "--resume", str(run.out))
    assert (r.returncode, r.stderr) == (2, f"error: {run.out} is not a fine-tuning state (no hdrmerge.finetune_state "
                                           "metadata); give the state file a stopped `hdrmerge finetune` left\n")


def test_exception_resume_with_other_starting_weights_or_other_brackets(run, bad):
    out = str(run.root / "x.safetensors")
    # Started from safnet-s; resumed from the fine-tuned weights instead.
    r = bad(str(run.card), "-o", out, "--resume", str(run.state_copy), "--weights", str(run.out))
    assert (r.returncode, r.stderr) == (2, f"error: {run.state_copy} is the state of a fine-tune that started from other "
                                           "weights than mycam; give the --model or --weights of the first run, or start "
                                           "again without --resume\n")
    # One bracket more than the first run found.
    extra = run.root / "extra"
    write_bracket(extra, size=(64, 96), seed=9, start=T0 + timedelta(hours=1), prefix="x")
    try:
        r = bad(str(run.card), str(extra), "-o", out, "--resume", str(run.state_copy))
        assert (r.returncode, r.stderr) == (2, f"error: {run.state_copy} is the state of a fine-tune on 4 brackets, but 5 are "
                                               f"found now ({(extra / 'x_02.jpg').resolve()} was not among them then); give the "
                                               "same folders as the first run, or start again without --resume\n")
    finally:
        shutil.rmtree(extra)


def test_cli_defaults_are_the_training_cores():
    from hdrmerge.cli import finetune as cli
    from hdrmerge.finetune import FinetuneConfig

    assert (cli.DEFAULT_STEPS, cli.DEFAULT_CROP, cli.DEFAULT_VAL_FRACTION) == (
        FinetuneConfig.steps, FinetuneConfig.crop, FinetuneConfig.val_fraction)


def test_exception_a_second_run_to_the_same_checkpoint_stops_at_once(run, bad):
    from hdrmerge.locking import OutputLock

    out = run.root / "x.safetensors"
    lock = OutputLock(out)  # held here as a first run holds it while it trains
    assert lock.acquire()
    try:
        r = bad(str(run.card), "-o", str(out))
        assert (r.returncode, r.stderr) == (1, f"error: another hdrmerge run (process {os.getpid()}) is writing "
                                               "x.safetensors; wait for it to finish, or choose another output path\n")
    finally:
        lock.release()


def test_exception_a_run_to_the_same_name_with_another_output_stops_at_once(run, bad):
    from hdrmerge.locking import OutputLock

    # Every target is locked, the --name cache file too, not only -o: otherwise both runs would train to
    # the end and then one would fail or replace the other's checkpoint.
    cached = Path(run.env["HDRMERGE_CACHE_DIR"]) / "finetuned" / "other.safetensors"
    lock = OutputLock(cached)
    assert lock.acquire()
    try:
        r = bad(str(run.card), "-o", str(run.root / "x.safetensors"), "--name", "other")
        assert (r.returncode, r.stderr) == (1, f"error: another hdrmerge run (process {os.getpid()}) is writing "
                                               "other.safetensors; wait for it to finish, or choose another output path\n")
    finally:
        lock.release()


def test_brackets_are_found_as_batch_finds_them_and_each_once(run):
    from hdrmerge.finetune_inputs import find_brackets

    # The folder, its parent searched recursively, and the folder again: three brackets, not nine.
    found = find_brackets([run.card, run.root, run.card], recursive=True)
    assert [(b.name, [p.name for p in b.paths]) for b in found.brackets] == [
        (str((run.card / f"b{i}_02.jpg").resolve()), [f"b{i}_01.jpg", f"b{i}_02.jpg", f"b{i}_03.jpg"]) for i in (1, 2, 3, 4)]
    assert found.skipped == []


def test_brackets_whose_files_have_the_same_names_in_other_folders_are_all_found(tmp_path):
    """finetune writes no merge, so batch's output names (input_1_hdr.exr in every synth scene folder,
    IMG_0001_hdr.exr from 100CANON/ and 101CANON/) must not refuse the folders (review 6, finding 6)."""
    from hdrmerge.finetune_inputs import find_brackets

    for i, folder in enumerate(("100CANON", "101CANON")):
        write_bracket(tmp_path / folder, size=(32, 48), seed=i, start=T0 + timedelta(minutes=i), prefix="IMG")
    found = find_brackets([tmp_path], recursive=True)
    assert [str(Path(f.name).relative_to(tmp_path.resolve())) for f in found.brackets] == ["100CANON/IMG_02.jpg", "101CANON/IMG_02.jpg"]


def test_brackets_in_other_folders_or_over_ten_minutes_apart_are_other_sessions(tmp_path):
    from hdrmerge.finetune_inputs import find_brackets, load_training_brackets
    from hdrmerge.response import parse_response_option

    for folder, prefix, minutes in (("a", "p1", 0), ("a", "p2", 1), ("a", "p3", 31), ("a", "p4", 40), ("b", "q1", 0)):
        write_bracket(tmp_path / folder, size=(64, 96), seed=minutes, motion_px=3, start=T0 + timedelta(minutes=minutes),
                      prefix=prefix)
    found = find_brackets([tmp_path / "a", tmp_path / "b"])
    a, b = (tmp_path / "a").resolve(), (tmp_path / "b").resolve()
    assert [(Path(f.name).name, f.session) for f in found.brackets] == [
        ("p1_02.jpg", f"{a}, from 2026-03-01 09:00:00"),
        ("p2_02.jpg", f"{a}, from 2026-03-01 09:00:00"),
        ("p3_02.jpg", f"{a}, from 2026-03-01 09:31:00"),  # 30 min after the one before: another session
        ("p4_02.jpg", f"{a}, from 2026-03-01 09:31:00"),  # 9 min after p3: the same session as p3
        ("q1_02.jpg", f"{b}, from 2026-03-01 09:00:00"),  # the same time, another folder
    ]
    loaded, _ = load_training_brackets(found.brackets[:2], parse_response_option("gamma2.2", False))
    assert [t.session for t in loaded] == [f.session for f in found.brackets[:2]]


def test_progress_line_never_calls_a_worse_held_out_loss_best(monkeypatch):
    """Review 6, finding 8: the starting weights' held-out loss (step 0) was left out of "best"."""
    import io

    from rich.console import Console

    from hdrmerge.cli import finetune as finetune_cmd
    from hdrmerge.finetune import StepReport

    buf = io.StringIO()
    monkeypatch.setattr(finetune_cmd, "err_console", Console(file=buf, width=200))
    with finetune_cmd._training_progress(True, False) as on_step:
        on_step(StepReport(1, 6, 0.05, {}, None, 1.0, 0.01647))  # step 0 scored 0.01647
        on_step(StepReport(3, 6, 0.04, {}, 0.01833, 1.0, 0.01647))
        on_step(StepReport(6, 6, 0.03, {}, 0.0159, 1.0, 0.0159))
    assert [line.split(";")[0] for line in buf.getvalue().splitlines()] == [
        "step 1/6: loss 0.05",
        "step 3/6: loss 0.04, held-out 0.01833 (best 0.01647)",
        "step 6/6: loss 0.03, held-out 0.0159 (best)",
    ]

"""``hdrmerge synth`` and ``hdrmerge eval``: metrics, layouts, ground truth."""

from __future__ import annotations

import csv
import json
import math
import shutil

import cv2
import numpy as np
import pytest

from hdrmerge.datasets import discover
from hdrmerge.errors import InputError
from hdrmerge.exposure import derive_exposures
from hdrmerge.metrics import all_metrics, psnr, ssim
from hdrmerge.reading import read_frame
from hdrmerge.testsets import SynthOptions, synthesise
from tests.conftest import DATA, run_cli, run_cli_in_process

PHOTOS = DATA / "openexr_photos"


@pytest.fixture(scope="module")
def two_photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name in ("Desk.exr", "MtTamWest.exr"):
        shutil.copy(PHOTOS / name, folder)
    return folder


# --- metrics -------------------------------------------------------------------------------


def test_psnr_of_a_known_error():
    gt = np.full((8, 8, 3), 0.5, np.float32)
    assert psnr(gt + 0.01, gt) == pytest.approx(40.0, abs=1e-4)
    assert math.isinf(psnr(gt, gt))


def _ssim_direct(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM by explicit windows (Gaussian 11×11, σ 1.5, reflected borders)."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    xp, yp = np.pad(x, 5, mode="symmetric"), np.pad(y, 5, mode="symmetric")
    vals = []
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            a, b = xp[i : i + 11, j : j + 11], yp[i : i + 11, j : j + 11]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * a * a).sum() - ma**2, (w * b * b).sum() - mb**2
            cov = (w * a * b).sum() - ma * mb
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_a_direct_windowed_computation():
    rng = np.random.default_rng(1)
    x = rng.random((24, 20, 1))
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    assert ssim(x, y) == pytest.approx(_ssim_direct(x[..., 0], y[..., 0]), abs=1e-6)
    assert ssim(x, x) == pytest.approx(1.0)


# --- synth ---------------------------------------------------------------------------------


def test_synth_writes_kalantari_layout_with_exif_and_exact_ground_truth(tmp_path, two_photos):
    opts = SynthOptions(noise=0.0, shift=0.0, objects=0, max_side=256)
    folders = synthesise(two_photos, tmp_path / "set", opts)
    assert [f.name for f in folders] == ["Desk", "MtTamWest"]
    assert sorted(p.name for p in folders[0].iterdir()) == ["HDRImg.hdr", "exposure.txt", "input_1.tif", "input_2.tif", "input_3.tif"]
    frames = [read_frame(folders[0] / f"input_{i}.tif") for i in (1, 2, 3)]
    assert all(f.kind == "tiff" and f.pixels.dtype == np.uint16 for f in frames)
    ex = derive_exposures(frames)  # from the EXIF tags synth wrote
    assert ex.source == "exif" and ex.relative() == [1.0, 4.0, 16.0]
    # Without noise, shift or objects, the reference shot is the ground truth
    # seen 2 stops brighter, clipped and gamma-encoded.
    gt = cv2.imread(str(folders[0] / "HDRImg.hdr"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    ref = frames[1].ldr() ** 2.2
    ok = gt * 4 < 0.95
    # RGBE shares one exponent per pixel: each channel is stored in steps of
    # (largest channel)/128 at worst; 16-bit gamma quantisation adds far less.
    step = np.broadcast_to(gt.max(axis=2, keepdims=True) / 128.0, gt.shape)
    assert np.all(np.abs(ref[ok] - gt[ok] * 4) <= 4 * step[ok] + 1e-3)


def test_synth_is_reproducible_and_motion_moves_things(tmp_path, two_photos):
    a = synthesise(two_photos, tmp_path / "a", SynthOptions(max_side=128, seed=3))
    b = synthesise(two_photos, tmp_path / "b", SynthOptions(max_side=128, seed=3))
    for fa, fb in zip(a, b):
        for name in ("input_1.tif", "input_2.tif", "input_3.tif", "HDRImg.hdr"):
            assert (fa / name).read_bytes() == (fb / name).read_bytes()
    c = synthesise(two_photos, tmp_path / "c", SynthOptions(max_side=128, seed=4))
    assert (c[0] / "input_1.tif").read_bytes() != (a[0] / "input_1.tif").read_bytes()


def test_synth_jpeg_format(tmp_path, two_photos):
    folders = synthesise(two_photos, tmp_path / "j", SynthOptions(max_side=128, fmt="jpg", ev=(0.0, 3.0, 6.0)))
    frames = [read_frame(folders[0] / f"input_{i}.jpg") for i in (1, 2, 3)]
    assert frames[0].kind == "jpeg"
    assert derive_exposures(frames).relative() == [1.0, 8.0, 64.0]
    assert (folders[0] / "exposure.txt").read_text() == "0\n3\n6\n"


def test_batch_plans_one_bracket_per_synth_scene(env, tmp_path, two_photos):
    """Each scene has its own capture times (scenes apart, a bracket's shots close):
    batch's planner, reading them back from the files, finds one bracket per scene."""
    folders = synthesise(two_photos, tmp_path / "set", SynthOptions(max_side=48))
    r = run_cli("batch", str(tmp_path / "set"), "--recursive", "--dry-run", "--json", "--name", "{index}", env=env)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    brackets = [(rec["files"], rec["status"], rec["duplicates"]) for rec in records if "index" in rec]
    assert brackets == [([str(f / f"input_{i}.tif") for i in (1, 2, 3)], "merge", []) for f in folders]


def test_exception_synth_bad_inputs(env, tmp_path, two_photos):
    r = run_cli("synth", str(tmp_path), str(tmp_path / "o"), env=env)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path}: no .hdr or .exr files"
    r = run_cli("synth", str(two_photos), str(tmp_path / "o"), "--ev=2,0,-2", env=env)
    assert r.returncode == 2 and r.stderr.strip() == "error: --ev 2,0,-2: give three increasing values, e.g. -2,0,2"
    # Review 6, finding 9: Desk.exr and Desk.hdr used to be written one over the other.
    same = tmp_path / "same"
    same.mkdir()
    shutil.copy(two_photos / "Desk.exr", same / "Desk.exr")
    shutil.copy(two_photos / "Desk.exr", same / "Desk.hdr")
    r = run_cli_in_process("synth", str(same), str(tmp_path / "o"), env=env)
    assert (r.returncode, r.stderr) == (2, f"error: Desk.exr and Desk.hdr in {same} would both become the scene "
                                           f"{tmp_path / 'o' / 'Desk'}; keep one of them, or rename one\n")
    assert not (tmp_path / "o").exists()
    # Finding 12: an OUT_DIR that is a file or cannot be made is the user's to fix (was exit 1, "unexpected").
    (tmp_path / "afile").write_text("")
    for out, message in ((tmp_path / "afile", f"{tmp_path / 'afile'} is a file; give a folder for the test set"),
                         (tmp_path / "afile" / "x", f"cannot create the folder {tmp_path / 'afile' / 'x'} (Not a directory); choose another OUT_DIR")):
        r = run_cli_in_process("synth", str(two_photos), str(out), env=env)
        assert (r.returncode, r.stderr) == (2, f"error: {message}\n")


def test_a_synth_scene_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """Review 6, finding 5: a full disk left a truncated HDRImg.hdr beside the shots, and the error named no file."""
    import errno

    import hdrmerge.writing
    from hdrmerge.errors import OutputError
    from hdrmerge.testsets import write_scene

    def full_disk(tmp, rgb, header):
        tmp.write_bytes(b"#?RADIANCE\n")  # cut short
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    monkeypatch.setattr(hdrmerge.writing, "write_hdr", full_disk)
    shots = [np.full((8, 12, 3), v, np.float32) for v in (0.1, 0.4, 0.9)]
    with pytest.raises(OutputError) as err:
        write_scene(tmp_path / "Desk", shots, np.ones((8, 12, 3), np.float32), SynthOptions())
    assert str(err.value) == f"cannot write {tmp_path / 'Desk' / 'HDRImg.hdr'}: no space left on the device; free some space or choose another output folder"
    assert list((tmp_path / "Desk").iterdir()) == []  # neither the shots nor a temporary


# --- eval ----------------------------------------------------------------------------------


def test_eval_end_to_end_csv_json_and_baselines(env, tmp_path, two_photos):
    synthesise(two_photos, tmp_path / "set", SynthOptions(max_side=320, motion=24.0))
    r = run_cli_in_process("eval", str(tmp_path / "set"), "--out", str(tmp_path / "res"), "--save-dir", str(tmp_path / "save"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["layout"] == "kalantari" and [s["scene"] for s in data["scenes"]] == ["Desk", "MtTamWest"]
    assert json.loads((tmp_path / "res" / "eval.json").read_text()) == data
    rows = list(csv.reader((tmp_path / "res" / "eval.csv").open()))
    assert rows[0] == ["scene", "method", "psnr_mu", "psnr_l", "ssim_mu", "ssim_l"]
    assert [r[:2] for r in rows[-3:]] == [["mean", "hdrmerge"], ["mean", "reference"], ["mean", "merge"]]
    # Gamma-2.2 shots (synth's default): auto keeps gamma 2.2, and says how it decided.
    assert [s["response"].split(" (")[0] for s in data["scenes"]] == ["gamma2.2", "gamma2.2"]
    assert all(s["response"].startswith("gamma2.2 (estimated: gamma2.2 fits the pixels best") for s in data["scenes"])
    mean = data["mean"]
    # The network removes the ghosts of the moving objects: it beats both baselines.
    assert mean["hdrmerge"]["psnr_mu"] > mean["merge"]["psnr_mu"] + 3
    assert mean["hdrmerge"]["psnr_mu"] > mean["reference"]["psnr_mu"] + 3
    # Scores recomputed from the saved prediction agree with the report.
    pred = cv2.imread(str(tmp_path / "save" / "Desk" / "hdrmerge.hdr"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    gt = cv2.imread(str(tmp_path / "set" / "Desk" / "HDRImg.hdr"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert all_metrics(pred, gt)["psnr_mu"] == pytest.approx(data["scenes"][0]["hdrmerge"]["psnr_mu"], abs=0.3)  # RGBE rounding
    assert sorted(p.name for p in (tmp_path / "save" / "Desk").iterdir()) == [
        "hdrmerge.hdr", "hdrmerge.preview.jpg", "merge.preview.jpg", "reference.preview.jpg",
    ]
    # Review 6, findings 4 and 10: nothing written is replaced without --overwrite (checked before the
    # first scene runs), and --limit must keep at least one scene.
    written = {p: p.read_bytes() for p in [*(tmp_path / "res").iterdir(), *(tmp_path / "save").rglob("*.*")]}
    for args, message in (
        (("--out", str(tmp_path / "res")), f"{tmp_path / 'res' / 'eval.csv'} exists already; pass --overwrite to replace it"),
        (("--save-dir", str(tmp_path / "save")), f"{tmp_path / 'save' / 'Desk' / 'hdrmerge.hdr'} exists already; pass --overwrite to replace it"),
        (("--limit=-1",), "--limit -1: give the number of scenes to score, 1 or more (leave it out for all)"),
        (("--out", str(tmp_path / "res" / "eval.csv")), f"--out {tmp_path / 'res' / 'eval.csv'} is a file; give a folder"),
        (("--save-dir", str(tmp_path / "res" / "eval.csv" / "x")),
         f"cannot create the --save-dir folder {tmp_path / 'res' / 'eval.csv' / 'x'} (Not a directory); choose another"),
    ):
        r = run_cli_in_process("eval", str(tmp_path / "set"), *args, env=env)
        assert (r.returncode, r.stdout, r.stderr) == (2, "", f"error: {message}\n")
    assert {p: p.read_bytes() for p in written} == written


def test_challenge123_layout_is_detected(tmp_path, two_photos):
    src = synthesise(two_photos, tmp_path / "k", SynthOptions(max_side=96))
    root = tmp_path / "c123"
    for n, scene in enumerate(src, start=1):
        for k in (1, 2, 3):
            d = root / f"{n:03d}_{k}"
            d.mkdir(parents=True)
            shutil.copy(scene / f"input_{k}.tif", d / f"ldr_img_{k}.tif")
        shutil.copy(scene / "exposure.txt", root / f"{n:03d}_2" / "exposure.txt")
        shutil.copy(scene / "HDRImg.hdr", root / f"{n:03d}_2" / "hdr_img.hdr")
    layout, scenes = discover(root)
    assert layout == "challenge123" and [s.name for s in scenes] == ["001", "002"]
    assert scenes[0].ev == (-2.0, 0.0, 2.0) and scenes[0].gt.name == "hdr_img.hdr"


def _as_hu2020(src: list, root) -> None:
    """Repackage synth scenes as Hu 2020 ships them, static shots and all."""
    for n, scene in enumerate(src, start=86):
        d = root / "Test" / f"{n:03d}"
        d.mkdir(parents=True)
        for k in (1, 2, 3):
            shutil.copy(scene / f"input_{k}.tif", d / f"input_{k}_aligned.tif")
            shutil.copy(scene / f"input_{k}.tif", d / f"ref_{k}_aligned.tif")  # the static set
        ev = [float(v) for v in (scene / "exposure.txt").read_text().split()]
        (d / "input_exp.txt").write_text("".join(f"{v - ev[0]:.6f}\n" for v in ev) + "\n")
        shutil.copy(scene / "exposure.txt", d / "ref_exp.txt")
        shutil.copy(scene / "HDRImg.hdr", d / "ref_hdr_aligned_linear.hdr")
        cv2.imwrite(str(d / "ldr_visualize.png"), np.zeros((4, 4, 3), np.uint8))


def test_hu2020_layout_is_detected(tmp_path, two_photos):
    src = synthesise(two_photos, tmp_path / "k", SynthOptions(max_side=96))
    _as_hu2020(src, tmp_path / "hu")
    layout, scenes = discover(tmp_path / "hu")
    assert layout == "hu2020" and [s.name for s in scenes] == ["Test/086", "Test/087"]
    assert scenes[0].ev == (0.0, 2.0, 4.0)
    assert [p.name for p in scenes[0].ldrs] == ["input_1_aligned.tif", "input_2_aligned.tif", "input_3_aligned.tif"]
    assert scenes[0].gt.name == "ref_hdr_aligned_linear.hdr"


def test_exception_hu2020_scene_missing_a_file(env, tmp_path, two_photos):
    src = synthesise(two_photos, tmp_path / "k", SynthOptions(max_side=96))
    _as_hu2020(src, tmp_path / "hu")
    (tmp_path / "hu" / "Test" / "087" / "input_exp.txt").unlink()
    r = run_cli("eval", str(tmp_path / "hu"), env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: Hu 2020 scene Test/087 lacks input_exp.txt; check the download"


def test_exception_kalantari_scene_with_a_file_missing_or_one_too_many(env, tmp_path, two_photos):
    """Review 6, finding 3: such a scene was left out of the scores without a word (exit 0)."""
    src = synthesise(two_photos, tmp_path / "k", SynthOptions(max_side=48))
    (src[1] / "input_3.tif").unlink()
    r = run_cli_in_process("eval", str(tmp_path / "k"), env=env)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == (f"error: scene {src[1].name} holds 2 LDR image(s) (input_1.tif, input_2.tif) where it needs three "
                        "beside exposure.txt; add the missing shot or move the extra files away\n")
    shutil.rmtree(src[1])
    shutil.copy(src[0] / "HDRImg.hdr", src[0] / "hdrmerge.hdr")  # what eval --save-dir k used to leave
    with pytest.raises(InputError, match=rf"^scene {src[0].name} holds 2 HDR files \(HDRImg.hdr, hdrmerge.hdr\) where it needs one "):
        discover(tmp_path / "k")


def test_eval_scores_hu2020_exactly_as_the_same_scenes_in_kalantari_layout(env, tmp_path, two_photos):
    src = synthesise(two_photos, tmp_path / "k", SynthOptions(max_side=160, motion=12.0))
    _as_hu2020(src, tmp_path / "hu")
    runs = [json.loads(run_cli_in_process("eval", str(root), "--json", "--limit", "1", env=env).stdout)
            for root in (tmp_path / "k", tmp_path / "hu")]
    assert [r["layout"] for r in runs] == ["kalantari", "hu2020"]
    assert runs[0]["mean"] == runs[1]["mean"]


def test_nested_kalantari_scenes_are_found(tmp_path, two_photos):
    src = synthesise(two_photos, tmp_path / "k", SynthOptions(max_side=96))
    shutil.copytree(src[0], tmp_path / "Test" / "PAPER" / "001")
    shutil.copytree(src[1], tmp_path / "Test" / "EXTRA" / "002")
    layout, scenes = discover(tmp_path / "Test")
    assert layout == "kalantari" and [s.name for s in scenes] == ["EXTRA/002", "PAPER/001"]


def test_tel2023_layout_is_read_as_kalantari(tmp_path, two_photos):
    """SCTNet's test set: Test/scene_XXXX_N/input_1..3.tif, exposure.txt, HDRImg.hdr."""
    src = synthesise(two_photos, tmp_path / "k", SynthOptions(max_side=96))
    for n, scene in enumerate(src, start=1):
        shutil.copytree(scene, tmp_path / "Tel" / "Test" / f"scene_0007_{n}")
    layout, scenes = discover(tmp_path / "Tel")
    assert layout == "kalantari" and [s.name for s in scenes] == ["Test/scene_0007_1", "Test/scene_0007_2"]
    assert [p.name for p in scenes[0].ldrs] == ["input_1.tif", "input_2.tif", "input_3.tif"]


def test_exception_no_scenes(env, tmp_path):
    with pytest.raises(InputError, match=r"no test scenes found"):
        discover(tmp_path)
    r = run_cli("eval", str(tmp_path), env=env)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {tmp_path}: no test scenes found;")


def test_exception_ground_truth_of_another_size(env, tmp_path, two_photos):
    scene = synthesise(two_photos, tmp_path / "s", SynthOptions(max_side=96))[0]
    gt = cv2.imread(str(scene / "HDRImg.hdr"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(scene / "HDRImg.hdr"), gt[:-4])
    h, w = gt.shape[:2]
    r = run_cli("eval", str(tmp_path / "s"), env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: scene Desk: ground truth is {w}×{h - 4}, shots are {w}×{h}"

"""AFUNet through hdrmerge's engine: input preparation from frames, tiles, CPU estimate, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import OpenEXR
import pytest
import torch
from torch import nn

from hdrmerge import afunet_tiling as at
from hdrmerge.inference import Engine, merge
from hdrmerge.models import AFUNet, build_model
from hdrmerge.models.afunet import make_input, run_padded
from hdrmerge.reading import Frame
from hdrmerge.tiling import Window
from hdrmerge.weights.store import read_checkpoint_file
from tests.conftest import AFUNET_FIXTURES, AFUNET_WEIGHTS, DATA, run_cli, run_cli_in_process

KALANTARI = [DATA / "kalantari_test002_jpeg" / f"input_{i}_aligned.tif" for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def model() -> AFUNet:
    return build_model(read_checkpoint_file(AFUNET_WEIGHTS))


def _case(name: str) -> dict[str, np.ndarray]:
    with np.load(AFUNET_FIXTURES / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def _frames(pixels: list[np.ndarray]) -> list[Frame]:
    return [Frame(Path(f"f{i}.tif"), p, "tiff") for i, p in enumerate(pixels)]


@pytest.mark.parametrize("name", ["afunet_debug_h20_w28", "afunet_h76_w100"])
def test_input_from_16bit_frames_is_the_authors(name):
    d = _case(name)
    frames = _frames(list(d["codes"]))
    h, w = frames[0].size
    x = at.afunet_input(frames, [1.0, 8.0, 64.0], Window(0, h, 0, w), "cpu")
    assert float((x - torch.from_numpy(d["input"])).abs().max()) <= 1e-6


def test_8bit_codes_are_read_as_the_16bit_codes_they_stand_for():
    v = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    win = Window(0, 16, 0, 16)
    ldr8 = at.frame_ldr(_frames([v])[0], win, "cpu")
    ldr16 = at.frame_ldr(_frames([v.astype(np.uint16) * 257])[0], win, "cpu")
    assert torch.equal(ldr8, ldr16)
    assert float(ldr8.max()) == 65535 / 65536 and float(ldr8[0, 0, 0, 1]) == 257 / 65536


def test_whole_image_run_reproduces_testpy_golden(model):
    d = _case("afunet_h96_w80")
    out = at.run_afunet(model, _frames(list(d["codes"])), [1.0, 8.0, 64.0], tile=4096, device="cpu")
    assert out.tiles == 1
    ref = d["output_testpy"][0].transpose(1, 2, 0)
    assert np.abs(out.hdr - ref).max() <= 5e-6


@pytest.mark.parametrize("n,tile", [(300, 256), (1000, 256), (1500, 512), (2000, 1024), (257, 256)])
def test_tile_spans_cover_overlap_and_align(n, tile):
    spans = at.plan_axis(n, tile)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(b - a == tile for a, b in spans)
    assert all(a % 8 == 0 for a, _ in spans[:-1])
    for (a0, b0), (a1, b1) in zip(spans, spans[1:]):
        assert b0 - a1 >= at.OVERLAP  # context on both sides plus the blend
    total = np.zeros(n)
    for span in spans:
        wts = at.axis_weights(span, n)
        assert wts.min() >= 0 and wts.max() == 1
        total[span[0] : span[1]] += wts
    assert total.min() > 0.0


class _Pointwise(nn.Module):
    """A network whose output at a pixel depends on that pixel only: tiling must not change it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(18, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))


def test_tiles_blend_back_into_the_whole_image_for_a_pointwise_network():
    pixels = [cv2.imread(str(p))[300:600, 200:720, ::-1].copy() for p in KALANTARI]
    frames = _frames(pixels)
    net = _Pointwise().eval()
    whole = at.run_afunet(net, frames, [1.0, 8.0, 64.0], tile=4096, device="cpu")
    tiled = at.run_afunet(net, frames, [1.0, 8.0, 64.0], tile=256, device="cpu")
    assert (whole.tiles, tiled.tiles) == (1, 2 * 3)
    assert np.abs(tiled.hdr - whole.hdr).max() <= 1e-6


def test_cpu_warning_from_measured_cost():
    big = at.plan_tiles(1000, 1500, 4096)
    assert big == [Window(0, 1000, 0, 1500)]
    assert at.padded_pixels(big) == 1024 * 1536
    assert at.cpu_warning((1000, 1500), big, threads=2) == (
        f"AFUNet on the CPU will take about {round(1024 * 1536 / 1e6 * at.CPU_SECONDS_PER_MP / 2 / 60)} min "
        f"for this 1500×1000 bracket ({at.CPU_SECONDS_PER_MP:.0f} CPU-seconds per megapixel measured); "
        "a GPU is the way to run it (--device cuda), or use --model safnet-s"
    )
    assert at.cpu_warning((160, 200), at.plan_tiles(160, 200, 4096), threads=2) is None


def test_merge_warns_before_a_long_cpu_run(monkeypatch, random_afunet_state):
    from hdrmerge.weights import LoadedWeights

    events: list[str] = []
    monkeypatch.setattr(at, "run_afunet", lambda *a, **k: events.append("run") or at.Result(np.zeros((1, 1, 3), np.float32), 1, 1))
    weights = LoadedWeights(random_afunet_state, "AFUNet", None, "0" * 64, "--weights", AFUNET_WEIGHTS)
    engine = Engine.load(weights, "cpu", "auto")
    assert engine.precision == "fp32" and not engine.has_intermediates
    engine.notice = lambda message: events.append(message)
    frames = _frames([np.zeros((1000, 1500, 3), np.uint8)] * 3)
    merge(engine, frames, [1.0, 8.0, 64.0], tile=4096)
    assert len(events) == 2 and events[0].startswith("AFUNet on the CPU will take about ") and events[1] == "run"


def _crop_bracket(folder: Path, rows: slice, cols: slice) -> list[Path]:
    folder.mkdir()
    paths = []
    for i, src in enumerate(KALANTARI):
        paths.append(folder / f"s{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.imread(str(src))[rows, cols])
    return paths


def test_cli_fuse_with_afunet_writes_the_networks_output(isolated_env, tmp_path, model):
    paths = _crop_bracket(tmp_path / "in", slice(420, 516), slice(640, 760))  # 120×96, the arm
    out = tmp_path / "afunet.exr"
    r = run_cli_in_process("fuse", *map(str, paths), "-o", str(out), "--ev=0,3,6", "--exact", "--model", "afunet-kalantari",
                "--weights", str(AFUNET_WEIGHTS), "--exr-dtype", "float", "--json", env=isolated_env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["model"]["arch"] == "AFUNet" and report["model"]["name"] is None
    assert (report["flow_scale"], report["tiles"], report["normalize_gain"]) == (None, 1, 8.0)
    f = OpenEXR.File(str(out))
    header, rgb = f.header(), f.channels()["RGB"].pixels
    assert header["hdrmerge:model"] == "AFUNet" and "ICCV 2025" in header["comments"]
    assert "hdrmerge:flowScale" not in header
    # What the authors' code computes from these 8-bit codes, times the reference's exposure (8).
    ldrs = [torch.from_numpy(cv2.imread(str(p))[..., ::-1].astype(np.float32) * 257 / 65536).permute(2, 0, 1)[None] for p in paths]
    with torch.inference_mode():
        expected = run_padded(model, make_input(ldrs, [1.0, 8.0, 64.0]))[0].permute(1, 2, 0).numpy() * 8.0
    assert rgb.shape == (96, 120, 3)
    assert np.abs(rgb - expected).max() <= 1e-5


def test_cli_fuse_with_afunet_writes_a_dng_without_a_flow_scale(isolated_env, tmp_path):
    import tifffile

    paths = _crop_bracket(tmp_path / "in", slice(420, 452), slice(640, 688))  # 48×32
    out = tmp_path / "afunet.dng"
    r = run_cli_in_process("fuse", *map(str, paths), "-o", str(out), "--ev=0,3,6", "--model", "afunet-kalantari",
                "--weights", str(AFUNET_WEIGHTS), "--dng-dtype", "float", env=isolated_env)
    assert r.returncode == 0, r.stderr
    with tifffile.TiffFile(out) as tif:
        xmp = tif.pages[0].tags[700].value
        xmp = xmp.decode() if isinstance(xmp, bytes) else xmp
        assert tif.pages[0].pages[0].tags["PhotometricInterpretation"].value == 34892  # the SubIFD
    assert "<hdrmerge:model>AFUNet</hdrmerge:model>" in xmp and "flowScale" not in xmp


def test_exception_debug_dir_with_afunet_model(isolated_env, tmp_path):
    paths = _crop_bracket(tmp_path / "in", slice(0, 32), slice(0, 32))
    r = run_cli("fuse", *map(str, paths), "-o", str(tmp_path / "o.exr"), "--model", "afunet-hu",
                "--debug-dir", str(tmp_path / "dbg"), env=isolated_env)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: --debug-dir shows SAFNet's flows and masks; AFUNet has none: drop --debug-dir or use --model safnet-s"
    )
    assert not (tmp_path / "o.exr").exists()


def test_exception_tile_smaller_than_afunet_allows(random_afunet_state):
    from hdrmerge.errors import InputError
    from hdrmerge.weights import LoadedWeights

    engine = Engine.load(LoadedWeights(random_afunet_state, "AFUNet", None, "0" * 64, "--weights", AFUNET_WEIGHTS), "cpu")
    frames = _frames([np.zeros((300, 300, 3), np.uint8)] * 3)
    with pytest.raises(InputError, match=r"^--tile 128: AFUNet's tiles must be at least 256 px \(neighbours overlap by 96 px\)$"):
        merge(engine, frames, [1.0, 8.0, 64.0], tile=128)


def test_auto_precision_keeps_afunet_fp32_on_cuda():
    # AFUNet's fp16 output has not been measured against fp32 (no GPU here): auto stays fp32.
    from hdrmerge.inference import resolve_precision

    assert resolve_precision("auto", torch.device("cuda"), "AFUNet") == "fp32"
    assert resolve_precision("fp16", torch.device("cuda"), "AFUNet") == "fp16"
    assert resolve_precision("auto", torch.device("cuda"), "SAFNet") == "fp16"


def test_cli_eval_scores_afunet_on_a_synth_scene(isolated_env, tmp_path):
    import shutil

    from hdrmerge.testsets import SynthOptions, synthesise

    (tmp_path / "photos").mkdir()
    shutil.copy(DATA / "openexr_photos" / "Desk.exr", tmp_path / "photos")
    synthesise(tmp_path / "photos", tmp_path / "set", SynthOptions(max_side=96))
    r = run_cli_in_process("eval", str(tmp_path / "set"), "--model", "afunet-kalantari", "--weights", str(AFUNET_WEIGHTS),
                "--json", env=isolated_env)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["model"]["arch"], data["model"]["flow_scale"]) == ("AFUNet", None)
    scores = data["scenes"][0]["hdrmerge"]
    # Random fixture weights: the scores only show that the scene was merged and scored.
    assert set(scores) == {"psnr_mu", "psnr_l", "ssim_mu", "ssim_l"} and all(np.isfinite(v) for v in scores.values())

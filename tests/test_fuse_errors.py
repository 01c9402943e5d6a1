"""The bad-input battery: each case exits with its documented code, prints one
line on stderr with no traceback, and leaves no output (nor temporary) file."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from hdrmerge.demo_scene import write_bracket
from tests import corrupt
from tests.conftest import DATA, SHARED, run_cli, run_cli_in_process, start_paused_cli


@pytest.fixture
def bracket(tmp_path):
    return write_bracket(tmp_path / "in", size=(64, 96))


def _fails(r, code: int, message: str) -> None:
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0] == "error: " + message, lines[0]
    assert r.stdout == ""


def _no_outputs(folder) -> None:
    left = sorted(p.name for p in folder.iterdir())
    assert left == [], left


def test_exception_truncated_jpeg(env, bracket, tmp_path):
    data = bracket[1].read_bytes()
    bracket[1].write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("fuse", *map(str, bracket), "-o", str(out / "x.exr"), env=env)
    _fails(r, 2, f"{bracket[1]}: damaged or truncated JPEG file; re-export or copy it again")
    _no_outputs(out)


def test_exception_text_file_named_jpg(env, bracket, tmp_path):
    bracket[2].write_text("this is not a photograph\n")
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("fuse", *map(str, bracket), "-o", str(out / "x.hdr"), env=env)
    _fails(r, 2, f"{bracket[2]}: not a recognised image (JPEG, PNG, TIFF or camera RAW); check the file")
    _no_outputs(out)


def test_exception_mismatched_sizes(env, bracket, tmp_path):
    small = cv2.resize(cv2.imread(str(bracket[0])), (48, 32))
    cv2.imwrite(str(bracket[0]), small)
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("fuse", *map(str, bracket), "-o", str(out / "x.exr"), env=env)
    _fails(r, 2, "shot_01.jpg is 48×32 but shot_02.jpg is 96×64; all shots of a bracket must have the same size")
    _no_outputs(out)


def test_exception_same_exposure_twice(env, tmp_path):
    paths = write_bracket(tmp_path / "in", evs=(0.0, 2.0, 2.0), size=(64, 96))
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("fuse", *map(str, paths), "-o", str(out / "x.exr"), env=env)
    _fails(r, 2, "shot_02.jpg and shot_03.jpg have the same exposure (-10.00 EV, from EXIF); "
           "a bracket needs three different exposures (pass --ev if the metadata is wrong)")
    _no_outputs(out)


@pytest.mark.parametrize("count", [2, 4])
def test_exception_two_or_four_files(env, tmp_path, count):
    paths = write_bracket(tmp_path / "in", evs=tuple(float(2 * i) for i in range(count)), size=(64, 96))
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("fuse", *map(str, paths), "-o", str(out / "x.exr"), env=env)
    _fails(r, 2, f"fuse takes exactly 3 shots, got {count}; for longer brackets use `hdrmerge batch`, which picks three")
    _no_outputs(out)


def test_exception_unwritable_output_directory(env, bracket):
    # /proc refuses new files even to root, unlike a chmod-ed directory.
    r = run_cli("fuse", *map(str, bracket), "-o", "/proc/x.exr", env=env)
    assert r.returncode == 2
    assert r.stderr.startswith("error: output directory /proc is not writable (")
    assert r.stderr.strip().endswith("); choose another output path")
    assert len(r.stderr.strip().splitlines()) == 1


def test_exception_missing_output_directory(env, bracket, tmp_path):
    r = run_cli("fuse", *map(str, bracket), "-o", str(tmp_path / "nope" / "x.exr"), env=env)
    _fails(r, 2, f"output directory {tmp_path / 'nope'} does not exist; create it first")


def test_exception_existing_output_is_not_replaced(env, bracket, tmp_path):
    out = tmp_path / "x.exr"
    out.write_bytes(b"precious")
    r = run_cli("fuse", *map(str, bracket), "-o", str(out), env=env)
    _fails(r, 2, f"{out} exists already; pass --overwrite to replace it")
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "x.exr"]


def test_exception_existing_preview_is_not_replaced(env, bracket, tmp_path):
    (tmp_path / "x.exr.preview.jpg").write_bytes(b"precious")
    r = run_cli("fuse", *map(str, bracket), "-o", str(tmp_path / "x.exr"), env=env)
    _fails(r, 2, f"{tmp_path / 'x.exr.preview.jpg'} exists already; pass --overwrite to replace it")
    assert not (tmp_path / "x.exr").exists()


def test_overwrite_replaces_both_outputs(env, bracket, tmp_path):
    out = tmp_path / "x.exr"
    out.write_bytes(b"old")
    (tmp_path / "x.exr.preview.jpg").write_bytes(b"old")
    r = run_cli("fuse", *map(str, bracket), "-o", str(out), "--overwrite", "--quiet", env=env)
    assert r.returncode == 0 and r.stderr == ""
    assert out.read_bytes()[:4] == b"\x76\x2f\x31\x01"  # OpenEXR magic
    assert cv2.imread(str(tmp_path / "x.exr.preview.jpg")).shape == (64, 96, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "x.exr", "x.exr.preview.jpg"]


def test_exception_second_fuse_to_an_output_being_written_stops_with_one_line(env, bracket, tmp_path):
    out, signals = tmp_path / "out", tmp_path / "signals"
    out.mkdir()
    # The first run holds the output's lock, paused once its inputs are decoded.
    first = start_paused_cli(["fuse", *map(str, bracket), "-o", str(out / "x.exr")], signals, env)
    try:
        second = run_cli("fuse", *map(str, bracket), "-o", str(out / "x.exr"), "--overwrite", env=env)
        _fails(second, 1, f"another hdrmerge run (process {first.pid}) is writing x.exr; "
                          "wait for it to finish, or choose another output path")
        assert sorted(p.name for p in out.iterdir()) == [".x.exr.lock"]  # the first run's; nothing written
        (signals / "go").touch()
        _, stderr = first.communicate(timeout=300)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["x.exr", "x.exr.preview.jpg"]  # lock released and removed


@pytest.mark.parametrize(
    "args,message",
    [
        (("--ev", "a,b,c"), "--ev 'a,b,c': give numbers separated by commas, e.g. --ev=-2,0,2"),
        (("--ev=0,2",), "--ev has 2 values; give 3, one per input in input order (e.g. --ev -2,0,2)"),
        (("--flow-scale", "3"), "--flow-scale 3.0: must be between 0.0625 and 1 (0.5 is what the paper uses)"),
        (("--model", "nope"), "unknown model 'nope'; known: safnet-s, safnet, safnet-challenge123, afunet-kalantari, afunet-hu, afunet-tel (see `hdrmerge weights list`)"),
        (("--device", "cuda"), "--device cuda: no CUDA device is available to PyTorch here; use --device auto or cpu"),
    ],
)
def test_exception_bad_options(env, bracket, tmp_path, args, message):
    r = run_cli("fuse", *map(str, bracket), "-o", str(tmp_path / "x.exr"), *args, env=env)
    _fails(r, 2, message)
    assert not (tmp_path / "x.exr").exists()


def test_exception_bad_output_extension(env, bracket, tmp_path):
    r = run_cli("fuse", *map(str, bracket), "-o", str(tmp_path / "x.png"), env=env)
    _fails(r, 2, f"{tmp_path / 'x.png'}: the output must end in .hdr (Radiance), .exr (OpenEXR) or .dng (DNG)")


def test_exception_weights_of_wrong_architecture(env, bracket, tmp_path):
    rnd = SHARED / "fixtures" / "safnet" / "safnet_random_seed2024.pth"
    r = run_cli("fuse", *map(str, bracket), "-o", str(tmp_path / "x.exr"), "--model", "safnet-s", "--weights", str(rnd), env=env)
    _fails(r, 2, f"{rnd} holds a SAFNet checkpoint, but SAFNet-S was asked for; drop --model or give a matching file")
    assert not (tmp_path / "x.exr").exists()


def test_exception_no_weights_and_no_network(isolated_env, bracket, tmp_path):
    r = run_cli("fuse", *map(str, bracket), "-o", str(tmp_path / "x.exr"), env=dict(isolated_env, HF_HUB_OFFLINE="1"))
    _fails(r, 1, "safnet-s is not cached and HF_HUB_OFFLINE is set, so it cannot be downloaded; unset HF_HUB_OFFLINE, "
           "or fetch SAFNet_S_siggraph17.pth elsewhere and run `hdrmerge weights install safnet-s PATH`, "
           "or put it in a folder named by HDRMERGE_WEIGHTS_DIR")
    assert not (tmp_path / "x.exr").exists() and not (tmp_path / "x.exr.preview.jpg").exists()
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_debug_shows_the_traceback(env, bracket, tmp_path):
    bracket[2].write_text("not an image")
    r = run_cli("fuse", *map(str, bracket), "-o", str(tmp_path / "x.exr"), "--debug", env=env)
    assert r.returncode == 2  # the documented code, traceback or not
    assert "Traceback (most recent call last)" in r.stderr and "hdrmerge.errors.InputError" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"error: {bracket[2]}: not a recognised image (JPEG, PNG, TIFF or camera RAW); check the file"


def test_torch_is_imported_alongside_decoding_only_after_the_cheap_checks(tmp_path, bracket, monkeypatch):
    """A missing shot is reported before anything slow starts; with good
    shots the import of torch starts before decoding, to overlap with it."""
    import hdrmerge.inference
    import hdrmerge.pipeline as pipeline
    from hdrmerge.errors import InputError

    events: list[str] = []

    class Recorder:
        def start(self) -> None:
            events.append("import torch")

    class Stop(Exception):
        pass

    def no_engine():
        raise Stop

    real_read = pipeline.read_frames
    monkeypatch.setattr(hdrmerge.inference, "preload", Recorder)
    monkeypatch.setattr(pipeline, "read_frames", lambda paths, **kw: events.append("decode") or real_read(paths, **kw))
    options = pipeline.FuseOptions()
    with pytest.raises(InputError, match=r"missing\.jpg: no such file$"):
        pipeline.fuse_files([*bracket[:2], tmp_path / "missing.jpg"], tmp_path / "o.hdr", options, no_engine)
    assert events == []
    with pytest.raises(Stop):
        pipeline.fuse_files(bracket, tmp_path / "o.hdr", options, no_engine)
    assert events == ["import torch", "decode"]


# --- implausible exposures (issue 11, items 5 and 8) -----------------------------------------


def test_exception_ev_spanning_forty_stops_is_one_line(env, bracket, tmp_path):
    r = run_cli("fuse", *map(str, bracket), "-o", str(tmp_path / "x.exr"), "--ev=0,20,40", env=env)
    _fails(r, 2, "--ev puts shot_03.jpg 40.00 stops above shot_01.jpg, but a bracket spans at most 20 stops; check the values")
    assert not (tmp_path / "x.exr").exists()


def test_exception_exposure_bias_of_1000_ev(env, tmp_path):
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    from hdrmerge.demo_scene import expose, render_scene

    scene = render_scene(64, 96)
    paths = []
    for i, ev in enumerate((-2.0, 0.0, 2.0)):
        exif = Image.Exif()  # bias only: no shutter time, so the bias is what sets the exposures
        exif.get_ifd(0x8769)[0x9204] = IFDRational(-1000 if i == 0 else int(ev), 1)
        paths.append(tmp_path / f"b{i}.jpg")
        Image.fromarray(expose(scene, ev)).save(paths[-1], quality=95, exif=exif)
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("fuse", *map(str, paths), "-o", str(out / "x.exr"), env=env)
    _fails(r, 2, "EXIF exposure bias puts b2.jpg 1002.00 stops above b0.jpg, but a bracket spans at most 20 stops; "
           "the metadata is wrong; pass --ev")
    _no_outputs(out)


def test_exception_ev_in_the_order_the_pixels_reverse(env, tmp_path):
    """Flowers3 is the brightest shot: --ev=-2,0,2 in this input order is backwards."""
    files = [DATA / "merianos_fusion_noexif" / "Flowers" / f"Flowers{i}.jpg" for i in (3, 2, 1)]
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("fuse", *map(str, files), "--ev=-2,0,2", "-o", str(out / "w.exr"), env=env)
    _fails(r, 2, "--ev puts Flowers2.jpg 2.00 stops above Flowers3.jpg, but its pixels are 2.67 stops darker; "
           "give --ev in input order (--ev=2,0,-2 fits the pixels)")
    _no_outputs(out)


def test_exception_same_exposure_twice_in_ev_does_not_say_pass_ev(env, bracket, tmp_path):
    r = run_cli("fuse", *map(str, bracket), "--ev=-2,0,-2", "-o", str(tmp_path / "x.exr"), env=env)
    _fails(r, 2, "shot_01.jpg and shot_03.jpg have the same exposure (-2.00 EV, from --ev); "
           "a bracket needs three different exposures (check the --ev values)")
    assert not (tmp_path / "x.exr").exists()


def test_exr_then_hdr_of_one_stem_write_distinct_previews(env, bracket, tmp_path):
    """The default preview is named after the output's whole file name, so
    `-o x.exr` then `-o x.hdr` is not refused over a shared x.preview.jpg."""
    for name in ("x.exr", "x.hdr"):
        r = run_cli("fuse", *map(str, bracket), "-o", str(tmp_path / name), "--quiet", env=env)
        assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "x.exr", "x.exr.preview.jpg", "x.hdr", "x.hdr.preview.jpg"]
    assert cv2.imread(str(tmp_path / "x.hdr.preview.jpg")).shape == (64, 96, 3)


# --- --json: failures as one JSON object, warnings on stderr (issue 13, part 1) ----------


@pytest.mark.parametrize(
    "args,code,message",
    [
        (("fuse", "a.jpg", "b.jpg", "c.jpg", "-o", "x.exr", "--json", "--weights", "missing.pth"), 2,
         "--weights missing.pth: no such file"),
        (("fuse", "a.jpg", "b.jpg", "c.jpg", "-o", "x.exr", "--json", "--bogus"), 2,
         "No such option: --bogus; see `hdrmerge fuse --help`"),
        (("batch", "--json", "no-such-folder"), 2,
         "no-such-folder: not a folder; give the folder that holds the shots"),
    ],
)
def test_json_failure_prints_one_json_object_too(env, tmp_path, args, code, message):
    r = run_cli(*args, env=env, cwd=tmp_path)
    assert r.returncode == code
    assert r.stderr.strip().splitlines() == ["error: " + message]
    assert [json.loads(line) for line in r.stdout.splitlines()] == [{"error": message, "exit_code": code}]


def test_json_failure_after_decoding_prints_one_json_object(env, bracket, tmp_path):
    bracket[2].write_text("this is not a photograph\n")
    r = run_cli("fuse", *map(str, bracket), "-o", str(tmp_path / "x.exr"), "--json", env=env)
    message = f"{bracket[2]}: not a recognised image (JPEG, PNG, TIFF or camera RAW); check the file"
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["error: " + message]
    assert json.loads(r.stdout) == {"error": message, "exit_code": 2}


def test_warning_goes_to_stderr_under_json(env, tmp_path):
    paths = write_bracket(tmp_path / "in", size=(64, 96), exif=False)
    r = run_cli("fuse", *map(str, paths), "-o", str(tmp_path / "x.exr"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    warning = "no exposure metadata; exposures estimated from the pixels (pass --ev to set them)"
    assert r.stderr.strip().splitlines() == ["warning: " + warning]
    assert json.loads(r.stdout)["warnings"] == [warning]


# --- damaged and oversized shots (issue 11, items 2, 5, 6, 8) ---------------------------------


def _real_bracket(tmp_path):
    """Copies of the frobisher tripod bracket (640×426 camera JPEGs, 3 stops apart)."""
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i in range(3):
        src = DATA / "colour_hdri_frobisher" / f"IMG_260{i}.jpg"
        paths.append(folder / src.name)
        paths[-1].write_bytes(src.read_bytes())
    return paths


def test_exception_jpeg_with_corrupt_data_exits_2_with_one_line(env, tmp_path):
    paths = _real_bracket(tmp_path)
    paths[1].write_bytes(corrupt.flip_entropy_bytes(paths[1].read_bytes()))
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("fuse", *map(str, paths), "-o", str(out / "x.exr"), env=env)
    assert r.returncode == 2, r.stderr  # today: exit 0, a merged image with grey bands
    assert re.fullmatch(
        rf"error: {re.escape(str(paths[1]))}: damaged or truncated JPEG file \(Corrupt JPEG data: [^)]+\); "
        r"re-export or copy it again\n", r.stderr
    ), r.stderr
    _no_outputs(out)


def test_exception_png_with_bad_crc_exits_2_without_libpng_lines(env, tmp_path):
    paths = []
    for i in range(3):
        img = cv2.imread(str(DATA / "colour_hdri_frobisher" / f"IMG_260{i}.jpg"))
        paths.append(tmp_path / f"f{i}.png")
        cv2.imwrite(str(paths[-1]), img)
    paths[2].write_bytes(corrupt.png_with_bad_crc(paths[2].read_bytes()))
    r = run_cli("fuse", *map(str, paths), "-o", str(tmp_path / "x.exr"), "--ev=0,3,6", env=env)
    _fails(r, 2, f"{paths[2]}: damaged or truncated PNG file (IDAT: CRC error); re-export or copy it again")
    assert not (tmp_path / "x.exr").exists()


def test_exception_631_byte_bomb_exits_2_at_once(env, bracket, tmp_path):
    from PIL import Image

    crop = cv2.imread(str(DATA / "ius_pingpong" / "Img1.JPG"))[500:508, 900:908, ::-1]
    Image.fromarray(crop.copy()).save(tmp_path / "tiny.jpg", quality=50)
    bracket[0].write_bytes(corrupt.jpeg_with_size((tmp_path / "tiny.jpg").read_bytes(), 20000, 20000))
    size = bracket[0].stat().st_size
    r = run_cli("fuse", *map(str, bracket), "-o", str(tmp_path / "x.exr"), env=env)
    _fails(r, 2, f"{bracket[0]}: damaged JPEG file (its header declares 20000×20000 pixels in {size:,} bytes); "
           "re-export or copy it again")


def test_exception_header_declaring_50000_squared_exits_2(env, tmp_path):
    paths = _real_bracket(tmp_path)
    paths[2].write_bytes(corrupt.jpeg_with_size(paths[2].read_bytes(), 50000, 50000))
    size = paths[2].stat().st_size
    r = run_cli("fuse", *map(str, paths), "-o", str(tmp_path / "x.exr"), env=env)
    # today: exit 1, "error: OpenCV(…) … Assertion failed"
    _fails(r, 2, f"{paths[2]}: damaged JPEG file (its header declares 50000×50000 pixels in {size:,} bytes); "
           "re-export or copy it again")


def test_exception_shots_above_max_pixels(env, tmp_path):
    paths = _real_bracket(tmp_path)
    r = run_cli("fuse", *map(str, paths), "-o", str(tmp_path / "x.exr"), "--max-pixels", "0.2M", env=env)
    _fails(r, 2, f"{paths[0]}: 640×426 pixels (0.3 MP) exceed the limit of 0.2 MP; if the image is real, raise --max-pixels")


@pytest.mark.parametrize("value", ["lots", "0", "-5M"])
def test_exception_bad_max_pixels(env, bracket, tmp_path, value):
    r = run_cli("fuse", *map(str, bracket), "-o", str(tmp_path / "x.exr"), f"--max-pixels={value}", env=env)
    _fails(r, 2, f"--max-pixels {value!r}: give a pixel count such as 200M (megapixels) or 50000000")


def test_batch_reports_a_bracket_with_a_corrupt_jpeg_as_failed(env, tmp_path):
    card = tmp_path / "card"
    paths = _real_bracket(tmp_path)
    card.mkdir()
    for p in paths:
        p.rename(card / p.name)
    bad = card / "IMG_2601.jpg"
    bad.write_bytes(corrupt.flip_entropy_bytes(bad.read_bytes()))
    r = run_cli("batch", str(card), "--json", env=env)
    assert r.returncode == 1, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows[0]["status"] == "failed"
    assert re.fullmatch(rf"{re.escape(str(bad))}: damaged or truncated JPEG file \(Corrupt JPEG data: [^)]+\); re-export or copy it again", rows[0]["reason"])
    assert not (card / "hdr").exists() or list((card / "hdr").iterdir()) == []


@pytest.mark.parametrize("command", ["batch", "eval"])
def test_batch_and_eval_take_max_pixels_too(env, tmp_path, command):
    (tmp_path / "card").mkdir()
    r = run_cli(command, str(tmp_path / "card"), "--max-pixels=lots", env=env)
    _fails(r, 2, "--max-pixels 'lots': give a pixel count such as 200M (megapixels) or 50000000")
    assert "--max-pixels N" in run_cli(command, "--help").stdout


# --- empty paths, preview format and folder, count before outputs, --weights (review C9, C11, C12, C14) ---


@pytest.mark.parametrize(
    "args,message",
    [
        (("-o", ""), "--output is empty (an unset variable?); give the file to write, e.g. -o merged.exr"),
        (("-o", "x.exr", "--preview", ""),
         "--preview is empty (an unset variable?); give the preview's file, e.g. --preview view.jpg, or --no-preview"),
        (("-o", "x.exr", "--debug-dir", ""),
         "--debug-dir is empty (an unset variable?); give a folder for the debug images, e.g. --debug-dir debug"),
        (("-o", "x.exr", "--preview", "view.tif"), "--preview view.tif: a preview is a JPEG or PNG; end its name in .jpg, .jpeg or .png"),
    ],
    ids=["output", "preview", "debug-dir", "preview-tif"],
)
def test_exception_empty_paths_and_preview_formats_write_nothing(env, tmp_path, args, message):
    """`-o "$OUT"` with OUT unset used to fail with a ValueError (exit 1); `--debug-dir ''` wrote into the current folder."""
    paths = _real_bracket(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    r = run_cli("fuse", *map(str, paths), *args, env=env, cwd=work)
    _fails(r, 2, message)
    _no_outputs(work)


def test_exception_shot_count_comes_before_an_existing_output(env, tmp_path):
    paths = _real_bracket(tmp_path)
    out = tmp_path / "x.exr"
    out.write_bytes(b"a user's file")
    r = run_cli("fuse", *map(str, paths[:2]), "-o", str(out), env=env)
    _fails(r, 2, "fuse takes exactly 3 shots, got 2; for longer brackets use `hdrmerge batch`, which picks three")
    assert out.read_bytes() == b"a user's file"


def test_exception_weights_that_are_not_a_checkpoint(env, tmp_path):
    paths = _real_bracket(tmp_path)
    notes = tmp_path / "README.md"
    notes.write_text("# not a checkpoint\n")
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("fuse", *map(str, paths), "-o", str(out / "x.exr"), "--weights", str(notes), env=env)
    _fails(r, 2, f"--weights {notes}: not a checkpoint (neither a safetensors nor a PyTorch file); "
           "give a SAFNet or AFUNet .safetensors or .pth file")
    _no_outputs(out)


def test_preview_png_is_a_png_and_a_folder_gets_the_default_name(env, tmp_path):
    from PIL import Image

    paths = _real_bracket(tmp_path)
    out = tmp_path / "out"
    (out / "views").mkdir(parents=True)
    r = run_cli("fuse", *map(str, paths), "-o", str(out / "a.exr"), "--preview", str(out / "a.png"), env=env)
    assert r.returncode == 0, r.stderr
    with Image.open(out / "a.png") as img:  # it used to be JPEG bytes in a .png file
        assert img.format == "PNG" and img.size == (640, 426)
        assert img.getexif()[0x0110] == "EOS 5D Mark II"  # the reference shot's EXIF, as in the JPEG preview
    # An existing folder (or any value ending in /) means the default name inside it; the
    # record line names the debug images too.
    r = run_cli("fuse", *map(str, paths), "-o", str(out / "b.exr"), "--preview", str(out / "views"),
                "--debug-dir", str(out / "dbg"), env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "views").iterdir()) == ["b.exr.preview.jpg"]
    assert cv2.imread(str(out / "views" / "b.exr.preview.jpg")).shape == (426, 640, 3)
    record = r.stderr.splitlines()[-1]
    n = len(list((out / "dbg").iterdir()))
    assert n >= 9 and record.startswith(f"wrote {out / 'b.exr'} (")
    assert f" and {out / 'views' / 'b.exr.preview.jpg'}, and {n} debug images in {out / 'dbg'}; exposures " in record


@pytest.mark.parametrize(
    "args,message",
    [
        (("calibrate", str(DATA / "colour_hdri_frobisher"), "-o", ""),
         "--output is empty (an unset variable?); give the response file to write, e.g. -o camera.json"),
        (("finetune", str(DATA / "colour_hdri_frobisher"), "-o", ""),
         "--output is empty (an unset variable?); give the checkpoint to write, e.g. -o tuned.safetensors"),
        (("eval", str(DATA / "kalantari_test002_jpeg"), "--out", ""),
         "--out is empty (an unset variable?); give a folder for eval.csv and eval.json, e.g. --out results"),
        (("batch", str(DATA / "ius_pingpong"), "-o", ""),
         "--output is empty (an unset variable?); give the folder for the merged files, e.g. -o hdr (without -o they go to FOLDER/hdr)"),
        (("batch", ""), "FOLDER is empty (an unset variable?); give the folder with the shots, e.g. hdrmerge batch DCIM/100CANON"),
    ],
    ids=["calibrate", "finetune", "eval", "batch-output", "batch-folder"],
)
def test_exception_empty_output_of_other_commands_writes_nothing(env, tmp_path, args, message):
    r = run_cli(*args, env=env, cwd=tmp_path)
    _fails(r, 2, message)
    _no_outputs(tmp_path)


@pytest.mark.parametrize(
    "args,message",
    [
        # The default plot (<output stem>.png) would be shot1.png itself.
        (("{d}/shot1.png", "{d}/shot2.png", "{d}/shot3.png", "-o", "{d}/shot1.json", "--overwrite"),
         "the plot {d}/shot1.png is an input file; inputs are never overwritten, so choose another path for the plot"),
        # A photo in a folder given, spelled another way.
        (("{d}", "-o", "{t}/cam.json", "--plot", "{d}/../in/shot2.png", "--overwrite"),
         "the plot {d}/../in/shot2.png is the input file {d}/shot2.png; inputs are never overwritten, so choose another path for the plot"),
        (("{d}", "-o", "{t}/cam.json", "--plot", "{t}/cam.json"), "--plot {t}/cam.json: the plot is a PNG; end its name in .png"),
        (("{d}", "-o", "{t}/cam.json", "--plot", "{t}/c3.jpg"), "--plot {t}/c3.jpg: the plot is a PNG; end its name in .png"),
    ],
    ids=["default-plot-is-a-shot", "plot-is-a-shot-in-a-folder", "plot-is-the-response-file", "plot-not-png"],
)
def test_exception_calibrate_never_writes_over_a_shot_or_its_own_file(env, tmp_path, args, message):
    """Review 6, findings 1 and 2: with --overwrite, calibrate replaced a shot with its plot;
    --plot X.json wrote a PNG into the response file, --plot c3.jpg PNG bytes under .jpg."""
    d = tmp_path / "in"
    d.mkdir()
    for i in (1, 2, 3):
        cv2.imwrite(str(d / f"shot{i}.png"), np.full((8, 8, 3), 60 * i, np.uint8))
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    r = run_cli_in_process("calibrate", *(a.format(d=d, t=tmp_path) for a in args), env=env)
    _fails(r, 2, message.format(d=d, t=tmp_path))
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]

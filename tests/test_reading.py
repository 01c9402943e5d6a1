"""Decoding by content, bit depths, channel layouts, orientation, RAW, EXIF."""

from __future__ import annotations

import io
import os
import re
import shutil
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import rawpy

from hdrmerge.errors import InputError
from hdrmerge.reading import Exif, _captured_c_stderr, read_exif, read_frame, read_frames
from hdrmerge.demo_scene import ShotInfo, write_jpeg
from tests.conftest import DATA


def test_jpeg_named_tif_is_read_as_jpeg():
    f = read_frame(DATA / "kalantari_test002_jpeg" / "input_1_aligned.tif")
    assert f.kind == "jpeg" and f.size == (1000, 1500) and f.pixels.dtype == np.uint8
    # Same pixels as OpenCV's own reading of the file, RGB order.
    ref = cv2.imread(str(DATA / "kalantari_test002_jpeg" / "input_1_aligned.tif"))[:, :, ::-1]
    assert np.array_equal(f.pixels, ref)


def test_8_bit_divides_by_255_and_16_bit_by_65535(tmp_path):
    img8 = np.full((4, 5, 3), 255, np.uint8)
    img16 = np.full((4, 5, 3), 65535, np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), img8)
    cv2.imwrite(str(tmp_path / "b.tif"), img16)
    a, b = read_frame(tmp_path / "a.png"), read_frame(tmp_path / "b.tif")
    assert (a.kind, b.kind) == ("png", "tiff")
    assert a.ldr().max() == 1.0 and b.ldr().max() == 1.0
    assert b.pixels.dtype == np.uint16


def test_16_bit_tiff_keeps_values_and_rgb_order(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "x.tif"), rgb[:, :, ::-1])  # OpenCV writes BGR
    assert np.array_equal(read_frame(tmp_path / "x.tif").pixels, rgb)


def test_grey_becomes_three_channels_and_alpha_is_dropped(tmp_path):
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    f = read_frame(tmp_path / "g.png")
    assert f.pixels.shape == (4, 5, 3) and np.array_equal(f.pixels[:, :, 1], grey)
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 2] = 200  # red
    bgra[..., 3] = 7  # alpha
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    f = read_frame(tmp_path / "a.png")
    assert f.pixels.shape == (4, 5, 3) and f.pixels[0, 0].tolist() == [200, 0, 0]


@pytest.mark.parametrize("orientation,expected_shape", [(1, (20, 30)), (3, (20, 30)), (6, (30, 20)), (8, (30, 20))])
def test_exif_orientation_is_applied(tmp_path, orientation, expected_shape):
    from PIL import Image

    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:4, :4] = 255  # a white corner at the top left of the stored image
    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.jpg", quality=100, exif=exif)
    f = read_frame(tmp_path / "o.jpg")
    assert f.size == expected_shape
    corner = {1: (0, 0), 3: (-1, -1), 6: (0, -1), 8: (-1, 0)}[orientation]
    assert f.pixels[corner[0] * 2 if corner[0] else 0, corner[1] * 2 if corner[1] else 0].mean() > 200


def test_raw_kdc_decodes_linearly_then_gamma(tmp_path):
    path = DATA / "rawpy_kodak_kdc" / "RAW_KODAK_DC50.KDC"
    f = read_frame(path)
    assert f.kind == "raw" and f.pixels.dtype == np.uint16 and f.size == (512, 768)
    with rawpy.imread(str(path)) as raw:
        linear = raw.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True)
    back = (f.pixels.astype(np.float64) / 65535.0) ** 2.2 * 65535.0
    assert np.abs(back - linear).max() < 65535 * 2e-3
    # EXIF from exifread: ExposureTime 87/20000, FNumber 31/5.
    assert f.exif.exposure_time == pytest.approx(87 / 20000)
    assert f.exif.fnumber == pytest.approx(6.2)
    assert f.exif.make == "Eastman Kodak Company"


def test_raw_is_recognised_whatever_its_name(tmp_path):
    shutil.copy(DATA / "rawpy_kodak_kdc" / "RAW_KODAK_DC50.KDC", tmp_path / "shot.jpg")
    assert read_frame(tmp_path / "shot.jpg").kind == "raw"


def test_exif_of_real_camera_files():
    e = read_exif(DATA / "ius_pingpong" / "Img1.JPG")
    assert (e.make, e.model, e.exposure_time, e.fnumber, e.iso) == ("Canon", "Canon EOS 1000D", 0.001, 5.0, 100.0)
    assert (e.shutter_apex, e.aperture_apex, e.exposure_bias) == (10.0, 4.625, -2.0)
    assert e.capture_time.isoformat() == "2013-02-10T14:06:05.360000"
    s = read_exif(DATA / "bif_exif_thumbs" / "DSC08204.JPG")
    assert (s.make, s.model, s.iso, s.fnumber, s.exposure_bias) == ("SONY", "DSC-RX100M6", 4000.0, 3.2, -1.3)
    assert s.exposure_time == pytest.approx(1 / 30)
    assert read_exif(DATA / "merianos_fusion_noexif" / "Flowers" / "Flowers1.jpg").has_exposure is False


@pytest.mark.parametrize(
    ("make", "model", "camera"),
    [
        ("Canon", "Canon EOS 1000D", "Canon EOS 1000D"),  # the make repeated in the model
        ("NIKON CORPORATION", "NIKON D750", "NIKON D750"),
        ("SONY", "DSC-RX100M6", "SONY DSC-RX100M6"),
        (None, "X100V", "X100V"),
        ("Canon", None, "Canon"),
        (None, None, None),
    ],
)
def test_camera_name_states_the_make_once(make, model, camera):
    assert Exif(make=make, model=model).camera == camera
    if make == "Canon" and model:  # and on a real file of that camera
        assert read_exif(DATA / "ius_pingpong" / "Img1.JPG").camera == "Canon EOS 1000D"


def test_exif_written_by_our_synthetic_camera_reads_back(tmp_path):
    write_jpeg(tmp_path / "s.jpg", np.zeros((8, 8, 3), np.uint8), ShotInfo(Fraction(1, 60), fnumber=5.6, iso=400, exposure_bias=-1.0))
    e = read_exif(tmp_path / "s.jpg")
    assert (e.exposure_time, e.fnumber, e.iso, e.exposure_bias) == (pytest.approx(1 / 60), 5.6, 400.0, -1.0)


def test_exception_truncated_jpeg(tmp_path):
    data = (DATA / "ius_pingpong" / "Img1.JPG").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 9 // 10])
    with pytest.raises(InputError, match=r"cut\.jpg: damaged or truncated JPEG file; re-export or copy it again$"):
        read_frame(tmp_path / "cut.jpg")


def test_exception_text_named_jpg(tmp_path):
    (tmp_path / "notes.jpg").write_text("hello, not an image\n")
    with pytest.raises(InputError, match=r"notes\.jpg: not a recognised image \(JPEG, PNG, TIFF or camera RAW\); check the file$"):
        read_frame(tmp_path / "notes.jpg")


def test_exception_missing_empty_and_directory(tmp_path):
    with pytest.raises(InputError, match=r"nope\.jpg: no such file$"):
        read_frame(tmp_path / "nope.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.jpg: empty file$"):
        read_frame(tmp_path / "empty.jpg")
    with pytest.raises(InputError, match=r"is a directory"):
        read_frame(tmp_path)


def test_exception_float_tiff_is_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "f.tif"), np.ones((4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"float32 samples are not supported"):
        read_frame(tmp_path / "f.tif")


def test_exception_truncated_raw_is_damaged_not_read_as_tiff(tmp_path, capfd):
    data = (DATA / "rawpy_kodak_kdc" / "RAW_KODAK_DC50.KDC").read_bytes()
    (tmp_path / "cut.kdc").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.kdc: damaged camera RAW file \(LibRaw could not decode it: .+\); copy it again$"):
        read_frame(tmp_path / "cut.kdc")
    assert capfd.readouterr().err == ""  # LibRaw's own complaint was folded into the message


def test_exception_truncated_png_prints_nothing_from_libpng(tmp_path, capfd):
    ok, buf = cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))
    (tmp_path / "cut.png").write_bytes(buf.tobytes()[:-30])
    with pytest.raises(InputError, match=r"cut\.png: damaged or truncated PNG file"):
        read_frame(tmp_path / "cut.png")
    assert capfd.readouterr().err == ""


# --- several shots at once ----------------------------------------------------------------


def test_read_frames_keeps_input_order_and_pixels():
    paths = [DATA / "ius_pingpong" / f"Img{i}.JPG" for i in (3, 1, 2)]
    frames = read_frames(paths)
    assert [f.path for f in frames] == paths
    for f, p in zip(frames, paths):
        assert np.array_equal(f.pixels, read_frame(p).pixels)


def test_exception_read_frames_reports_the_first_bad_shot_in_input_order(tmp_path):
    data = (DATA / "ius_pingpong" / "Img1.JPG").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.jpg").write_text("not an image\n")
    good = DATA / "ius_pingpong" / "Img2.JPG"
    with pytest.raises(InputError, match=r"cut\.jpg: damaged or truncated JPEG"):
        read_frames([good, tmp_path / "cut.jpg", tmp_path / "notes.jpg"])
    with pytest.raises(InputError, match=r"notes\.jpg: not a recognised image"):
        read_frames([tmp_path / "notes.jpg", tmp_path / "cut.jpg", good])


def test_libraw_lines_go_to_their_decode_and_other_output_is_passed_on(capfd):
    """Overlapping captures (parallel RAW decodes) share one redirection of
    fd 2: each gets the lines about its own file; anything else printed
    meanwhile (another thread's progress display) reaches the real stderr."""
    with _captured_c_stderr("a.nef") as a:
        os.write(2, b"a.nef: data corrupted at 1234\n")
        with _captured_c_stderr("b.cr2") as b:
            os.write(2, b"progress 50%\n")
            os.write(2, b"b.cr2: Unexpected end of file\n")
        assert b == ["b.cr2: Unexpected end of file"]
        os.write(2, b"progress 100%\n")
    assert a == ["a.nef: data corrupted at 1234"]
    assert capfd.readouterr().err == "progress 50%\nprogress 100%\n"


def test_raw_decodes_in_parallel_with_good_and_damaged_files(tmp_path, capfd):
    data = (DATA / "rawpy_kodak_kdc" / "RAW_KODAK_DC50.KDC").read_bytes()
    for name in ("a.kdc", "b.kdc"):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "cut.kdc").write_bytes(data[: len(data) // 2])
    frames = read_frames([tmp_path / "a.kdc", tmp_path / "b.kdc"])
    assert np.array_equal(frames[0].pixels, frames[1].pixels) and frames[0].kind == "raw"
    with pytest.raises(InputError, match=r"cut\.kdc: damaged camera RAW file"):
        read_frames([tmp_path / "a.kdc", tmp_path / "cut.kdc", tmp_path / "b.kdc"])
    assert capfd.readouterr().err == ""


# --- damaged data the decoders report (issue 11, item 2) ------------------------------------

from tests import corrupt  # noqa: E402

IMG1 = DATA / "ius_pingpong" / "Img1.JPG"
DAMAGE = r"; re-export or copy it again$"


def _kalantari_png(tmp_path, name="k.png", **kw):
    """A real photograph (Kalantari frame 1, 1500×1000) as an 8-bit PNG."""
    img = cv2.imread(str(DATA / "kalantari_test002_jpeg" / "input_1_aligned.tif"))
    path = tmp_path / name
    path.write_bytes(cv2.imencode(".png", img)[1].tobytes())
    return path, img


def test_exception_jpeg_with_corrupt_entropy_data_is_damaged_and_prints_nothing(tmp_path, capfd):
    (tmp_path / "flip.jpg").write_bytes(corrupt.flip_entropy_bytes(IMG1.read_bytes()))
    # OpenCV decodes this file with grey bands, and libjpeg prints its complaint.
    assert cv2.imdecode(np.fromfile(tmp_path / "flip.jpg", np.uint8), cv2.IMREAD_UNCHANGED).shape == (1080, 1920, 3)
    capfd.readouterr()
    with pytest.raises(InputError, match=r"flip\.jpg: damaged or truncated JPEG file \(Corrupt JPEG data: [^)]+\)" + DAMAGE):
        read_frame(tmp_path / "flip.jpg")
    assert capfd.readouterr().err == ""


def test_exception_jpeg_cut_short_inside_its_data_is_damaged(tmp_path, capfd):
    # A partial copy that still ends with the EOI marker.
    (tmp_path / "part.jpg").write_bytes(corrupt.cut_entropy_data(IMG1.read_bytes()))
    with pytest.raises(InputError, match=r"part\.jpg: damaged or truncated JPEG file \(Corrupt JPEG data: premature end of data segment\)" + DAMAGE):
        read_frame(tmp_path / "part.jpg")
    assert capfd.readouterr().err == ""


def test_parallel_decodes_report_each_damaged_jpeg_with_its_own_reason(tmp_path, capfd):
    """The three shots decode in parallel threads; each reason belongs to its file."""
    (tmp_path / "flip.jpg").write_bytes(corrupt.flip_entropy_bytes(IMG1.read_bytes()))
    (tmp_path / "part.jpg").write_bytes(corrupt.cut_entropy_data(IMG1.read_bytes()))
    good = DATA / "ius_pingpong" / "Img2.JPG"
    for _ in range(3):
        with pytest.raises(InputError, match=r"part\.jpg: .*\(Corrupt JPEG data: premature end of data segment\)"):
            read_frames([good, tmp_path / "part.jpg", tmp_path / "flip.jpg"])
        with pytest.raises(InputError, match=r"flip\.jpg: .*\(Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9\)"):
            read_frames([tmp_path / "flip.jpg", good, tmp_path / "part.jpg"])
    assert capfd.readouterr().err == ""


def test_jpeg_pixels_are_those_of_libjpeg_turbo_via_opencv():
    """The strict decoder gives the same pixels OpenCV gave (same libjpeg-turbo, same IDCT)."""
    for path in (IMG1, DATA / "colour_hdri_frobisher" / "IMG_2600.jpg", DATA / "bif_exif_thumbs" / "DSC08191.JPG"):
        assert np.array_equal(read_frame(path).pixels, cv2.imread(str(path))[:, :, ::-1])


def test_grey_and_cmyk_jpegs_decode_to_rgb(tmp_path):
    from PIL import Image

    rgb = cv2.imread(str(DATA / "colour_hdri_frobisher" / "IMG_2601.jpg"))[:64, :80, ::-1]
    for mode in ("L", "CMYK"):
        Image.fromarray(np.ascontiguousarray(rgb)).convert(mode).save(tmp_path / f"{mode}.jpg", quality=95)
        f = read_frame(tmp_path / f"{mode}.jpg")
        ref = cv2.imread(str(tmp_path / f"{mode}.jpg"))[:, :, ::-1]  # OpenCV's own conversion
        assert f.pixels.shape == (64, 80, 3) and np.abs(f.pixels.astype(int) - ref).max() <= 1


def test_exception_png_with_bad_crc_is_damaged_and_libpng_prints_nothing(tmp_path, capfd):
    path, _ = _kalantari_png(tmp_path)
    path.write_bytes(corrupt.png_with_bad_crc(path.read_bytes(), b"IDAT"))
    with pytest.raises(InputError, match=r"k\.png: damaged or truncated PNG file \(IDAT: CRC error\)" + DAMAGE):
        read_frame(path)
    assert capfd.readouterr().err == ""  # today: "libpng error: IDAT: CRC error"


def test_png_with_a_bad_ancillary_chunk_decodes_silently(tmp_path, capfd):
    """libpng drops an ancillary chunk with a bad CRC and warns; the image is intact."""
    from PIL import Image, PngImagePlugin

    img = cv2.imread(str(DATA / "colour_hdri_frobisher" / "IMG_2600.jpg"))[:, :, ::-1]
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "bracket shot")
    Image.fromarray(np.ascontiguousarray(img)).save(tmp_path / "t.png", pnginfo=info)
    (tmp_path / "t.png").write_bytes(corrupt.png_with_bad_crc((tmp_path / "t.png").read_bytes(), b"tEXt"))
    assert np.array_equal(read_frame(tmp_path / "t.png").pixels, img)
    assert capfd.readouterr().err == ""  # today: "libpng warning: tEXt: CRC error"


def test_parallel_png_failures_each_keep_their_own_reason(tmp_path, capfd):
    """Two PNGs failing at the same moment in parallel decodes: each error names its own reason."""
    import threading

    a, _ = _kalantari_png(tmp_path, "a.png")
    b, _ = _kalantari_png(tmp_path, "b.png")
    # The last IDAT chunk's CRC: each decode fails only after decoding nearly the whole image.
    a.write_bytes(corrupt.png_with_bad_crc(a.read_bytes(), b"IDAT", last=True))
    b.write_bytes(corrupt.png_with_bad_crc(b.read_bytes(), b"IDAT", last=True))
    c, _ = _kalantari_png(tmp_path, "c.png")
    c.write_bytes(corrupt.png_with_bad_crc(c.read_bytes(), b"IHDR"))
    expected = {p: re.escape(str(p)) + r": damaged or truncated PNG file \(IDAT: CRC error\)" + DAMAGE for p in (a, b)}
    for _ in range(5):
        # Both threads start decoding together, so both decodes fail while both run.
        start = threading.Barrier(2)
        errors: dict[Path, str] = {}

        def decode(path: Path) -> None:
            start.wait()
            try:
                read_frame(path)
            except InputError as exc:
                errors[path] = str(exc)

        threads = [threading.Thread(target=decode, args=(p,)) for p in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in (a, b):
            assert re.fullmatch(expected[p], errors[p]), errors[p]
        # Another file's reason is never borrowed either.
        with pytest.raises(InputError, match=rf"c\.png: damaged or truncated PNG file \(IHDR: CRC error\)" + DAMAGE):
            read_frames([c, a])
    assert capfd.readouterr().err == ""


def _kalantari_tiff(tmp_path, compression: int) -> tuple[bytes, np.ndarray]:
    img = cv2.imread(str(DATA / "kalantari_test002_jpeg" / "input_1_aligned.tif"))[:200, :300]
    return cv2.imencode(".tif", img.astype(np.uint16) * 257, [cv2.IMWRITE_TIFF_COMPRESSION, compression])[1].tobytes(), img


def test_exception_tiff_with_a_damaged_lzw_strip(tmp_path, capfd):
    data, _ = _kalantari_tiff(tmp_path, 5)
    (tmp_path / "s.tif").write_bytes(corrupt.flip_bytes(data, len(data) // 3, 50))
    with pytest.raises(InputError, match=r"s\.tif: damaged or truncated TIFF file" + DAMAGE):
        read_frame(tmp_path / "s.tif")
    assert capfd.readouterr().err == ""


def test_exception_tiff_whose_strips_lie_past_its_end(tmp_path):
    data, _ = _kalantari_tiff(tmp_path, 1)
    # Uncompressed: the directory comes first (OpenCV writes it at the end), so cut the strips.
    import tifffile

    img16 = tifffile.imread(io.BytesIO(data))
    tifffile.imwrite(tmp_path / "full.tif", img16)
    full = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError, match=r"cut\.tif: damaged TIFF file \(image data cut short\)" + DAMAGE):
        read_frame(tmp_path / "cut.tif")


# --- declared sizes, checked before decoding (issue 11, items 5 and 6) ----------------------------


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any pixel decoder is reached."""
    import hdrmerge.reading as reading

    def refuse(*a, **k):
        raise AssertionError("decoded")

    monkeypatch.setattr(reading, "_decode_jpeg", refuse)
    monkeypatch.setattr(reading, "_decode_png", refuse)
    monkeypatch.setattr(reading, "_cv2", refuse)


def test_exception_631_byte_jpeg_declaring_20000_squared_is_damaged_without_decoding(tmp_path, no_decoding):
    from PIL import Image

    crop = cv2.imread(str(IMG1))[500:508, 900:908, ::-1]
    Image.fromarray(np.ascontiguousarray(crop)).save(tmp_path / "tiny.jpg", quality=50)
    data = corrupt.jpeg_with_size((tmp_path / "tiny.jpg").read_bytes(), 20000, 20000)
    (tmp_path / "bomb.jpg").write_bytes(data)
    assert len(data) < 1000
    with pytest.raises(InputError, match=rf"bomb\.jpg: damaged JPEG file \(its header declares 20000×20000 pixels in {len(data)} bytes\)" + DAMAGE):
        read_frame(tmp_path / "bomb.jpg")


def test_exception_jpeg_declaring_50000_squared_is_damaged_not_an_opencv_assertion(tmp_path, no_decoding):
    (tmp_path / "huge.jpg").write_bytes(corrupt.jpeg_with_size(IMG1.read_bytes(), 50000, 50000))
    with pytest.raises(InputError, match=r"huge\.jpg: damaged JPEG file \(its header declares 50000×50000 pixels in 1,368,710 bytes\)" + DAMAGE):
        read_frame(tmp_path / "huge.jpg")


def test_exception_png_declaring_20000_squared_is_damaged_without_decoding(tmp_path, no_decoding):
    path, _ = _kalantari_png(tmp_path)
    path.write_bytes(corrupt.png_with_size(path.read_bytes(), 20000, 20000))  # valid CRC: a lying header
    size = path.stat().st_size
    assert 1_000_000 < size < 2_000_000  # within deflate's 1032:1 of the declared 1.2 GB
    with pytest.raises(InputError, match=rf"k\.png: damaged PNG file \(its header declares 20000×20000 pixels in {size:,} bytes\)" + DAMAGE):
        read_frame(path)


def test_exception_real_png_bomb_is_refused_by_the_pixel_limit_without_decoding(tmp_path, no_decoding):
    """A genuine image of 12 MP of zeros (a 12 kB file): above --max-pixels 10M, not damaged."""
    zeros = np.zeros((3000, 4000, 3), np.uint8)
    (tmp_path / "z.png").write_bytes(cv2.imencode(".png", zeros, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes())
    assert (tmp_path / "z.png").stat().st_size < 100_000
    with pytest.raises(InputError, match=r"z\.png: 4000×3000 pixels \(12 MP\) exceed the limit of 10 MP; if the image is real, raise --max-pixels$"):
        read_frame(tmp_path / "z.png", max_pixels=10_000_000)


@pytest.mark.parametrize("name", ["Img1.JPG", "k.png", "k.tif", "raw.kdc"])
def test_exception_each_format_is_held_to_the_pixel_limit(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".JPG"):
        path = IMG1
    elif name.endswith(".png"):
        path, _ = _kalantari_png(tmp_path)
    elif name.endswith(".tif"):
        path.write_bytes(_kalantari_tiff(tmp_path, 5)[0])
    else:
        shutil.copy(DATA / "rawpy_kodak_kdc" / "RAW_KODAK_DC50.KDC", path)
    f = read_frame(path)
    h, w = f.size
    with pytest.raises(InputError, match=rf"{path.name}: {w}×{h} pixels \(.+ MP\) exceed the limit of 0.05 MP"):
        read_frame(path, max_pixels=50_000)
    assert read_frame(path, max_pixels=w * h).size == (h, w)


def test_exception_decode_that_cannot_fit_in_memory(tmp_path, monkeypatch):
    from hdrmerge.errors import HdrmergeError
    import hdrmerge.tiling

    # 1920×1080: 3 images of 6.2 MB at most during the decode.
    with pytest.raises(HdrmergeError, match=r"Img1\.JPG: decoding its 1920×1080 pixels \(2 MP\) needs about 19 MB of memory, but 10 MB is available; free some memory or use a machine with more$") as err:
        read_frame(IMG1, memory=10_000_000)
    assert err.value.exit_code == 1 and not isinstance(err.value, InputError)
    assert read_frame(IMG1, memory=20_000_000).size == (1080, 1920)
    # read_frames shares what is available between the shots.
    monkeypatch.setattr(hdrmerge.tiling, "available_memory", lambda device: 3 * 10_000_000)
    with pytest.raises(HdrmergeError, match=r"needs about"):
        read_frames([IMG1, DATA / "ius_pingpong" / "Img2.JPG", DATA / "ius_pingpong" / "Img3.JPG"])


def test_exception_tiff_with_a_damaged_deflate_strip(tmp_path, capfd):
    """libtiff decodes damaged deflate data to garbage without a word (OpenCV returns it)."""
    data, img = _kalantari_tiff(tmp_path, 8)
    bad = corrupt.flip_bytes(data, len(data) // 3, 50)
    (tmp_path / "d.tif").write_bytes(bad)
    garbage = cv2.imdecode(np.frombuffer(bad, np.uint8), cv2.IMREAD_UNCHANGED)
    assert garbage is not None and not np.array_equal(garbage, img.astype(np.uint16) * 257)
    with pytest.raises(InputError, match=r"d\.tif: damaged or truncated TIFF file \(its deflate-compressed image data is damaged\)" + DAMAGE):
        read_frame(tmp_path / "d.tif")
    assert capfd.readouterr().err == ""
    (tmp_path / "ok.tif").write_bytes(data)  # the intact file reads, pixel for pixel
    assert np.array_equal(read_frame(tmp_path / "ok.tif").pixels, img[:, :, ::-1].astype(np.uint16) * 257)


@pytest.mark.parametrize("layout", ["grey", "grey+alpha", "rgba"])
def test_deflate_tiff_layouts_read_as_opencv_reads_them(tmp_path, layout):
    import tifffile

    rgb = cv2.imread(str(DATA / "kalantari_test002_jpeg" / "input_1_aligned.tif"))[:120, :160, ::-1].astype(np.uint16) * 257
    grey = rgb[:, :, 1]
    if layout == "grey":
        tifffile.imwrite(tmp_path / "t.tif", grey, compression="zlib", predictor=True)
    elif layout == "grey+alpha":
        tifffile.imwrite(tmp_path / "t.tif", np.dstack([grey, grey]), compression="zlib", photometric="minisblack", extrasamples=["unassalpha"])
    else:
        tifffile.imwrite(tmp_path / "t.tif", np.dstack([rgb, grey]), compression="zlib", photometric="rgb", extrasamples=["unassalpha"])
    f = read_frame(tmp_path / "t.tif")
    expected = np.dstack([grey] * 3) if layout.startswith("grey") else rgb
    assert f.kind == "tiff" and f.pixels.dtype == np.uint16 and np.array_equal(f.pixels, expected)
    if layout != "grey+alpha":  # (OpenCV reads grey + alpha as 8-bit RGBA)
        opencv = cv2.imread(str(tmp_path / "t.tif"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(f.pixels[:, :, 0], opencv if opencv.ndim == 2 else opencv[:, :, 2])


def test_exception_palette_tiff_with_a_damaged_deflate_strip(tmp_path):
    """Layouts left to OpenCV get the strip check too (one extra inflate pass)."""
    import tifffile

    grey = cv2.imread(str(DATA / "kalantari_test002_jpeg" / "input_1_aligned.tif"), cv2.IMREAD_GRAYSCALE)[:200, :300]
    cmap = np.stack([np.arange(256) * 257, np.arange(256)[::-1] * 257, np.full(256, 32768)]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "p.tif", grey, photometric="palette", colormap=cmap, compression="zlib", rowsperstrip=8)
    assert read_frame(tmp_path / "p.tif").size == (200, 300)
    data = (tmp_path / "p.tif").read_bytes()
    (tmp_path / "p.tif").write_bytes(corrupt.flip_bytes(data, len(data) // 2, 40))
    with pytest.raises(InputError, match=r"p\.tif: damaged TIFF file \(strip \d+ holds damaged deflate data\)" + DAMAGE):
        read_frame(tmp_path / "p.tif")


# --- metadata of large accepted shots: no Pillow warnings (issue 11, item 8) ---------------------


@pytest.mark.parametrize("width,height", [(12000, 9000), (15000, 13000)], ids=["108MP", "195MP"])
def test_metadata_of_shots_under_max_pixels_is_read_without_pillow_bomb_guard(tmp_path, width, height):
    """Pillow warns above 89 MP (two lines on stderr) and refuses above 179 MP; hdrmerge
    accepts shots up to --max-pixels (200 MP), so reading their metadata must do neither."""
    import warnings

    from hdrmerge.reading import Frame
    from hdrmerge.response import read_evidence
    from hdrmerge.writing import preview_exif

    # A camera JPEG with an ICC profile (frobisher), its SOF rewritten: Pillow reads headers only here.
    shot = DATA / "colour_hdri_frobisher" / "IMG_2600.jpg"
    (tmp_path / "big.jpg").write_bytes(corrupt.jpeg_with_size(shot.read_bytes(), width, height))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would reach stderr in the CLI
        evidence = read_evidence(Frame(tmp_path / "big.jpg", np.zeros((4, 4, 3), np.uint8), "jpeg", read_exif(shot)))
        exif = preview_exif(tmp_path / "big.jpg")
    assert evidence.response is not None and (evidence.response.name, evidence.response.source) == ("icc", "metadata")
    assert (exif[0x010F], exif[0x0110]) == ("Canon", "EOS 5D Mark II")  # copied from the shot's EXIF


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_a_decoded_16_bit_tiff_keeps_no_copy_of_its_file_until_garbage_collection(tmp_path, compression):
    # tifffile's objects form reference cycles and leave a stream they did not open open: without
    # closing it, the file's bytes stayed in memory until Python's next cycle collection, a whole
    # 16-bit shot per decode (`finetune` decoding 4 brackets of 24 MP grew by 1 GiB).
    import gc
    import tracemalloc

    import tifffile

    pixels = np.random.default_rng(0).integers(0, 65535, (300, 400, 3), dtype=np.uint16)
    path = tmp_path / "shot.tif"
    tifffile.imwrite(path, pixels, photometric="rgb", compression=compression)
    size = path.stat().st_size
    read_frame(path)  # first: the imports and caches of a first read are not what is measured
    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        frame = read_frame(path)
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    finally:
        gc.enable()
    assert np.array_equal(frame.pixels, pixels)
    assert held < frame.pixels.nbytes + size // 4, (held, frame.pixels.nbytes, size)

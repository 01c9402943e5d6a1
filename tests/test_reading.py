"""Decoding by content, bit depths, channel layouts, orientation, RAW, EXIF."""

from __future__ import annotations

import os
import shutil
from fractions import Fraction

import cv2
import numpy as np
import pytest
import rawpy

from hdrmerge.errors import InputError
from hdrmerge.reading import Exif, _captured_c_stderr, read_exif, read_frame, read_frames
from hdrmerge.synthetic import ShotInfo, write_jpeg
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

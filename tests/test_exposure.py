"""Exposure values from EXIF (APEX, nominal snapping), bias, pixels, --ev."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from hdrmerge.errors import InputError
from hdrmerge.exposure import derive_exposures, exif_exposure, snap_stops
from hdrmerge.reading import Exif, read_frame
from hdrmerge.demo_scene import write_bracket
from tests.conftest import DATA


@pytest.mark.parametrize(
    "seconds,stops",
    [(1 / 60, -6.0), (1 / 1000, -10.0), (1 / 250, -8.0), (1 / 80, -19 / 3), (1 / 90, -6.5), (1 / 13, -11 / 3), (30, 5.0), (8, 3.0)],
)
def test_nominal_shutter_times_snap_to_the_grid(seconds, stops):
    assert snap_stops(math.log2(seconds)) == pytest.approx(stops)


def test_values_off_the_grid_are_kept():
    assert snap_stops(0.17) == 0.17  # farther than 0.12 stop from every third- and half-stop point


def test_apex_is_preferred_over_printed_values():
    # Printed 1/62 s (not a real speed) but APEX Tv = 6 → exactly 2^-6.
    e = exif_exposure(Exif(exposure_time=1 / 62, shutter_apex=6.0, fnumber=5.6, iso=100))
    assert e.time_stops == -6.0 and e.aperture_stops == 5.0 and e.iso_stops == 0.0


def test_pingpong_from_exif_is_minus2_0_plus2():
    frames = [read_frame(DATA / "ius_pingpong" / n) for n in ("Img3.JPG", "Img1.JPG", "Img2.JPG")]
    ex = derive_exposures(frames)
    assert ex.source == "exif"
    assert [ex.ev[i] - ex.ev[1] for i in range(3)] == [4.0, 0.0, 2.0]
    assert ex.order == [1, 2, 0]
    assert ex.warnings == []  # EXIF and pixels agree once the tone curve is allowed for


def test_frobisher_from_exif_is_three_stops_apart():
    frames = [read_frame(DATA / "colour_hdri_frobisher" / f"IMG_260{i}.jpg") for i in range(3)]
    ex = derive_exposures(frames)
    assert ex.source == "exif" and ex.relative() == [1.0, 8.0, 64.0]


def test_iso_changes_inside_a_bracket_are_accounted_for():
    # DSC08201-05: 0, -0.7, +0.7, -1.3, +1.3 EV, with ISO 4000 in two of them.
    evs = [exif_exposure(read_frame(DATA / "bif_exif_thumbs" / f"DSC0820{i}.JPG").exif).ev for i in range(1, 6)]
    assert [round(e - evs[0], 4) for e in evs] == [0.0, round(-2 / 3, 4), round(2 / 3, 4), round(-4 / 3, 4), round(4 / 3, 4)]


def test_no_exif_falls_back_to_pixels_with_a_warning():
    frames = [read_frame(DATA / "merianos_fusion_noexif" / "OldHouse" / f"OldHouse{i}.jpg") for i in (1, 2, 3)]
    ex = derive_exposures(frames)
    assert ex.source == "pixels"
    assert ex.warnings == ["no exposure metadata; exposures estimated from the pixels (pass --ev to set them)"]
    assert ex.order == [0, 1, 2] and 1.0 < ex.ev[1] < ex.ev[2] - 1.0


def test_kalantari_pixels_agree_with_the_published_ev_within_a_third_of_a_stop():
    frames = [read_frame(DATA / "kalantari_test002_jpeg" / f"input_{i}_aligned.tif") for i in (1, 2, 3)]
    ex = derive_exposures(frames, [0, 3, 6])
    assert ex.source == "--ev" and ex.warnings == []
    assert ex.pixel_ev[1] == pytest.approx(3.0, abs=1 / 3) and ex.pixel_ev[2] == pytest.approx(6.0, abs=1 / 3)


def test_cross_check_warns_about_wrong_ev_without_telling_to_pass_ev():
    frames = [read_frame(DATA / "kalantari_test002_jpeg" / f"input_{i}_aligned.tif") for i in (1, 2, 3)]
    ex = derive_exposures(frames, [0, 1, 6])
    assert ex.warnings[0] == "--ev puts input_2_aligned.tif +1.00 EV from input_1_aligned.tif, the pixels say +2.86 EV; check the values"


ISO_TAG, REI_TAG, FNUMBER_TAG, APERTURE_APEX_TAG = 0x8827, 0x8832, 0x829D, 0x9202
EXPOSURE_TIME_TAG, SHUTTER_APEX_TAG = 0x829A, 0x9201
FLOWERS = [DATA / "merianos_fusion_noexif" / "Flowers" / f"Flowers{i}.jpg" for i in (3, 2, 1)]  # brightest first


def test_ev_in_the_order_the_pixels_reverse_is_refused_with_the_order_that_fits():
    with pytest.raises(InputError) as err:
        derive_exposures([read_frame(p) for p in FLOWERS], [-2, 0, 2])
    assert str(err.value) == (
        "--ev puts Flowers2.jpg 2.00 stops above Flowers3.jpg, but its pixels are 2.67 stops darker; "
        "give --ev in input order (--ev=2,0,-2 fits the pixels)"
    )
    # The order it suggests passes (the true steps are not 2 stops: the cross-check still says so).
    assert derive_exposures([read_frame(p) for p in FLOWERS], [2, 0, -2]).order == [2, 1, 0]


def test_exif_order_the_pixels_reverse_is_refused_as_wrong_metadata(tmp_path):
    # Frobisher (1/8 s, 1 s, 8 s) with the shutter times of the first two swapped.
    from PIL.TiffImagePlugin import IFDRational

    swap = {0: {EXPOSURE_TIME_TAG: IFDRational(1, 1)}, 1: {EXPOSURE_TIME_TAG: IFDRational(1, 8)}}
    for edit in swap.values():
        edit[SHUTTER_APEX_TAG] = None
    paths = _edited_copies(tmp_path, FROBISHER, swap)
    assert [read_frame(p).exif.exposure_time for p in paths] == [1.0, 0.125, 8.0]
    with pytest.raises(InputError) as err:
        derive_exposures([read_frame(p) for p in paths])
    assert str(err.value) == (
        "EXIF puts IMG_2600.jpg 3.00 stops above IMG_2601.jpg, but its pixels are 4.30 stops darker; "
        "the metadata is wrong; pass --ev (--ev=-3,0,3 fits the pixels)"
    )


def test_a_small_step_the_pixels_barely_reverse_is_only_warned():
    # DSC08194-96: EXIF says +0.33 EV from DSC08196 to DSC08194, the pixels -0.06 under a linear
    # response (estimation error; that is what auto chose until its fitted curve, with which the
    # pixels say +0.18, beat linear).
    from hdrmerge.pipeline import load_bracket
    from hdrmerge.response import parse_response_option

    paths = [DATA / "bif_exif_thumbs" / f"DSC0819{i}.JPG" for i in (4, 5, 6)]
    ex = load_bracket(paths, response=parse_response_option("linear")).exposures
    assert ex.source == "exif" and ex.pixel_ev[0] - ex.pixel_ev[2] < 0
    assert ex.warnings == ["EXIF puts DSC08194.JPG +0.33 EV from DSC08196.JPG, the pixels say -0.06 EV; check the metadata or pass --ev"]


def test_exception_same_exposure_twice_in_ev_says_to_check_the_values(tmp_path):
    paths = write_bracket(tmp_path, size=(96, 128))
    with pytest.raises(InputError) as err:
        derive_exposures([read_frame(p) for p in paths], [-2, 0, -2])
    assert str(err.value) == (
        "shot_01.jpg and shot_03.jpg have the same exposure (-2.00 EV, from --ev); "
        "a bracket needs three different exposures (check the --ev values)"
    )


def test_cross_check_on_camera_jpegs_catches_a_wrong_middle_frame():
    frames = [read_frame(DATA / "ius_pingpong" / n) for n in ("Img1.JPG", "Img2.JPG", "Img3.JPG")]
    ex = derive_exposures(frames, [0, 1, 4])
    assert len(ex.warnings) == 1 and "after allowing for the camera's tone curve" in ex.warnings[0]


def test_bias_is_used_when_times_are_absent(tmp_path):
    from hdrmerge.demo_scene import expose, render_scene

    scene = render_scene(120, 160)
    paths = []
    for i, ev in enumerate((-2.0, 0.0, 2.0)):
        p = tmp_path / f"b{i}.jpg"
        # Bias-only EXIF: no shutter time, f-number or ISO.
        from PIL import Image
        from PIL.TiffImagePlugin import IFDRational

        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9204] = IFDRational(int(ev * 3), 3)
        Image.fromarray(expose(scene, ev)).save(p, quality=95, exif=exif)
        paths.append(p)
    ex = derive_exposures([read_frame(p) for p in paths])
    assert ex.source == "exif-bias" and ex.ev == [-2.0, 0.0, 2.0]


def test_exception_same_exposure_twice(tmp_path):
    paths = write_bracket(tmp_path, evs=(0.0, 0.0, 2.0), size=(96, 128))
    with pytest.raises(InputError, match=r"^shot_01\.jpg and shot_02\.jpg have the same exposure \(-12\.00 EV, from EXIF\); a bracket needs three different exposures"):
        derive_exposures([read_frame(p) for p in paths])


def test_exception_wrong_number_of_ev_values(tmp_path):
    paths = write_bracket(tmp_path, size=(96, 128))
    with pytest.raises(InputError, match=r"^--ev has 2 values for 3 inputs"):
        derive_exposures([read_frame(p) for p in paths], [0, 2])


def test_synthetic_bracket_exif_gives_the_rendered_spacing(tmp_path):
    paths = write_bracket(tmp_path, evs=(-2.0, 0.0, 2.0), size=(96, 128))
    ex = derive_exposures([read_frame(p) for p in paths])
    assert ex.relative() == [1.0, 4.0, 16.0]
    assert Fraction(1, 250) == Fraction(1, 250)  # nominal 1/250 s snaps to 2^-8


# --- one shot lacking a factor (real EXIF, edited with Pillow) -----------------------------


def _edited_copies(tmp_path, sources, edit: dict[int, dict[int, object]]):
    """Copies of real camera JPEGs; ``edit[i]`` sets (value) or deletes (None) Exif-IFD tags of copy i."""
    from PIL import Image

    out = []
    for i, src in enumerate(sources):
        with Image.open(src) as img:
            exif = img.getexif()
            ifd = exif.get_ifd(0x8769)
            for tag, value in edit.get(i, {}).items():
                if value is None:
                    ifd.pop(tag, None)
                else:
                    ifd[tag] = value
            dest = tmp_path / src.name
            img.save(dest, quality=95, exif=exif)
        out.append(dest)
    return out


BIF = [DATA / "bif_exif_thumbs" / f"DSC0819{i}.JPG" for i in (6, 7, 8)]  # ISO 6400, f/3.2: 1/20, 1/30, 1/13 s
FROBISHER = [DATA / "colour_hdri_frobisher" / f"IMG_260{i}.jpg" for i in range(3)]  # ISO 100, f/8: 1/8, 1, 8 s


def test_missing_iso_in_one_shot_is_taken_from_the_others(tmp_path):
    paths = _edited_copies(tmp_path, BIF, {1: {ISO_TAG: None, REI_TAG: None}})
    frames = [read_frame(p) for p in paths]
    assert frames[1].exif.iso is None and frames[0].exif.iso == 6400
    ex = derive_exposures(frames)
    assert ex.source == "exif"
    # Shutter times alone: 1/20 s, 1/30 s, 1/13 s (nominal) → 0, -2/3, +2/3 EV.
    assert [round(e - ex.ev[0], 4) for e in ex.ev] == [0.0, round(-2 / 3, 4), round(2 / 3, 4)]
    assert ex.warnings[0] == "ISO missing in the EXIF of DSC08197.JPG; taken from the other shots (ISO 6400)"


@pytest.mark.parametrize("fnumber", [None, (0, 1)], ids=["absent", "zero"])
def test_missing_or_zero_fnumber_in_one_shot_is_taken_from_the_others(tmp_path, fnumber):
    paths = _edited_copies(tmp_path, FROBISHER, {1: {FNUMBER_TAG: fnumber, APERTURE_APEX_TAG: None}})
    frames = [read_frame(p) for p in paths]
    assert frames[1].exif.fnumber is None and frames[1].exif.aperture_apex is None
    ex = derive_exposures(frames)
    assert ex.source == "exif" and ex.relative() == [1.0, 8.0, 64.0]
    assert ex.warnings[0] == "f-number missing in the EXIF of IMG_2601.jpg; taken from the other shots (f/8)"


def test_missing_iso_that_differs_in_the_others_falls_back_to_the_exposure_bias(tmp_path):
    # DSC08202-04: ISO 6400, 6400, 4000; bias -0.7, +0.7, -1.3 EV.
    sources = [DATA / "bif_exif_thumbs" / f"DSC0820{i}.JPG" for i in (2, 3, 4)]
    paths = _edited_copies(tmp_path, sources, {1: {ISO_TAG: None, REI_TAG: None}})
    ex = derive_exposures([read_frame(p) for p in paths])
    assert ex.source == "exif-bias" and ex.ev == [-0.7, 0.7, -1.3]
    assert ex.warnings[0] == (
        "ISO missing in the EXIF of DSC08203.JPG and not the same in the other shots; "
        "exposures taken from the EXIF exposure bias"
    )


# --- implausible exposures ------------------------------------------------------------------


def test_exception_absurd_exposure_bias(tmp_path):
    from hdrmerge.demo_scene import expose, render_scene
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    scene = render_scene(64, 96)
    paths = []
    for i, ev in enumerate((-2.0, 0.0, 1000.0)):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9204] = IFDRational(int(ev), 1)
        paths.append(tmp_path / f"b{i}.jpg")
        Image.fromarray(expose(scene, min(ev, 2.0))).save(paths[-1], quality=95, exif=exif)
    with pytest.raises(InputError) as err:
        derive_exposures([read_frame(p) for p in paths])
    assert str(err.value) == (
        "EXIF exposure bias puts b2.jpg 1002.00 stops above b0.jpg, but a bracket spans at most 20 stops; "
        "the metadata is wrong; pass --ev"
    )


@pytest.mark.parametrize(
    "ev,message",
    [
        ([0, 20, 40], "--ev puts shot_03.jpg 40.00 stops above shot_01.jpg, but a bracket spans at most 20 stops; check the values"),
        ([0, float("nan"), 2], "--ev gives shot_02.jpg an exposure of nan EV; check the values"),
    ],
)
def test_exception_implausible_ev(tmp_path, ev, message):
    paths = write_bracket(tmp_path, size=(64, 96))
    with pytest.raises(InputError) as err:
        derive_exposures([read_frame(p) for p in paths], ev)
    assert str(err.value) == message


# --- EXIF in only some shots ------------------------------------------------------------------


def _without_exif(tmp_path, src, suffix=".png"):
    """``src`` saved as a PNG without any metadata, as an editor's export might be."""
    from PIL import Image

    dest = tmp_path / (src.stem + suffix)
    with Image.open(src) as img:
        img.save(dest)
    return dest


@pytest.mark.parametrize("missing", [0, 1, 2])
def test_exif_of_two_shots_is_kept_and_the_third_placed_by_the_pixels(tmp_path, missing):
    # Frobisher: 1/8 s, 1 s, 8 s at f/8 ISO 100, i.e. 3 + 3 stops.
    paths = list(FROBISHER)
    paths[missing] = _without_exif(tmp_path, paths[missing])
    frames = [read_frame(p) for p in paths]
    assert exif_exposure(frames[missing].exif) is None
    ex = derive_exposures(frames)
    assert ex.source == "exif+pixels"
    assert ex.shot_sources == ["pixels" if i == missing else "exif" for i in range(3)]
    truth = [-3.0, 0.0, 3.0]
    known = [i for i in range(3) if i != missing]
    assert [ex.ev[i] - ex.ev[known[0]] for i in known] == [truth[i] - truth[known[0]] for i in known]  # EXIF, exactly
    assert ex.ev[missing] - ex.ev[known[0]] == pytest.approx(truth[missing] - truth[known[0]], abs=0.25)
    names = [p.name for p in paths]
    assert ex.warnings == [
        f"no exposure metadata in {names[missing]}; its exposure estimated from the pixels relative to "
        f"{names[known[0]]} and {names[known[1]]} (pass --ev to set it)"
    ]


def test_exif_of_two_shots_in_the_order_the_pixels_reverse_is_refused(tmp_path):
    # IMG_2600 and IMG_2602 with their shutter times swapped (8 s and 1/8 s), IMG_2601 without EXIF.
    from PIL.TiffImagePlugin import IFDRational

    swap = {0: {EXPOSURE_TIME_TAG: IFDRational(8, 1), SHUTTER_APEX_TAG: None},
            2: {EXPOSURE_TIME_TAG: IFDRational(1, 8), SHUTTER_APEX_TAG: None}}
    paths = _edited_copies(tmp_path, FROBISHER, swap)
    paths[1] = _without_exif(tmp_path, FROBISHER[1])
    with pytest.raises(InputError) as err:
        derive_exposures([read_frame(p) for p in paths])
    # Only the two shots with EXIF are named, and no --ev is suggested for two of three inputs.
    assert str(err.value) == (
        "EXIF puts IMG_2600.jpg 6.00 stops above IMG_2602.jpg, but its pixels are 8.28 stops darker; "
        "the metadata is wrong; pass --ev"
    )

"""How large a shot will be once decoded, read from its header, and the limits on it.

Checked before any pixel is decoded, so that a decompression bomb (a small
file whose header declares a huge image) costs neither time nor memory:

1. **Plausibility.** A header that declares more pixels than the file's bytes
   can hold is lying: the file is damaged (exit 2). JPEG (Huffman-coded, as
   cameras write them): at least one bit per 8×8 block. PNG: deflate expands
   at most 1032:1; data that would have to expand more than 64:1 is inflated
   once, streamed, to see whether it fills the image. TIFF: every strip or
   tile must lie inside the file, and uncompressed ones must hold the image.
   (libjpeg-turbo itself, asked to decode a lying file, fills the whole
   declared image before it reports the missing data.)
2. **Pixel limit** (``--max-pixels``, default :data:`DEFAULT_MAX_PIXELS`).
3. **Memory.** The decode's own peak (see :func:`decode_bytes`) must fit its
   share of the memory available (:func:`decode_share`: the decodes running at
   once, a bracket's shots times the brackets ``batch --jobs`` decodes
   together, share it equally); otherwise an
   :class:`~hdrmerge.errors.HdrmergeError` (exit 1: the machine, not the
   file, is the problem).

Nothing heavy is imported at module level: the CLI imports this module for
its default.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrmerge.errors import HdrmergeError, InputError

#: Default of ``--max-pixels``: 200 million pixels, above the largest camera
#: sensors (about 150 MP, medium format); pixel-shift composites are larger but
#: are not bracket shots. A 200 MP frame decodes to 0.6 GB in 8-bit RGB,
#: 1.2 GB in 16-bit.
DEFAULT_MAX_PIXELS = 200_000_000

#: Deflate's largest possible expansion (258 bytes from a 2-bit match code).
_DEFLATE_MAX_RATIO = 1032
#: PNG data that must expand more than this to fill the image is inflated once to check it.
_PNG_INFLATE_CHECK_RATIO = 64


@dataclass(frozen=True)
class Declared:
    """What a header says the decoded image will be.

    ``channels`` and ``sample_bytes`` (1 or 2) describe the decoder's output
    buffer, before the conversion to RGB.
    """

    width: int
    height: int
    channels: int
    sample_bytes: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        return self.pixels * self.channels * self.sample_bytes


def _damaged(path: Path, kind: str, why: str) -> InputError:
    return InputError(f"{path}: damaged {kind.upper()} file ({why}); re-export or copy it again")


def megapixels(pixels: int) -> str:
    """``"400 MP"``, ``"0.5 MP"``."""
    return f"{pixels / 1e6:.0f} MP" if pixels >= 1e6 else f"{pixels / 1e6:.1g} MP"


def _bytes(n: float) -> str:
    """``"2.4 GB"``, ``"18 MB"``, ``"28 kB"`` (decimal units, as memory is sold)."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


# --- headers ---------------------------------------------------------------------------------


def jpeg_header(path: Path, data: bytes) -> tuple[Declared, str]:
    """SOF dimensions and colour space (``YCbCr``, ``Gray``, ``CMYK``…) through libjpeg-turbo (simplejpeg)."""
    import simplejpeg

    try:
        height, width, colorspace, _subsampling = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise _damaged(path, "jpeg", str(exc)) from None
    return Declared(width, height, 4 if colorspace in ("CMYK", "YCCK") else 3, 1), colorspace


def png_header(path: Path, data: bytes) -> tuple[Declared, int]:
    """IHDR (always the first chunk) → the decoded size and the inflated stream's length in bytes."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise _damaged(path, "png", "no IHDR chunk")
    width, height, depth, colour, _c, _f, _interlace = struct.unpack(">IIBBBBB", data[16:29])
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if samples is None or depth not in (1, 2, 4, 8, 16) or width == 0 or height == 0:
        raise _damaged(path, "png", "invalid IHDR chunk")
    # One filter byte per row (a lower bound for Adam7, which adds some per pass).
    stream = height * (1 + math.ceil(width * samples * depth / 8))
    decoded_channels = 3 if colour == 3 else samples  # palettes are expanded
    return Declared(width, height, decoded_channels, 2 if depth == 16 else 1), stream


#: TIFF compression codes of zlib streams (Adobe Deflate, and the older code libtiff also reads).
_TIFF_DEFLATE = (8, 32946)


def tiff_header(path: Path, data: bytes) -> tuple[Declared, bool]:
    """First image's tags through tifffile; strips or tiles outside the file mean damage.

    Returns the declared size and whether tifffile should decode the image:
    deflate-compressed 8/16-bit grey or RGB, the common layout of exported
    16-bit TIFFs. libtiff (OpenCV) stops reading a deflate strip as soon as it
    has the rows it wants, so damaged deflate data decodes to garbage without
    any error; tifffile inflates every strip whole and checks its checksum.
    Deflate strips of other layouts, left to OpenCV, are checked here the same
    way, with one extra inflate pass.
    """
    import tifffile

    logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # it logs each oddity
    try:
        # The buffer is closed explicitly: tifffile leaves a stream it did not open open, and its
        # objects form reference cycles, so the file's bytes would stay in memory until the next
        # garbage collection (a whole shot per decode: 144 MB at 24 MP, 16 bit).
        with io.BytesIO(data) as buf, tifffile.TiffFile(buf) as tif:
            page: Any = tif.pages.first
            width, height = int(page.imagewidth), int(page.imagelength)
            samples, bits = int(page.samplesperpixel), int(page.bitspersample)
            offsets, counts = page.dataoffsets, page.databytecounts
            compression = int(page.compression)
            simple = (
                compression in _TIFF_DEFLATE
                and int(page.photometric) in (1, 2)  # min-is-black grey, RGB
                and int(page.planarconfig) == 1
                and int(page.sampleformat) == 1
                and bits in (8, 16)
                and samples in (1, 2, 3, 4)
                and not page.is_subsampled
            )
    except Exception as exc:  # tifffile raises assorted errors on damaged structures
        raise _damaged(path, "tiff", f"unreadable header: {exc}") from None
    if width <= 0 or height <= 0:
        raise _damaged(path, "tiff", "no image size")
    declared = Declared(width, height, samples, 2 if bits > 8 else 1)
    if any(o + n > len(data) for o, n in zip(offsets, counts)):
        raise _damaged(path, "tiff", "image data cut short")
    if compression == 1 and sum(counts) < declared.pixels * samples * bits / 8:
        raise _damaged(path, "tiff", f"its header declares {width}×{height} pixels, but it holds less image data")
    if compression in _TIFF_DEFLATE and not simple:
        for number, (offset, count) in enumerate(zip(offsets, counts)):
            try:
                z = zlib.decompressobj()
                pending = data[offset : offset + count]
                while pending:
                    z.decompress(pending, 1 << 22)
                    pending = z.unconsumed_tail
                complete = z.eof
            except zlib.error:
                complete = False
            if not complete:  # an invalid code, a bad checksum, or a stream that stops short
                raise _damaged(path, "tiff", f"strip {number} holds damaged deflate data")
    return declared, simple


def raw_header(raw: Any) -> tuple[Declared, int]:
    """A LibRaw handle's output size (3 × 16 bit) and the bytes its unpack and processing allocate.

    LibRaw holds the raw sensor data (2 bytes per photosite) and a working
    image of four 16-bit channels per pixel, then writes the 16-bit RGB output.
    """
    s = raw.sizes
    declared = Declared(int(s.width), int(s.height), 3, 2)
    working = int(s.raw_width) * int(s.raw_height) * 2 + int(s.iwidth) * int(s.iheight) * 8
    return declared, working


def pillow_open(path: Path) -> Any:
    """``PIL.Image.open`` for the metadata of a shot that passed :func:`check_limits`.

    hdrmerge bounds sizes itself, before decoding; Pillow's own guard would
    print a DecompressionBombWarning (two lines on stderr) for an accepted shot
    above 89 MP and refuse one above 179 MP, losing its metadata. Opening reads
    the header only, so the guard is lifted (for the whole process: Pillow
    decodes no input pixels in hdrmerge).
    """
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    return Image.open(path)


# --- the checks -----------------------------------------------------------------------------


def decode_bytes(declared: Declared) -> int:
    """Peak memory of decoding one raster frame into the Frame hdrmerge keeps.

    The decoder's buffer, its conversion to RGB and the copy an EXIF rotation
    makes: at most three images of the decoded size at once.
    """
    return 3 * declared.pixels * 3 * declared.sample_bytes


def _jpeg_huffman_coded(data: bytes) -> bool:
    """Whether the frame header (SOF) says Huffman coding (SOF0-3, 5-7), not arithmetic (SOF9-15)."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker < 0xC8
        if marker == 0xDA:
            break
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return False


def _png_idat(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of the data of each IDAT chunk; chunk headers only, no CRC."""
    out = []
    i = 8
    while i + 8 <= len(data):
        n = struct.unpack(">I", data[i : i + 4])[0]
        if data[i + 4 : i + 8] == b"IDAT":
            out.append((i + 8, n))
        i += 12 + n
    return out


def _inflated_length(data: bytes, idat: list[tuple[int, int]], want: int) -> int:
    """Bytes the IDAT stream inflates to, counted up to ``want`` without keeping them (zlib.error if invalid)."""
    z = zlib.decompressobj()
    got = 0
    for offset, n in idat:
        pending = data[offset : offset + n]
        while pending and got < want:
            got += len(z.decompress(pending, 1 << 22))
            pending = z.unconsumed_tail
        if got >= want or z.eof:
            break
    return got


def check_plausible(
    path: Path, kind: str, declared: Declared, data: bytes, *, png_stream: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS
) -> None:
    """InputError (damaged) when the header declares more pixels than ``data`` can hold.

    JPEG with Huffman coding (nearly all): at least one bit per 8×8 block of
    the first component. PNG: deflate expands at most 1032:1; and when the
    data would have to expand more than 64:1 (photographs compress about
    3:1), it is inflated once, streamed, to see whether it fills the image,
    or at least ``max_pixels`` of it (which bounds the work on a real bomb;
    :func:`check_limits` then refuses it).
    """
    claim = f"its header declares {declared.width}×{declared.height} pixels in {len(data):,} bytes"
    if kind == "jpeg" and _jpeg_huffman_coded(data) and len(data) * 8 * 64 < declared.pixels:
        raise _damaged(path, kind, claim)
    if kind == "png":
        idat = _png_idat(data)
        compressed = sum(n for _o, n in idat)
        if png_stream > compressed * _DEFLATE_MAX_RATIO:
            raise _damaged(path, kind, claim)
        if png_stream > compressed * _PNG_INFLATE_CHECK_RATIO:
            rows = min(declared.height, max(1, max_pixels // declared.width))
            want = png_stream // declared.height * rows
            try:
                filled = _inflated_length(data, idat, want) >= want
            except zlib.error as exc:
                raise _damaged(path, kind, f"bad image data: {exc}") from None
            if not filled:
                raise _damaged(path, kind, claim)


@dataclass(frozen=True)
class DecodeShare:
    """The bytes one decode may use, and the ``batch --jobs`` whose decodes share the memory (1: none)."""

    bytes: int
    jobs: int = 1


def decode_share(shots: int, jobs: int = 1) -> DecodeShare:
    """Each decode's equal share of the memory available now, when ``shots`` decode
    at once in each of ``jobs`` brackets decoded together (``batch --jobs``)."""
    from hdrmerge.tiling import available_memory

    return DecodeShare(available_memory("cpu") // max(1, shots * jobs), jobs)


def check_limits(
    path: Path, declared: Declared, max_pixels: int, memory: int | DecodeShare | None, extra: int = 0
) -> None:
    """InputError above ``max_pixels``; HdrmergeError if the decode needs more than ``memory`` bytes.

    ``extra``: what the decoder allocates beyond :func:`decode_bytes` (LibRaw's working buffers).
    ``memory`` None: what the machine has available now; a :class:`DecodeShare`
    also names the ``--jobs`` to lower in the message.
    """
    size = f"{declared.width}×{declared.height} pixels ({megapixels(declared.pixels)})"
    if declared.pixels > max_pixels:
        raise InputError(
            f"{path}: {size} exceed the limit of {megapixels(max_pixels)}; "
            "if the image is real, raise --max-pixels"
        )
    jobs = 1
    if isinstance(memory, DecodeShare):
        memory, jobs = memory.bytes, memory.jobs
    if memory is None:
        from hdrmerge.tiling import available_memory

        memory = available_memory("cpu")
    need = decode_bytes(declared) + extra
    if need > memory:
        if jobs > 1:
            raise HdrmergeError(
                f"{path}: decoding its {size} needs about {_bytes(need)} of memory, but {_bytes(memory)} is "
                f"available to each decode while --jobs {jobs} brackets decode at once; "
                "lower --jobs, free some memory or use a machine with more"
            )
        raise HdrmergeError(
            f"{path}: decoding its {size} needs about {_bytes(need)} of memory, but {_bytes(memory)} is available; "
            "free some memory or use a machine with more"
        )

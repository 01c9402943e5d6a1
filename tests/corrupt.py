"""Damaged and lying image files, made in the tests from real ones.

Each function takes the bytes of a real file (from ../shared/data, or one the
test encoded) and returns them damaged the way cards, transfers and hostile
users damage them. Offsets come from the files' own structure (JPEG markers,
PNG chunks), so the damage lands where it is meant to.
"""

from __future__ import annotations

import struct
import zlib

_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, offset, length) of each segment from SOI up to the first SOS (length includes its 2 bytes)."""
    out = []
    i = 2
    while i + 4 <= len(data):
        assert data[i] == 0xFF, f"no marker at {i}"
        marker = data[i + 1]
        if marker in _STANDALONE or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        out.append((marker, i, length))
        if marker == 0xDA:
            break
        i += 2 + length
    return out


def jpeg_entropy_span(data: bytes) -> tuple[int, int]:
    """[start, end) of the main image's entropy-coded data (after the first SOS, before EOI)."""
    marker, offset, length = jpeg_segments(data)[-1]
    assert marker == 0xDA
    end = data.rindex(b"\xff\xd9")
    return offset + 2 + length, end


def flip_bytes(data: bytes, start: int, count: int) -> bytes:
    """``count`` bytes from offset ``start`` XOR 0x55 (damage with no regard for structure)."""
    out = bytearray(data)
    for k in range(start, start + count):
        out[k] ^= 0x55
    return bytes(out)


def flip_entropy_bytes(data: bytes, where: float = 0.4, count: int = 64) -> bytes:
    """``count`` bytes inside the entropy-coded data inverted, starting at fraction ``where`` of it.

    0xFF bytes (and the 0x00 stuffed after them) are left alone, and no byte
    becomes 0xFF, so no marker appears or vanishes: the Huffman decoder meets
    codes that make no sense (or runs past a block's end).
    """
    start, end = jpeg_entropy_span(data)
    out = bytearray(data)
    i = start + int((end - start) * where)
    done = 0
    while done < count:
        if out[i] != 0xFF and out[i - 1] != 0xFF and out[i] ^ 0xA5 != 0xFF:
            out[i] ^= 0xA5
            done += 1
        i += 3
    return bytes(out)


def cut_entropy_data(data: bytes, keep: float = 0.5) -> bytes:
    """The entropy-coded data cut at fraction ``keep``, the EOI marker kept (a partial copy that looks complete)."""
    start, end = jpeg_entropy_span(data)
    return data[: start + int((end - start) * keep)] + b"\xff\xd9"


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """The SOF segment rewritten to declare ``width``×``height`` pixels (at most 65535 each)."""
    for marker, offset, _length in jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return data[: offset + 5] + struct.pack(">HH", height, width) + data[offset + 9 :]
    raise AssertionError("no SOF segment")


def png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset, data length) of each chunk."""
    out, i = [], 8
    while i + 8 <= len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        out.append((data[i + 4 : i + 8], i, n))
        i += 12 + n
    return out


def png_with_bad_crc(data: bytes, chunk: bytes = b"IDAT", *, last: bool = False) -> bytes:
    """The CRC of the first (or ``last``) ``chunk`` inverted (a bit flip a checksum catches)."""
    kind, offset, n = [c for c in png_chunks(data) if c[0] == chunk][-1 if last else 0]
    out = bytearray(data)
    for k in range(offset + 8 + n, offset + 12 + n):
        out[k] ^= 0xFF
    return bytes(out)


def png_with_size(data: bytes, width: int, height: int) -> bytes:
    """IHDR rewritten to declare ``width``×``height``, with a valid CRC (a lying header, not a flipped bit)."""
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", width, height)
    return data[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + data[33:]

"""Draws the kernel's logo: two point sources whose waves interfere (red where they cancel,
blue where they add). Standard library only. Usage: python3 assets/make_logo.py"""
import math
import struct
import zlib
from pathlib import Path


def png(size: int) -> bytes:
    rows = []
    s1, s2 = (0.33 * size, 0.5 * size), (0.67 * size, 0.5 * size)
    for y in range(size):
        row = bytearray([0])  # filter: none
        for x in range(size):
            cx, cy = x + 0.5 - size / 2, y + 0.5 - size / 2
            inside = math.hypot(cx, cy) <= size / 2 - 0.5
            k = 2 * math.pi / (size / 6.0)
            d1 = math.hypot(x + 0.5 - s1[0], y + 0.5 - s1[1])
            d2 = math.hypot(x + 0.5 - s2[0], y + 0.5 - s2[1])
            v = (math.cos(k * d1) + math.cos(k * d2)) / 2  # −1 cancel … +1 add
            if v >= 0:
                r, g, b = (255 + (33 - 255) * v, 255 + (102 - 255) * v, 255 + (172 - 255) * v)
            else:
                r, g, b = (255 + (178 - 255) * -v, 255 + (24 - 255) * -v, 255 + (43 - 255) * -v)
            alpha = 255 if inside else 0
            row += bytes([round(r), round(g), round(b), alpha])
        rows.append(bytes(row))
    raw = b"".join(rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    for size in (32, 64):
        (here / f"logo-{size}x{size}.png").write_bytes(png(size))

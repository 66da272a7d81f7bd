"""Flyway's checksum of a SQL migration (flyway-compat.md): CRC-32 over the UTF-8 bytes of each
line, terminators dropped, one leading BOM removed, stored as a signed 32-bit integer."""

from __future__ import annotations

import re
import zlib

from restore_assets.flyway.errors import FlywayError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def decode(data: bytes, encoding: str = "utf-8", name: str = "") -> str:
    """Strict decoding, as Flyway does: undecodable bytes are an error naming the file."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise FlywayError(
            f"{name or 'migration'}: not valid {encoding} at byte {exc.start}; "
            "fix the file or set flyway.encoding"
        ) from None
    except LookupError:
        raise FlywayError(f"unknown flyway.encoding {encoding!r}") from None


def checksum_text(text: str) -> int:
    crc = 0
    for index, line in enumerate(_LINE_BREAK.split(text)):
        if index == 0 and line.startswith("\ufeff"):
            line = line[1:]
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def checksum(data: bytes, encoding: str = "utf-8", name: str = "") -> int:
    return checksum_text(decode(data, encoding, name))

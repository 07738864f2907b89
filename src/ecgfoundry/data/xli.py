"""XLI, the waveform compression of Philips cardiographs (PageWriter, TraceMaster XML).

The decoded Base64 holds one chunk per lead, each an 8-byte header — the payload's size in
bytes (int32), a code (int16, unused), the first residual (int16), all little-endian — then
the payload: LZW with 10-bit codes, most significant bit first, over a dictionary of the 256
single bytes that grows up to code 1022 and is never reset (code 1023 or running out of bits
ends it). The bytes it yields are the high bytes of 16-bit values, then their low bytes.
Those values are second differences: the first two are samples, and each later sample is
``2 * previous - the one before - residual``, the residual being the header's for the third
and the value before it minus 64 after that. (Facts from the sierra-ecg-tools readers;
written here from the description.)
"""

from __future__ import annotations

import numpy as np

CODE_BITS = 10
_LAST_CODE = (1 << CODE_BITS) - 2  # 1022: the largest code the dictionary may hold
_RESIDUAL_BIAS = 64


class XLIError(ValueError):
    """XLI data that does not decode; the message says where."""


def _lzw_bytes(payload: bytes) -> bytearray:
    """LZW-decode one chunk's payload."""
    strings = [bytes([b]) for b in range(256)]
    out = bytearray()
    previous = b""
    buffer, held = 0, 0  # bits not yet consumed, and how many
    position = 0
    while True:
        while held < CODE_BITS and position < len(payload):
            buffer = (buffer << 8) | payload[position]
            position += 1
            held += 8
        if held < CODE_BITS:
            return out
        held -= CODE_BITS
        code = (buffer >> held) & ((1 << CODE_BITS) - 1)
        buffer &= (1 << held) - 1
        if code > _LAST_CODE:
            return out
        if code < len(strings):
            string = strings[code]
        elif code == len(strings) and previous:  # the string being defined: previous + its head
            string = previous + previous[:1]
        else:
            raise XLIError(f"LZW code {code} before the dictionary holds it ({len(strings)} codes)")
        if previous and len(strings) <= _LAST_CODE:
            strings.append(previous + string[:1])
        out += string
        previous = string


def _samples(values: np.ndarray, first: int) -> np.ndarray:
    """Undo the second differences: ``s[i] = 2 s[i-1] - s[i-2] - r[i]`` for i >= 2, with
    ``r[2] = first`` and ``r[i] = values[i-1] - 64`` after that."""
    values = values.astype(np.int64)
    if len(values) < 3:
        return values
    residuals = np.concatenate([[first], values[2:-1] - _RESIDUAL_BIAS])
    steps = np.concatenate([[values[1] - values[0]], -residuals])
    return np.concatenate([[values[0]], values[0] + np.cumsum(np.cumsum(steps))])


def decode_xli(data: bytes, leads: int | None = None) -> list[np.ndarray]:
    """The lead chunks of XLI ``data`` as int64 samples, in stored order: the first ``leads``
    of them (devices often store 16, the last ones empty), or all."""
    decoded: list[np.ndarray] = []
    offset = 0
    while offset < len(data) and (leads is None or len(decoded) < leads):
        lead = len(decoded) + 1
        if len(data) - offset < 8:
            raise XLIError(f"{len(data) - offset} stray bytes where lead {lead}'s chunk begins")
        size = int.from_bytes(data[offset : offset + 4], "little", signed=True)
        first = int.from_bytes(data[offset + 6 : offset + 8], "little", signed=True)
        offset += 8
        if size < 0 or offset + size > len(data):
            raise XLIError(f"lead {lead}'s chunk claims {size} bytes, "
                           f"{len(data) - offset} are left")  # fmt: skip
        try:
            stream = _lzw_bytes(data[offset : offset + size])
        except XLIError as error:
            raise XLIError(f"lead {lead}: {error}") from None
        offset += size
        if len(stream) % 2:
            stream.append(0)
        half = len(stream) // 2
        high = np.frombuffer(bytes(stream[:half]), np.uint8).astype(np.uint16)
        low = np.frombuffer(bytes(stream[half:]), np.uint8).astype(np.uint16)
        decoded.append(_samples(((high << 8) | low).view(np.int16), first))
    return decoded


__all__ = ["XLIError", "decode_xli"]

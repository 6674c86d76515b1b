from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.support.tiers import unavailable
from torchdll.apisets import (
    ApiSetFormatError,
    contract_key,
    default_schema,
    is_api_set_name,
    parse_apiset_section,
    schema_from_dll,
)

WINE_APISET = Path("/usr/lib/x86_64-linux-gnu/wine/x86_64-windows/apisetschema.dll")


def _blob(entries: list[tuple[str, list[tuple[str, str]]]]) -> bytes:
    """A version-6 API_SET_NAMESPACE built by hand (the layout the parser documents)."""
    header = 28
    ent_off = header
    val_off = ent_off + 24 * len(entries)
    nvals = sum(len(v) for _, v in entries)
    str_off = val_off + 20 * nvals
    strings = bytearray()
    ent_bytes = bytearray()
    val_bytes = bytearray()

    def put(text: str) -> tuple[int, int]:
        raw = text.encode("utf-16-le")
        off = str_off + len(strings)
        strings.extend(raw)
        return off, len(raw)

    vi = 0
    for name, values in entries:
        noff, nlen = put(name)
        hashed = len(name[: name.rfind("-")].encode("utf-16-le"))
        ent_bytes += struct.pack("<6I", 0, noff, nlen, hashed, val_off + 20 * vi, len(values))
        for importer, host in values:
            ioff, ilen = put(importer) if importer else (0, 0)
            hoff, hlen = put(host) if host else (0, 0)
            val_bytes += struct.pack("<5I", 0, ioff, ilen, hoff, hlen)
            vi += 1
    body = bytes(ent_bytes + val_bytes + strings)
    return struct.pack("<7I", 6, header + len(body), 0, len(entries), ent_off, 0, 31) + body


def test_contract_key_cuts_at_last_hyphen() -> None:
    assert contract_key("API-MS-Win-Core-Synch-L1-2-0.dll") == "api-ms-win-core-synch-l1-2"
    assert is_api_set_name("ext-ms-win-foo-l1-1-0") and not is_api_set_name("apisetschema.dll")


def test_parse_hand_built_schema_with_importer_exception() -> None:
    schema = parse_apiset_section(_blob([
        ("api-ms-win-core-foo-l1-1-0", [("", "kernel32.dll"), ("kernel32.dll", "kernelbase.dll")]),
        ("ext-ms-win-empty-l1-1-0", [("", "")]),
    ]))
    assert schema.lookup("api-ms-win-core-foo-l1-1-5.dll", "C:\\app\\x.dll") == (True, "kernel32.dll")
    assert schema.lookup("api-ms-win-core-foo-l1-1-0.dll", "C:\\Windows\\System32\\KERNEL32.DLL") == (True, "kernelbase.dll")
    assert schema.lookup("ext-ms-win-empty-l1-1-0.dll") == (True, None)
    assert schema.lookup("api-ms-win-core-bar-l1-1-0.dll") == (False, None)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:20],  # truncated header
        lambda b: struct.pack("<I", 4) + b[4:],  # version 4
        lambda b: b[:12] + struct.pack("<I", 10**6) + b[16:],  # absurd count
        lambda b: b[:16] + struct.pack("<I", 10**7) + b[20:],  # entry table outside
    ],
)
def test_corrupt_schema_raises_typed_error(mutate) -> None:  # type: ignore[no-untyped-def]
    blob = _blob([("api-ms-win-core-foo-l1-1-0", [("", "kernel32.dll")])])
    with pytest.raises(ApiSetFormatError):
        parse_apiset_section(mutate(blob))


def test_string_offsets_outside_blob_raise() -> None:
    blob = bytearray(_blob([("api-ms-win-core-foo-l1-1-0", [("", "kernel32.dll")])]))
    struct.pack_into("<I", blob, 28 + 4, 10**6)  # NameOffset of the first entry
    with pytest.raises(ApiSetFormatError):
        parse_apiset_section(bytes(blob))


def test_wine_apisetschema_dll_parses_and_matches_shipped_table() -> None:
    if not WINE_APISET.exists():
        unavailable("Wine's apisetschema.dll not installed (apt-get install wine64)")
    schema = schema_from_dll(str(WINE_APISET))
    assert len(schema.entries) > 300
    assert schema.lookup("api-ms-win-crt-runtime-l1-1-0.dll") == (True, "ucrtbase.dll")
    # the shipped table was generated from this file by tools/gen_apisets.py
    shipped = default_schema()
    assert {k: e.default for k, e in shipped.entries.items()} == {k: e.default for k, e in schema.entries.items()}


def test_default_schema_maps_crt_and_core_contracts() -> None:
    s = default_schema()
    assert s.lookup("api-ms-win-crt-heap-l1-1-0.dll")[1] == "ucrtbase.dll"
    assert s.lookup("api-ms-win-core-synch-l1-2-0.dll")[1] == "kernelbase.dll"
    assert s.lookup("api-ms-win-core-rtlsupport-l1-1-0.dll")[1] == "ntdll.dll"

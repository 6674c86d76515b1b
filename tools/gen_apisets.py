"""Regenerate ``torchdll/data/apisets.json`` from an ``apisetschema.dll``.

Usage: python tools/gen_apisets.py PATH/TO/apisetschema.dll "provenance text"

The shipped table was generated from Wine 8.0's ``x86_64-windows/apisetschema.dll`` (Debian
package wine64 8.0~repack-4), whose ``.apiset`` section is a version-6 schema modelled on
Windows 10's. A snapshot of a real Windows machine should carry its own
``System32\\apisetschema.dll``; torchdll then uses that instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torchdll.apisets import schema_from_dll  # noqa: E402


def main() -> None:
    src, provenance = sys.argv[1], sys.argv[2]
    schema = schema_from_dll(src)
    out = {"_provenance": provenance, "contracts": schema.to_json_obj()}
    dest = Path(__file__).resolve().parents[1] / "torchdll" / "data" / "apisets.json"
    dest.write_text(json.dumps(out, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(schema.entries)} contracts -> {dest}")


if __name__ == "__main__":
    main()

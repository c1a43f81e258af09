"""Keep docs/results-schema.md's JSON Schema blocks equal to the pydantic models they document.

    python -m deploykit.report.schema_doc docs/results-schema.md

rewrites each block between `<!-- BEGIN <name> schema -->` and `<!-- END <name> schema -->` with the
live schema; a unit test fails when the document and the models drift apart.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from deploykit.report.schema import Report
from deploykit.results import ResultsFile

__all__ = ["SCHEMAS", "schema_json", "schema_blocks", "update_schema_doc"]

SCHEMAS = {"results": ResultsFile, "report": Report}
_BLOCK_RE = re.compile(r"(<!-- BEGIN (\w+) schema -->\n```json\n)(.*?)(\n```\n<!-- END \2 schema -->)", re.S)


def schema_json(name: str) -> str:
    return json.dumps(SCHEMAS[name].model_json_schema(), indent=2, ensure_ascii=False)


def schema_blocks(text: str) -> dict[str, str]:
    """name → the JSON text of each marked block in a document."""
    return {m.group(2): m.group(3) for m in _BLOCK_RE.finditer(text)}


def update_schema_doc(path: Path | str) -> bool:
    """Replace each marked block with the live schema; True if the file changed."""
    path = Path(path)
    text = path.read_text()
    new = _BLOCK_RE.sub(lambda m: m.group(1) + schema_json(m.group(2)) + m.group(4), text)
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    for doc in sys.argv[1:]:
        print(f"{doc}: {'updated' if update_schema_doc(doc) else 'up to date'}")

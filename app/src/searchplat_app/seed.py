"""Ingest the seed corpus (data/seed_documents.json) into the index.

    searchplat-app-seed            # or: python -m searchplat_app.seed

Uses the same SEARCHPLAT_OPENSEARCH_* / SEARCHPLAT_INDEX variables as the
service (SEARCHPLAT_INGEST_TOKEN is not needed: it talks to OpenSearch
directly). Idempotent: every document has a fixed id, so a second run
overwrites the same documents. Prints one JSON line with the counts; exits 0
when every document was indexed, 1 on failures, 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from opensearchpy.exceptions import OpenSearchException

from .backend import Backend, error_kind
from .config import ConfigError, load_settings
from .validation import InputError, validate_documents

BATCH = 200


def load_corpus(path: str | None = None) -> list[dict[str, Any]]:
    if path:
        text = Path(path).read_text("utf-8")
    else:
        text = resources.files("searchplat_app").joinpath("data/seed_documents.json") \
            .read_text("utf-8")
    payload = json.loads(text)
    return validate_documents(payload, max_documents=100000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="searchplat-app-seed", description=__doc__.split("\n")[0])
    parser.add_argument("--file", help="a JSON array of documents instead of the bundled corpus")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(require_ingest_token=False)
        documents = load_corpus(args.file)
    except ConfigError as exc:
        print(f"searchplat-app-seed: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, InputError) as exc:
        print(f"searchplat-app-seed: cannot read the corpus: {exc}", file=sys.stderr)
        return 2
    backend = Backend(settings)
    indexed = failed = 0
    try:
        for start in range(0, len(documents), BATCH):
            result = backend.bulk_index(documents[start:start + BATCH], refresh=True)
            indexed += result["indexed"]
            failed += result["failed"]
            for error in result["errors"]:
                print(json.dumps({"failed": error}), file=sys.stderr)
    except OpenSearchException as exc:
        print(f"searchplat-app-seed: OpenSearch error ({error_kind(exc)}): "
              f"{type(exc).__name__}", file=sys.stderr)
        return 1
    finally:
        backend.close()
    print(json.dumps({"index": settings.index, "documents": len(documents),
                      "indexed": indexed, "failed": failed}))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

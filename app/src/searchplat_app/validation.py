"""Input validation for the public endpoints (pure functions, no I/O)."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

Q_MAX_LENGTH = 200
SIZE_MAX = 50
SIZE_DEFAULT = 10
# OpenSearch's index.max_result_window: from + size may not exceed it.
RESULT_WINDOW = 10000

_INT_RE = re.compile(r"^[0-9]{1,6}$")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class InputError(ValueError):
    """A client error: message safe to return to the client."""

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request",
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or []


def _has_forbidden_chars(text: str) -> bool:
    # Cc: control characters (incl. NUL, tab, newline); Cs: lone surrogates.
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def _parse_int(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    if not _INT_RE.match(raw):
        raise InputError(f"{name} must be an integer between {low} and {high}")
    value = int(raw)
    if not low <= value <= high:
        raise InputError(f"{name} must be an integer between {low} and {high}")
    return value


def validate_search(q: str | None, page: str | None, size: str | None) -> tuple[str, int, int]:
    if q is None:
        raise InputError("q is required")
    if _has_forbidden_chars(q):
        raise InputError("q must not contain control characters")
    query = " ".join(q.split())
    if not query:
        raise InputError("q must not be empty")
    if len(query) > Q_MAX_LENGTH:
        raise InputError(f"q must be at most {Q_MAX_LENGTH} characters")
    size_value = _parse_int("size", size, SIZE_DEFAULT, 1, SIZE_MAX)
    max_page = RESULT_WINDOW // size_value
    page_value = _parse_int("page", page, 1, 1, 999999)
    if page_value > max_page:
        raise InputError(
            f"page must be at most {max_page} for size {size_value} "
            f"(page*size <= {RESULT_WINDOW})"
        )
    return query, page_value, size_value


def clean_request_id(raw: str | None) -> str | None:
    """The load balancer's X-Request-ID when it is safe to log and echo."""
    if raw and _REQUEST_ID_RE.match(raw):
        return raw
    return None


Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class Document(BaseModel):
    """One document of POST /documents (and of the seed corpus)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    title: str = Field(min_length=1, max_length=500)
    body: str = Field(default="", max_length=50000)
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    url: str | None = Field(default=None, max_length=2048, pattern=r"^(https?://|/)\S*$")

    def as_source(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def validate_documents(payload: Any, max_documents: int) -> list[dict[str, Any]]:
    if not isinstance(payload, list):
        raise InputError("the body must be a JSON array of documents")
    if not payload:
        raise InputError("the body must contain at least one document")
    if len(payload) > max_documents:
        raise InputError(f"at most {max_documents} documents per request",
                         status=413, code="too_many_documents")
    documents: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    for position, item in enumerate(payload):
        try:
            doc = Document.model_validate(item)
        except ValidationError as exc:
            for err in exc.errors(include_url=False, include_input=False,
                                  include_context=False):
                problems.append({
                    "position": position,
                    "field": ".".join(str(p) for p in err["loc"]) or None,
                    "message": err["msg"],
                })
            continue
        if any(_has_forbidden_chars(t) for t in doc.tags) or _has_forbidden_chars(doc.title):
            problems.append({"position": position, "field": "title/tags",
                             "message": "control characters are not allowed"})
            continue
        documents.append(doc.as_source())
    if problems:
        raise InputError("invalid documents", code="invalid_documents",
                         details=problems[:20])
    return documents

"""Settings from environment variables, validated once at startup.

Every variable is documented in README.md. Invalid or missing values raise
ConfigError listing every problem at once; secrets never appear in messages
or in repr().
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

PREFIX = "SEARCHPLAT_"

# Index names the service accepts: OpenSearch's rules, lower case. The default
# matches the application user's index pattern (opensearch_app_index_pattern,
# "search-*") in roles/opensearch.
_INDEX_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,254}$")
_MIN_TOKEN_LENGTH = 16

DEFAULTS: dict[str, str] = {
    "SEARCHPLAT_OPENSEARCH_HOSTS": "",
    "SEARCHPLAT_OPENSEARCH_USER": "",
    "SEARCHPLAT_OPENSEARCH_PASSWORD": "",
    "SEARCHPLAT_OPENSEARCH_CA": "",
    "SEARCHPLAT_OPENSEARCH_TIMEOUT": "5",
    "SEARCHPLAT_OPENSEARCH_SEARCH_TIMEOUT": "",
    "SEARCHPLAT_OPENSEARCH_DEAD_TIMEOUT": "10",
    "SEARCHPLAT_OPENSEARCH_MAX_RETRIES": "2",
    "SEARCHPLAT_OPENSEARCH_RETRY_ON_TIMEOUT": "true",
    "SEARCHPLAT_OPENSEARCH_POOL_MAXSIZE": "10",
    "SEARCHPLAT_READY_TIMEOUT": "1",
    "SEARCHPLAT_INDEX": "search-documents",
    "SEARCHPLAT_INGEST_TOKEN": "",
    "SEARCHPLAT_INGEST_MAX_DOCUMENTS": "500",
    "SEARCHPLAT_INGEST_MAX_BYTES": "5242880",
    "SEARCHPLAT_LOG_LEVEL": "INFO",
}


class ConfigError(ValueError):
    """The environment does not describe a usable configuration."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "invalid configuration: " + "; ".join(problems) + " (see app/README.md)"
        )


@dataclass(frozen=True)
class OpenSearchHost:
    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def as_client_dict(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "scheme": self.scheme}


@dataclass(frozen=True)
class Settings:
    opensearch_hosts: tuple[OpenSearchHost, ...]
    opensearch_user: str = ""
    opensearch_password: str = field(default="", repr=False)
    opensearch_ca: str = ""
    opensearch_timeout: float = 5.0
    # Per try of a search; None: opensearch_timeout.
    opensearch_search_timeout: float | None = None
    # Seconds a node that failed is left out before it is tried again
    # (doubled for each further failure in a row, at most 4 times this).
    opensearch_dead_timeout: float = 10.0
    opensearch_max_retries: int = 2
    opensearch_retry_on_timeout: bool = True
    opensearch_pool_maxsize: int = 10
    ready_timeout: float = 1.0
    index: str = "search-documents"
    ingest_token: str = field(default="", repr=False)
    ingest_max_documents: int = 500
    ingest_max_bytes: int = 5 * 1024 * 1024
    log_level: str = "INFO"

    @property
    def use_tls(self) -> bool:
        return self.opensearch_hosts[0].scheme == "https"


def parse_hosts(value: str) -> tuple[list[OpenSearchHost], list[str]]:
    """Parse "https://a:9200,https://b:9200" into hosts, plus problems."""
    hosts: list[OpenSearchHost] = []
    problems: list[str] = []
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        return [], ["SEARCHPLAT_OPENSEARCH_HOSTS is required (comma-separated URLs such as https://10.0.0.1:9200)"]
    for item in items:
        try:
            parts = urlsplit(item)
            port = parts.port
        except ValueError:
            problems.append(f"SEARCHPLAT_OPENSEARCH_HOSTS: {item!r} is not a URL")
            continue
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(
                f"SEARCHPLAT_OPENSEARCH_HOSTS: {item!r} must look like https://host:9200"
            )
            continue
        if parts.username or parts.password:
            problems.append(
                "SEARCHPLAT_OPENSEARCH_HOSTS must not contain credentials "
                "(use SEARCHPLAT_OPENSEARCH_USER/_PASSWORD)"
            )
            continue
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            problems.append(f"SEARCHPLAT_OPENSEARCH_HOSTS: {item!r} must not have a path or query")
            continue
        hosts.append(OpenSearchHost(parts.scheme, parts.hostname, port or 9200))
    if len({h.scheme for h in hosts}) > 1:
        problems.append("SEARCHPLAT_OPENSEARCH_HOSTS mixes http and https")
    if len(set(hosts)) != len(hosts):
        problems.append("SEARCHPLAT_OPENSEARCH_HOSTS lists a host twice")
    return hosts, problems


def _number(env: Mapping[str, str], name: str, kind: type, low: float, high: float,
            problems: list[str]) -> float:
    raw = env.get(name, "").strip() or DEFAULTS[name]
    try:
        value = kind(raw)
    except ValueError:
        problems.append(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}")
        return kind(DEFAULTS[name] or 0)
    if not low <= value <= high:
        problems.append(f"{name}={raw} is out of range {low}..{high}")
    return value


def _bool(env: Mapping[str, str], name: str, problems: list[str]) -> bool:
    raw = (env.get(name, "").strip() or DEFAULTS[name]).lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    problems.append(f"{name}={raw!r} is not a boolean (true/false)")
    return False


def load_settings(environ: Mapping[str, str] | None = None, *,
                  require_ingest_token: bool = True) -> Settings:
    """Build Settings from the environment, or raise ConfigError."""
    env = os.environ if environ is None else environ
    problems: list[str] = []

    hosts, host_problems = parse_hosts(env.get("SEARCHPLAT_OPENSEARCH_HOSTS", ""))
    problems.extend(host_problems)

    user = env.get("SEARCHPLAT_OPENSEARCH_USER", "")
    password = env.get("SEARCHPLAT_OPENSEARCH_PASSWORD", "")
    if bool(user) != bool(password):
        problems.append(
            "SEARCHPLAT_OPENSEARCH_USER and SEARCHPLAT_OPENSEARCH_PASSWORD must be set together"
        )

    ca = env.get("SEARCHPLAT_OPENSEARCH_CA", "").strip()
    if ca:
        if not os.path.isfile(ca) or not os.access(ca, os.R_OK):
            problems.append(f"SEARCHPLAT_OPENSEARCH_CA={ca} is not a readable file")
        elif hosts and hosts[0].scheme != "https":
            problems.append("SEARCHPLAT_OPENSEARCH_CA is set but the hosts use http")

    index = env.get("SEARCHPLAT_INDEX", "").strip() or DEFAULTS["SEARCHPLAT_INDEX"]
    if not _INDEX_RE.match(index):
        problems.append(f"SEARCHPLAT_INDEX={index!r} is not a valid index name (lower case)")

    token = env.get("SEARCHPLAT_INGEST_TOKEN", "")
    if require_ingest_token and len(token) < _MIN_TOKEN_LENGTH:
        problems.append(
            f"SEARCHPLAT_INGEST_TOKEN is required, at least {_MIN_TOKEN_LENGTH} characters"
        )

    log_level = (env.get("SEARCHPLAT_LOG_LEVEL", "").strip() or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(f"SEARCHPLAT_LOG_LEVEL={log_level!r} is not DEBUG/INFO/WARNING/ERROR")

    timeout = _number(env, "SEARCHPLAT_OPENSEARCH_TIMEOUT", float, 0.1, 300, problems)
    search_timeout = None
    if env.get("SEARCHPLAT_OPENSEARCH_SEARCH_TIMEOUT", "").strip():
        search_timeout = _number(env, "SEARCHPLAT_OPENSEARCH_SEARCH_TIMEOUT", float, 0.1, 300, problems)
    dead_timeout = _number(env, "SEARCHPLAT_OPENSEARCH_DEAD_TIMEOUT", float, 1, 3600, problems)
    retries = _number(env, "SEARCHPLAT_OPENSEARCH_MAX_RETRIES", int, 0, 10, problems)
    retry_on_timeout = _bool(env, "SEARCHPLAT_OPENSEARCH_RETRY_ON_TIMEOUT", problems)
    pool = _number(env, "SEARCHPLAT_OPENSEARCH_POOL_MAXSIZE", int, 1, 1000, problems)
    ready_timeout = _number(env, "SEARCHPLAT_READY_TIMEOUT", float, 0.1, 30, problems)
    max_docs = _number(env, "SEARCHPLAT_INGEST_MAX_DOCUMENTS", int, 1, 10000, problems)
    max_bytes = _number(env, "SEARCHPLAT_INGEST_MAX_BYTES", int, 1024, 100 * 1024 * 1024, problems)

    if problems:
        raise ConfigError(problems)
    return Settings(
        opensearch_hosts=tuple(hosts),
        opensearch_user=user,
        opensearch_password=password,
        opensearch_ca=ca,
        opensearch_timeout=float(timeout),
        opensearch_search_timeout=None if search_timeout is None else float(search_timeout),
        opensearch_dead_timeout=float(dead_timeout),
        opensearch_max_retries=int(retries),
        opensearch_retry_on_timeout=retry_on_timeout,
        opensearch_pool_maxsize=int(pool),
        ready_timeout=float(ready_timeout),
        index=index,
        ingest_token=token,
        ingest_max_documents=int(max_docs),
        ingest_max_bytes=int(max_bytes),
        log_level=log_level,
    )

"""searchplat reference search service (FastAPI + OpenSearch)."""

__version__ = "0.1.0"

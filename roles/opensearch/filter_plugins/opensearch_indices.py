"""Index name filters of roles/opensearch."""

from __future__ import annotations

import fnmatch


def opensearch_match_indices(indices, patterns):
    """The names among `indices` that match any of `patterns` (OpenSearch
    wildcards: *), in their order: ['a-1', 'b-1'] | (['a-*']) -> ['a-1']."""
    return [name for name in indices or [] if any(fnmatch.fnmatchcase(name, p) for p in patterns or [])]


class FilterModule:
    def filters(self):
        return {"opensearch_match_indices": opensearch_match_indices}

"""Filters of the opensearch_dashboards role for its saved objects.

- opensearch_dashboards_ndjson(text): the objects of an ndjson text (one
  JSON object per non-empty line), as the saved-objects export and _import
  use it; a line that is not a JSON object is an error.
- opensearch_dashboards_outdated(desired, current): the desired objects that
  Dashboards lacks or holds with other content. `current` is the
  `saved_objects` list of POST /api/saved_objects/_bulk_get for the desired
  objects (an entry with `error` is missing). Compared: every attribute the
  desired object sets (JSON strings such as searchSourceJSON compared as
  parsed JSON, so key order and spacing do not count) and the references.
  Attributes Dashboards adds itself (an index pattern's fields, say) are
  not compared.
- opensearch_dashboards_refs(objects): [{type, id}] of the objects (the body
  of _bulk_get).
"""

import json

from ansible.errors import AnsibleFilterError

# Attributes that hold JSON in a string.
_JSON_STRINGS = {"searchSourceJSON", "visState", "uiStateJSON", "optionsJSON", "panelsJSON", "fieldFormatMap"}


def opensearch_dashboards_ndjson(text):
    objects = []
    for number, line in enumerate(str(text).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as error:
            raise AnsibleFilterError(f"opensearch_dashboards_ndjson: line {number} is not JSON: {error}") from error
        if not isinstance(obj, dict) or not obj.get("type") or not obj.get("id"):
            raise AnsibleFilterError(f"opensearch_dashboards_ndjson: line {number} is not a saved object (type, id)")
        objects.append(obj)
    return objects


def _normal(value, key=None):
    if key in _JSON_STRINGS and isinstance(value, str):
        try:
            return _normal(json.loads(value))
        except ValueError:
            return value
    if isinstance(value, dict):
        return {k: _normal(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _references(obj):
    return sorted((r.get("name"), r.get("type"), r.get("id")) for r in obj.get("references") or [])


def _differs(desired, current):
    have = current.get("attributes") or {}
    for key, value in (desired.get("attributes") or {}).items():
        if key not in have or _normal(have[key], key) != _normal(value, key):
            return True
    return _references(desired) != _references(current)


def opensearch_dashboards_outdated(desired, current):
    if not isinstance(desired, list) or not isinstance(current, list):
        raise AnsibleFilterError("opensearch_dashboards_outdated: expects two lists of saved objects")
    found = {(o.get("type"), o.get("id")): o for o in current if isinstance(o, dict) and not o.get("error")}
    outdated = []
    for obj in desired:
        have = found.get((obj.get("type"), obj.get("id")))
        if have is None or _differs(obj, have):
            outdated.append(obj)
    return outdated


def opensearch_dashboards_refs(objects):
    return [{"type": o.get("type"), "id": o.get("id")} for o in objects]


class FilterModule:
    def filters(self):
        return {
            "opensearch_dashboards_ndjson": opensearch_dashboards_ndjson,
            "opensearch_dashboards_outdated": opensearch_dashboards_outdated,
            "opensearch_dashboards_refs": opensearch_dashboards_refs,
        }

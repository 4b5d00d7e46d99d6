"""opensearch_artifact_version: the OpenSearch version an archive or plugin on the controller is for.

Read before anything is copied to a node, so that an archive or a plugin
of another version is refused while every node still runs (a plugin of
the wrong version makes `opensearch-plugin install` fail once the node is
stopped, in the middle of an upgrade):

- a distribution (zip, tar.gz): the version of its top directory
  `opensearch-<version>/` (what the role unpacks into /usr/share/opensearch-<version>);
- a plugin zip: `opensearch.version` of its plugin-descriptor.properties
  (the OpenSearch version the plugin runs on, exactly).

An unreadable or unrecognised file gives "" (the role's message then names it).

    "{{ lookup('opensearch_artifact_version', '/var/cache/searchplat/downloads/opensearch-2.19.4.zip') }}"  -> 2.19.4
"""

from __future__ import annotations

import re
import tarfile
import zipfile

from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: opensearch_artifact_version
short_description: the OpenSearch version of a distribution archive or plugin zip on the controller
description:
  - For a distribution (zip or tar.gz), the version in its top directory opensearch-<version>/.
  - For a plugin zip, opensearch.version from its plugin-descriptor.properties.
  - An empty string when the file is missing, unreadable or neither.
options:
  _terms:
    description: paths on the controller
    required: true
"""

_TOP = re.compile(r"^(?:\./)?opensearch-(\d+\.\d+\.\d+)(?:[-/]|$)")
_DESCRIPTOR = "plugin-descriptor.properties"


def _top_version(names) -> str:
    for name in names:
        match = _TOP.match(name)
        if match:
            return match.group(1)
    return ""


def _descriptor_version(text: str) -> str:
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "opensearch.version":
            return value.strip()
    return ""


def artifact_version(path: str) -> str:
    """The OpenSearch version `path` is for, or "" (see the module's doc)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                descriptor = [n for n in names if n.rsplit("/", 1)[-1] == _DESCRIPTOR and n.count("/") <= 1]
                if descriptor:
                    return _descriptor_version(archive.read(descriptor[0]).decode("utf-8", "replace"))
                return _top_version(names[:50])
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                # The top directory is the first member of upstream's archives:
                # read no further than a few members (the file is ~200 MB).
                names = []
                for member in archive:
                    names.append(member.name)
                    if len(names) >= 5:
                        break
                return _top_version(names)
    except (OSError, zipfile.BadZipFile, tarfile.TarError, KeyError):
        return ""
    return ""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [artifact_version(str(term)) for term in terms]

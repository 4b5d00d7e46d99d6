"""platform_root: the directory of this project (where site.yml is).

The platform wiring points roles at files the project ships, such as the
reference search service in app/, wherever the checkout lives and whichever
playbook runs: "{{ lookup('platform_root') }}/app".
"""

from __future__ import annotations

import os

from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: platform_root
short_description: the project's top directory
description:
  - Returns the directory that holds roles/ (and site.yml, app/).
"""

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [_ROOT]

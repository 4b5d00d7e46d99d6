"""opensearch_bcrypt: bcrypt hash for the security plugin's internal_users.yml.

The salt is derived from a seed (the role passes cluster name and user name),
so the same password gives the same hash on every run and the file stays
unchanged (idempotence) while each user and cluster gets its own salt.
Computed on the controller; needs the `bcrypt` package (requirements.txt).
"""

import base64
import hashlib

from ansible.errors import AnsibleFilterError

try:
    import bcrypt
except ImportError:  # pragma: no cover - reported when the filter is used
    bcrypt = None

_B64_STD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_BCRYPT = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _bcrypt64(raw):
    """Encode 16 bytes the way bcrypt encodes its salt (22 characters)."""
    std = base64.b64encode(raw).rstrip(b"=")
    return std.translate(bytes.maketrans(_B64_STD, _B64_BCRYPT))[:22]


def opensearch_bcrypt(password, seed, rounds=12):
    if bcrypt is None:
        raise AnsibleFilterError("opensearch_bcrypt needs the Python package bcrypt on the controller (requirements.txt)")
    secret = str(password).encode("utf-8")
    if not secret or len(secret) > 72:
        raise AnsibleFilterError("opensearch_bcrypt: a password must be 1 to 72 bytes")
    rounds = int(rounds)
    if not 4 <= rounds <= 31:
        raise AnsibleFilterError("opensearch_bcrypt: rounds must be 4-31")
    salt = _bcrypt64(hashlib.sha256(str(seed).encode("utf-8")).digest()[:16])
    return bcrypt.hashpw(secret, b"$2b$%02d$" % rounds + salt).decode("ascii").replace("$2b$", "$2y$", 1)


class FilterModule:
    def filters(self):
        return {"opensearch_bcrypt": opensearch_bcrypt}

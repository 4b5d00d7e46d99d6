"""Facts about a host under test, shared by the acceptance modules."""

CONTAINER_TYPES = ("docker", "container", "podman", "lxc")


def in_container(host) -> bool:
    """True when the host is a container (kernel-level controls cannot apply there)."""
    facts = host.ansible("setup", "gather_subset=!all,virtual")["ansible_facts"]
    return (facts.get("ansible_virtualization_role") == "guest"
            and facts.get("ansible_virtualization_type") in CONTAINER_TYPES)

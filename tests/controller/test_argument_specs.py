"""Every role's meta/argument_specs.yml matches its defaults/main.yml.

- every variable in defaults/main.yml is described in the spec, with the same
  default, and every spec option with a default is in defaults/main.yml;
- every option is prefixed with the role name and has a description;
- the `validate` entry point (run by preflight) checks the same options as
  `main`.
"""

import pathlib

import pytest
import yaml

ROLES_DIR = pathlib.Path(__file__).resolve().parents[2] / "roles"
ROLES = sorted(p.parent.parent.name for p in ROLES_DIR.glob("*/meta/argument_specs.yml"))


def _load(role):
    spec = yaml.safe_load((ROLES_DIR / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    defaults_file = ROLES_DIR / role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) or {} if defaults_file.exists() else {}
    return spec, defaults


def test_every_role_has_a_spec():
    roles = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks" / "main.yml").exists())
    assert roles == ROLES, f"roles without meta/argument_specs.yml: {sorted(set(roles) - set(ROLES))}"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_equal_spec(role):
    spec, defaults = _load(role)
    options = spec["main"].get("options", {})
    undocumented = sorted(set(defaults) - set(options))
    assert not undocumented, f"{role}: defaults not in argument_specs.yml: {undocumented}"
    missing = sorted(k for k, v in options.items() if "default" in v and k not in defaults)
    assert not missing, f"{role}: spec defaults missing from defaults/main.yml: {missing}"
    differ = sorted(k for k in defaults if "default" in options[k] and options[k]["default"] != defaults[k])
    assert not differ, f"{role}: default differs between defaults/main.yml and the spec: {differ}"
    required_with_default = sorted(k for k, v in options.items() if v.get("required") and k in defaults)
    assert not required_with_default, f"{role}: required options must not have defaults: {required_with_default}"


@pytest.mark.parametrize("role", ROLES)
def test_options_prefixed_and_described(role):
    spec, _ = _load(role)
    for name, option in spec["main"].get("options", {}).items():
        assert name.startswith(role + "_"), f"{role}: option {name} is not prefixed with '{role}_'"
        assert option.get("description"), f"{role}: option {name} has no description"


@pytest.mark.parametrize("role", ROLES)
def test_validate_entry_point_checks_the_same_options(role):
    spec, _ = _load(role)
    assert "validate" in spec, f"{role}: no `validate` entry point for preflight"
    assert spec["validate"].get("options") == spec["main"].get("options")
    assert (ROLES_DIR / role / "tasks" / "validate.yml").exists()

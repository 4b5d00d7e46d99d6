"""Every role's meta/argument_specs.yml describes its inputs truthfully.

Each check compares two things that can disagree:

- defaults/main.yml and the spec: every default is described, with the same
  value, and every spec default is in defaults/main.yml; a required option
  has no default (in either file). A role without `main` tasks (the
  platform's defaults role, listed in every play for its defaults) describes
  its own settings under `validate`; the other roles' inputs it wires (names
  without its prefix; `_<role>_` internals aside) must be options of the
  role whose prefix they carry;
- each option's declared `type` (and `elements`) and the YAML type of its
  default, nested suboptions included (a Jinja expression is checked by the
  role at run time, not here);
- `choices` and the default (every element of a list default);
- the option's keys and the keys Ansible reads (a misspelt `requried:` is
  silently ignored by Ansible); an explicit `type` on every option;
- the spec and the role's code: every option is read somewhere in the role
  (tasks, validation, handlers, templates, vars, another default, plugins),
  not only in the spec and the README; READ_OUTSIDE_THE_ROLE names the few
  read elsewhere, with the reader (checked);
- every option is prefixed with the role name and described;
- the `validate` entry point (run by preflight) takes the same options as
  `main`, and tasks/validate.yml exists.
"""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES_DIR = PROJECT_ROOT / "roles"
ROLES = sorted(p.parent.parent.name for p in ROLES_DIR.glob("*/meta/argument_specs.yml"))
# Options a role declares but never reads itself: who reads them instead
# (the file must name the option).
READ_OUTSIDE_THE_ROLE = {
    "firewall_unexposed_listen_ports": "tests/acceptance/test_firewall.py",  # listeners it must not expose
}

# Keys Ansible reads in a role argument spec option (ansible-core's
# argument spec validator and ansible-doc).
OPTION_KEYS = {
    "description", "type", "required", "default", "choices", "elements", "options", "aliases",
    "no_log", "version_added", "apply_defaults", "mutually_exclusive", "required_together",
    "required_one_of", "required_if", "required_by",
}
# Declared type -> the Python types a YAML default of that type loads as.
YAML_TYPES = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "bytes": (str, int),
    "bits": (str, int),
    "json": (str, list, dict),
    "jsonarg": (str, list, dict),
}
# Where a role reads its inputs.
CODE_DIRS = ("tasks", "handlers", "templates", "vars", "defaults", "meta", "filter_plugins", "library",
             "module_utils", "lookup_plugins", "files")


def _load(role):
    spec = yaml.safe_load((ROLES_DIR / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    defaults_file = ROLES_DIR / role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}
    return spec, defaults


def _entry_options(spec) -> dict:
    """The role's options: `main`'s, or `validate`'s for a role without main tasks."""
    entry = spec.get("main") or spec.get("validate") or {}
    return entry.get("options", {}) or {}


def _options(role):
    return _entry_options(_load(role)[0])


def _owner(name: str) -> str | None:
    """The role whose prefix a variable carries (the longest role name)."""
    owners = [r for r in ROLES if name.startswith(r + "_")]
    return max(owners, key=len) if owners else None


def _has_main_tasks(role: str) -> bool:
    return (ROLES_DIR / role / "tasks" / "main.yml").exists()


def _is_template(value) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _type_ok(value, declared: str) -> bool:
    if declared == "raw" or _is_template(value):
        return True
    allowed = YAML_TYPES.get(declared)
    if allowed is None:
        return False
    if isinstance(value, bool) and bool not in allowed:
        return False  # a YAML true is not an int
    return isinstance(value, allowed)


def _walk(options: dict, path: str = ""):
    """(dotted name, option) for every option and suboption."""
    for name, option in (options or {}).items():
        yield f"{path}{name}", option
        yield from _walk(option.get("options"), f"{path}{name}.")


def _default_problems(name: str, option: dict, value) -> list[str]:
    """Type, elements, choices and suboption problems of one default value."""
    problems = []
    declared = option.get("type", "str")
    if not _type_ok(value, declared):
        problems.append(f"{name}: default {value!r} is a YAML {type(value).__name__}, declared type {declared}")
        return problems
    if _is_template(value):
        return problems
    items = value if declared == "list" else [value]
    if declared == "list" and "elements" in option:
        for item in items:
            if not _type_ok(item, option["elements"]):
                problems.append(f"{name}: element {item!r} of the default is a YAML {type(item).__name__}, "
                                f"declared elements {option['elements']}")
    if "choices" in option and value is not None:
        outside = [item for item in items if not _is_template(item) and item not in option["choices"]]
        if outside:
            problems.append(f"{name}: default {outside} not in choices {option['choices']}")
    sub = option.get("options")
    if sub:
        dicts = items if declared == "list" else [value]
        for index, item in enumerate(dicts):
            if not isinstance(item, dict):
                continue
            label = f"{name}[{index}]" if declared == "list" else name
            unknown = sorted(set(item) - set(sub))
            if unknown:
                problems.append(f"{label}: default has keys {unknown} that its suboptions do not declare")
            for key, subopt in sub.items():
                if key in item:
                    problems.extend(_default_problems(f"{label}.{key}", subopt, item[key]))
                elif subopt.get("required"):
                    problems.append(f"{label}: default lacks the required suboption {key}")
    return problems


def test_every_role_has_a_spec():
    roles = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks").is_dir())
    assert roles == ROLES, f"roles without meta/argument_specs.yml: {sorted(set(roles) - set(ROLES))}"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_equal_spec(role):
    spec, defaults = _load(role)
    assert "main" in spec or not _has_main_tasks(role), f"{role}: tasks/main.yml but no `main` entry point"
    options = _entry_options(spec)
    foreign = {k: v for k, v in defaults.items()
               if not k.startswith((role + "_", f"_{role}_")) and not _has_main_tasks(role)}
    internal = {k for k in defaults if k.startswith(f"_{role}_") and not _has_main_tasks(role)}
    undocumented = sorted(set(defaults) - set(options) - set(foreign) - internal)
    assert not undocumented, f"{role}: defaults not in argument_specs.yml: {undocumented}"
    # A defaults role (no main tasks) wires other roles' inputs: each must be
    # an option of the role whose prefix it carries.
    strays = sorted(k for k in foreign if _owner(k) is None or k not in _options(_owner(k)))
    assert not strays, f"{role}: defaults that no role's argument_specs.yml declares: {strays}"
    missing = sorted(k for k, v in options.items() if "default" in v and k not in defaults)
    assert not missing, f"{role}: spec defaults missing from defaults/main.yml: {missing}"
    differ = sorted(k for k in defaults if k in options and "default" in options[k]
                    and options[k]["default"] != defaults[k])
    assert not differ, f"{role}: default differs between defaults/main.yml and the spec: {differ}"
    required_with_default = sorted(name for name, v in _walk(options)
                                   if v.get("required") and ("default" in v or name in defaults))
    assert not required_with_default, f"{role}: required options must not have defaults: {required_with_default}"


@pytest.mark.parametrize("role", ROLES)
def test_option_keys_are_ansibles_and_types_explicit(role):
    problems = []
    for name, option in _walk(_options(role)):
        unknown = sorted(set(option) - OPTION_KEYS)
        if unknown:
            problems.append(f"{name}: unknown key(s) {unknown} (Ansible ignores them)")
        if "type" not in option:
            problems.append(f"{name}: no type (Ansible would assume str)")
        elif option["type"] not in YAML_TYPES and option["type"] != "raw":
            problems.append(f"{name}: unknown type {option['type']}")
        if "elements" in option and option.get("type") != "list":
            problems.append(f"{name}: elements on a {option.get('type')} option")
        if option.get("type") == "list" and "elements" not in option:
            problems.append(f"{name}: a list without elements")
        if "options" in option and not (option.get("type") == "dict" or option.get("elements") == "dict"):
            problems.append(f"{name}: suboptions on a {option.get('type')} option")
        if "choices" in option and not isinstance(option["choices"], list):
            problems.append(f"{name}: choices is not a list")
    assert not problems, f"{role}:\n" + "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
def test_defaults_match_declared_types_and_choices(role):
    """The default's YAML type is the declared type (a list's elements too),
    it is one of the choices, and nested defaults follow their suboptions;
    a wired value in a defaults role follows its owner's declaration."""
    spec, defaults = _load(role)
    options = _entry_options(spec)
    problems = []
    for name, option in _walk(options):
        if "default" in option:
            problems.extend(_default_problems(name, option, option["default"]))
    for name, value in defaults.items():
        option = options.get(name)
        if option is None and _owner(name) not in (None, role):
            option = _options(_owner(name)).get(name)
            name = f"{name} (wired here, declared by {_owner(name)})"
        if option is not None and "default" not in option:
            problems.extend(_default_problems(name, option, value))
    assert not problems, f"{role}:\n" + "\n".join(problems)


def _code_text(role: str, exclude_option: str) -> str:
    """Everything the role reads at run time, as text; the option's own entry
    in defaults/main.yml left out (a default does not use itself)."""
    root = ROLES_DIR / role
    parts = []
    for sub in CODE_DIRS:
        for path in sorted((root / sub).rglob("*")) if (root / sub).is_dir() else []:
            if not path.is_file() or path.name == "argument_specs.yml":
                continue
            text = path.read_text(errors="replace")
            if path == root / "defaults" / "main.yml":
                text = re.sub(rf"(?m)^{re.escape(exclude_option)}:", "", text)
            parts.append(text)
    return "\n".join(parts)


@pytest.mark.parametrize("role", ROLES)
def test_every_option_is_used_by_the_role(role):
    """An option no task, handler, template, var or plugin reads is a
    documented input that does nothing (the spec and the README do not count)."""
    unused = []
    for name in _options(role):
        reader = READ_OUTSIDE_THE_ROLE.get(name)
        if reader:
            assert name in (PROJECT_ROOT / reader).read_text(), f"{name}: {reader} no longer reads it"
            continue
        if not re.search(rf"\b{re.escape(name)}\b", _code_text(role, name)):
            unused.append(name)
    assert not unused, f"{role}: options read nowhere in the role: {unused}"


@pytest.mark.parametrize("role", ROLES)
def test_options_prefixed_and_described(role):
    for name, option in _options(role).items():
        assert name.startswith(role + "_"), f"{role}: option {name} is not prefixed with '{role}_'"
        assert option.get("description"), f"{role}: option {name} has no description"


@pytest.mark.parametrize("role", ROLES)
def test_validate_entry_point_checks_the_same_options(role):
    spec, _ = _load(role)
    assert "validate" in spec, f"{role}: no `validate` entry point for preflight"
    if "main" in spec:
        assert spec["validate"].get("options") == spec["main"].get("options")
    assert (ROLES_DIR / role / "tasks" / "validate.yml").exists()

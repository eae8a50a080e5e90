"""Stage configs: each option declared once, as a dataclass field made by `option()`.

A field holds its default, its help line, its choices and how the command line spells it.
From that one declaration come the command-line flags (`add_flags`, `from_args`), the YAML
and JSON keys (`config_from_dict`, which checks types) and the checks of enumerated values
(`check_choices`); a stage's own `validate()` adds only the rules between fields.

    @dataclass
    class FitConfig:
        selection: str = option("extremes", "InterFaceGAN's top/bottom by score, or every "
                                "sample labelled logit > 0", choices=("extremes", "threshold"))
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import typing
from typing import Callable, Optional


class ConfigError(ValueError):
    """A config field has a bad value: one sentence naming the field."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem

    def within(self, prefix: str) -> "ConfigError":
        return ConfigError(f"{prefix}.{self.field}", self.problem) if prefix else self


def require(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise ConfigError(field, problem)


def choice(value, options, field: str) -> None:
    require(value in options, field,
            f"must be one of {', '.join(map(str, options))} (got {value!r})")


def option(default=None, help: str = "", *, choices: Optional[tuple] = None,
           parse: Optional[Callable] = None, one_word: bool = False, repeat: bool = False,
           metavar: Optional[str] = None, required: bool = False, flag=True, const=None,
           positional: bool = False, switch: bool = False, length: Optional[int] = None,
           identity=False):
    """A config field with its help line.

    default   the value (lists and dicts are copied per config)
    choices   the values an enumerated option takes (a list field: each item)
    parse     turns one command-line word into a value (a list field: into one item, or
              with `one_word` into the whole list, e.g. 'START-STOP' -> [start, stop])
    repeat    a list field given as a repeated flag (`--condition A:B --condition C:D`)
    required  the command line must give it (a config file's `validate` checks it there)
    flag      the flag's name when it is not the field's, or False for a field that only a
              config file sets
    const     the value of the flag given without a word (`--identity` = `--identity dlib`)
    positional  a word of the command line without a flag (`gankit run FILE`)
    switch    a bool flag that only turns the option on (`--json`; no `--no-json`)
    length    a list field given as exactly this many words (`--translate TX TY`)
    identity  the job's outputs depend on it: True, or Joins(...) (how), puts it in the
              job's identity (`identity_of`), which a rerun must match to resume
    """
    meta = {"help": help, "choices": choices, "parse": parse, "one_word": one_word,
            "repeat": repeat, "metavar": metavar, "required": required, "flag": flag,
            "const": const, "positional": positional, "switch": switch, "length": length,
            "identity": Joins() if identity is True else identity}
    return _field(default, meta)


def _field(default, meta: dict) -> dataclasses.Field:
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def override(group, name: str, default, **changes):
    """Option `name` of option group `group` with a stage's own default (and any other of
    option()'s arguments in `changes`): the one place a stage differs from the group."""
    declared = {f.name: f for f in dataclasses.fields(group)}[name]
    if "identity" in changes and changes["identity"] is True:
        changes["identity"] = Joins()
    return _field(default, dict(declared.metadata, **changes))


_ALWAYS = object()


@dataclasses.dataclass(frozen=True)
class Joins:
    """How an option joins a job's identity: under `key` (default: the field's name); with
    `unless`, only when its value differs from that one, the value the outputs written
    before the option existed used (so they still resume)."""
    key: Optional[str] = None
    unless: object = _ALWAYS

    def entry(self, name: str, value) -> dict:
        if self.unless is not _ALWAYS and value == self.unless:
            return {}
        return {self.key or name: copy.deepcopy(value)}


def identity_of(cfg, *, only=None) -> dict:
    """{key: value} of the options of `cfg` marked as identity (those of the option groups
    in `only`, when given), in the order the config declares them."""
    names = None if only is None else {f.name for g in only for f in dataclasses.fields(g)}
    ident = {}
    for f in fields_in_order(type(cfg)):
        mark = f.metadata.get("identity")
        if mark and (names is None or f.name in names):
            ident.update(mark.entry(f.name, getattr(cfg, f.name)))
    return ident


def fields_in_order(cls) -> list:
    """The stage's own fields first, then those of each option group it inherits, in the
    order it lists them (a field a stage overrides stays among its own)."""
    every = {f.name: f for f in dataclasses.fields(cls)}
    order = [n for c in cls.__mro__ for n in vars(c).get("__annotations__", {}) if n in every]
    return [every[n] for n in dict.fromkeys(order)]


def default_of(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


# ----------------------------------------------------------------------------------------
# Command-line flags


def add_flags(parser: argparse.ArgumentParser, cls, skip=(), unset=()) -> None:
    """One `--flag-name` per field of config class `cls` (its help, default and choices),
    but those in `skip`. Fields in `unset` get no default on the command line: left out,
    they take the default of whichever config the flags build (from_args)."""
    hints = typing.get_type_hints(cls)
    for f in fields_in_order(cls):
        name = f.metadata.get("flag", True)
        if name is not False and "help" in f.metadata and f.name not in skip:
            name = f.name if name is True else name
            kw = _argument(f, hints[f.name])
            if f.name in unset:
                kw.update(default=None, required=False)
            if f.metadata.get("positional"):
                kw = {k: v for k, v in kw.items() if k in ("help", "metavar", "nargs")}
                parser.add_argument(f.name, **kw)
            else:
                parser.add_argument("--" + name.replace("_", "-"), dest=f.name, **kw)


def _argument(f: dataclasses.Field, hint) -> dict:
    meta = f.metadata
    base = _base_type(hint)
    kw = {"help": meta["help"], "default": default_of(f)}
    if meta.get("required"):
        kw["required"] = True
    if meta.get("metavar"):
        kw["metavar"] = meta["metavar"]
    if meta.get("const") is not None:
        kw.update(nargs="?", const=meta["const"])
    if base is bool:
        return dict(kw, action="store_true" if meta.get("switch") else
                    argparse.BooleanOptionalAction)
    if meta.get("choices"):          # shown, and checked by check_choices: one sentence
        kw.setdefault("metavar", "{" + ",".join(map(str, meta["choices"])) + "}")
    parse = meta.get("parse")
    if base is list and not meta.get("one_word"):
        kw["type"] = parse or _item_type(hint)
        return dict(kw, action="append", default=None) if meta.get("repeat") \
            else dict(kw, nargs=meta.get("length") or "+")
    kw["type"] = parse or {dict: json.loads}.get(base, base if base in (int, float) else str)
    return kw


def _unwrap_optional(hint):
    """Optional[X] -> X; other hints as they are."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint


def _base_type(hint):
    """int for Optional[int], list for list / Optional[list] / list[float], ..."""
    hint = _unwrap_optional(hint)
    return typing.get_origin(hint) or hint


def _item_type(hint):
    """A list field's item type on the command line: int or float when declared, else str."""
    items = typing.get_args(_unwrap_optional(hint))
    return items[0] if items and items[0] in (int, float) else str


def from_args(cls, args: argparse.Namespace, prefix: str = ""):
    """The config of class `cls` from parsed flags (checked like a config file's)."""
    data = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None or (hasattr(args, f.name) and default_of(f) is None):
            data[f.name] = value           # (None: a flag left unset keeps the default)
    return config_from_dict(cls, data, prefix)


def add_stage_command(subparsers, name: str, help: str, cls, run: str):
    """`gankit <name>`: flags from config class `cls`; the config they give is passed to
    `run` ('module:function', imported when the command runs). Returns its parser."""
    p = subparsers.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".",
                              formatter_class=HelpFormatter)
    add_flags(p, cls)

    def command(args) -> None:
        load(run)(from_args(cls, args))
    p.set_defaults(func=command)
    return p


def load(name: str):
    """'package.module:attribute' -> the attribute (its module imported)."""
    import importlib
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (flags whose help already says, or whose
    default is empty, are left alone); enumerated options show their choices in the usage."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        empty = default is None or default is False or default in ("", [], {})
        if (action.option_strings and not action.required and "default" not in text
                and not empty and default is not argparse.SUPPRESS):
            shown = " ".join(map(str, default)) if isinstance(default, list) else default
            text += f" (default: {shown})"
        return text


# ----------------------------------------------------------------------------------------
# Config files and checks


def config_from_dict(cls, data: dict, prefix: str = ""):
    """Build a config dataclass from a mapping; unknown keys and wrongly typed values fail
    with a sentence naming the field (`prefix.field`); then the config validates itself."""
    where = f"{prefix}." if prefix else ""
    if not isinstance(data, dict):
        raise ConfigError(prefix or cls.__name__, f"must be a mapping (got {data!r})")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields_in_order(cls)]
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{where}{key}", f"is not a known field (known: {', '.join(known)})")
        if float in (hints[key], *typing.get_args(hints[key])) and isinstance(value, int) \
                and not isinstance(value, bool):
            data = dict(data, **{key: float(value)})
        elif not _type_ok(value, hints[key]):
            raise ConfigError(f"{where}{key}", f"must be {_type_name(hints[key])} (got {value!r})")
    cfg = cls(**data)
    try:
        check_choices(cfg)
        cfg.validate()
    except ConfigError as e:
        raise e.within(prefix) from None
    return cfg


def check_choices(cfg) -> None:
    """Every enumerated field of `cfg` holds one of its choices."""
    for f in dataclasses.fields(cfg):
        options = f.metadata.get("choices")
        value = getattr(cfg, f.name)
        if options and value is not None:
            for v in (value if isinstance(value, list) else [value]):
                choice(v, options, f.name)


def _type_ok(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if origin is typing.Union:
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _type_name(hint) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             list: "a list", dict: "a mapping"}
    if typing.get_origin(hint) is typing.Union:
        return " or ".join("null" if h is type(None) else _type_name(h)
                           for h in typing.get_args(hint))
    return names.get(typing.get_origin(hint) or hint, str(hint))


def config_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


SECRET_WORDS = ("key", "secret", "token", "password")


def public_config(cfg) -> dict:
    """The config as recorded in manifests: storage secrets redacted."""
    d = config_dict(cfg)
    if d.get("storage"):
        d["storage"] = {k: ("***" if any(s in k.lower() for s in SECRET_WORDS) else v)
                        for k, v in d["storage"].items()}
    return d


def layer_span(text: Optional[str]) -> Optional[list]:
    """'START-STOP' (a flag's word) -> [start, stop]."""
    if text is None:
        return None
    a, _, b = str(text).partition("-")
    try:
        return [int(a), int(b)]
    except ValueError:
        raise ValueError(f"layer range {text!r} must be START-STOP, e.g. 0-4") from None

"""Reference pages generated at build time from batsnn itself, so that they cannot drift:

- ``reference/cli.md``: every command, subcommand and option of ``batsnn``, read from the
  parser :func:`batsnn.cli.build_parser`;
- ``reference/config.md``: every setting of :class:`batsnn.experiments.config.TrainConfig`
  (type, default, what the validator accepts, found by asking it), the presets
  (:data:`~batsnn.experiments.config.PRESETS`) and the layer types of network descriptions
  (:data:`~batsnn.experiments.model.LAYER_TYPES`);
- ``reference/api/<module>.md``: one mkdocstrings page per public module of ``src/batsnn``,
  and their place in the navigation.

Used as an MkDocs hook (``hooks:`` in ``mkdocs.yml``); ``python docs/hooks/reference.py DIR``
writes the same pages into ``DIR`` for reading without MkDocs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import re
import sys
import typing

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


# ----------------------------------------------------------------------------- helpers

def _cell(text) -> str:
    """Text for one cell of a Markdown table."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _code(text) -> str:
    text = str(text)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


# ----------------------------------------------------------------------------- modules

def public_modules() -> list[str]:
    """Dotted names of the public modules of ``src/batsnn`` (no part starting with ``_``),
    in the order of the files."""
    root = ROOT / "src" / "batsnn"
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = ("batsnn",) + path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(p.startswith("_") for p in parts):
            names.append(".".join(parts))
    return sorted(names)


def api_page(module: str) -> str:
    """The mkdocstrings page of one module. ``batsnn/ops/`` is a folder without
    ``__init__.py`` (a namespace package), which mkdocstrings' static reader does not enter
    from ``batsnn``; its modules are read as the namespace package ``ops`` (``src/batsnn`` is
    on the handler's paths), so their members are shown as ``ops.lif....``."""
    target = module.removeprefix("batsnn.") if module.startswith("batsnn.ops.") else module
    return f"# `{module}`\n\n::: {target}\n"


def api_index(modules: list[str]) -> str:
    """The API reference's index: every public module, linked."""
    lines = ["# API reference", "",
             "One page per public module of `src/batsnn`, generated from the docstrings "
             "(Google style, see [About these docs](../../about.md)). The library "
             "(`batsnn`, `batsnn.nn`, `batsnn.functional`, `batsnn.losses`, "
             "`batsnn.encoding`, `batsnn.metrics`, `batsnn.spikes`, `batsnn.params`, "
             "`batsnn.ops`, `batsnn.export`) never imports the runner "
             "(`batsnn.experiments`, `batsnn.cli`).", ""]
    for m in modules:
        lines.append(f"- [`{m}`]({m}.md)")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- CLI

def _option_row(action: argparse.Action, settings: frozenset = frozenset()) -> str | None:
    if isinstance(action, argparse._HelpAction):
        return None
    if action.option_strings:
        names = ", ".join(action.option_strings)
        if action.nargs != 0 and not isinstance(action, (argparse._VersionAction,)):
            names += " " + (action.metavar or action.dest.upper())
    else:
        names = action.metavar or action.dest
    default = action.default
    if default in (None, argparse.SUPPRESS) or isinstance(action, (argparse._StoreTrueAction,
                                                                     argparse._VersionAction)):
        shown = ""
    else:
        shown = _code(default)
    choices = ", ".join(map(str, action.choices)) if action.choices else ""
    help_text = (action.help or "").replace("%(default)s", str(default)).replace("%%", "%")
    if choices:
        help_text += f" (one of: {choices})"
    if action.dest in settings:
        help_text += f" (setting [`{action.dest}`](config.md#settings))"
    if action.required and action.option_strings:
        help_text += " **Required.**"
    return f"| {_cell(_code(names))} | {_cell(shown)} | {_cell(help_text)} |"


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, sub, helps.get(name, "")


def _parser_section(parser: argparse.ArgumentParser, path: list[str], help_text: str,
                    out: list[str]) -> None:
    level = "#" * min(len(path) + 1, 6)
    out += [f"{level} `{' '.join(path)}`", ""]
    if help_text:
        out += [help_text[0].upper() + help_text[1:].rstrip(".") + ".", ""]
    if parser.description and len(path) > 1:
        out += [parser.description, ""]
    usage = parser.format_usage().strip()
    usage = re.sub(r"\s+", " ", usage.removeprefix("usage:").strip())
    out += ["```text", usage, "```", ""]
    from batsnn.experiments.config import TrainConfig

    settings = frozenset(f.name for f in dataclasses.fields(TrainConfig))
    rows = [r for r in (_option_row(a, settings) for a in parser._actions
                        if not isinstance(a, argparse._SubParsersAction)) if r]
    if rows:
        out += ["| argument | default | meaning |", "|---|---|---|", *rows, ""]
    for name, sub, sub_help in _subparsers(parser):
        _parser_section(sub, path + [name], sub_help or "", out)


def cli_page() -> str:
    """The command-line reference, read from :func:`batsnn.cli.build_parser`."""
    from batsnn import cli

    parser = cli.build_parser()
    out = ["# Command-line reference", "",
           "Generated from the parser of the `batsnn` command (`batsnn.cli.build_parser`) "
           "when this site is built, so it lists exactly the commands and options of this "
           "version. `python -m batsnn` is the same command. Bad input ends with exit "
           "status 2 and one line `batsnn: error: ...` on stderr "
           "([reliability](../reliability.md)). A guide with examples: "
           "[the command line](../cli.md).", ""]
    commands = [(n, h) for n, _, h in _subparsers(parser)]
    out += ["| command | what it does |", "|---|---|"]
    out += [f"| [`batsnn {n}`](#batsnn-{n.replace(' ', '-')}) | {_cell(h)} |"
            for n, h in commands]
    out.append("")
    _parser_section(parser, [parser.prog], parser.description or "", out)
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- config

_PROBES = (None, True, "?", -1, 0, 0.5, 1.5, 2**40, -1e-9, float("inf"),
           [1], [-1.0, 1.0], [1.0, -1.0], "", "a\0b")


def _rule_of(name: str) -> list[str]:
    """What the validator says about the values it refuses, found by asking it
    (:func:`batsnn.experiments.config.check_setting` on a fixed list of probe values)."""
    from batsnn.experiments.config import check_setting

    rules = []
    for probe in _PROBES:
        try:
            check_setting(name, probe)
        except (TypeError, ValueError) as e:
            msg = str(e).split(", got ")[0]
            msg = re.sub(r"^" + re.escape(name) + r"\s*", "", msg)
            if isinstance(probe, str):
                msg = msg.replace(" " + repr(probe), "")
            if msg and msg not in rules and "config field" not in msg and len(msg) < 160:
                rules.append(msg)
    return rules


def _accepts_null(name: str) -> bool:
    from batsnn.experiments.config import check_setting
    try:
        return check_setting(name, None) is None
    except (TypeError, ValueError):
        return False


def _attribute_docs(cls) -> dict[str, str]:
    """``name -> text`` from the ``Attributes:`` section of a class's docstring (entries
    that name several fields give each the same text)."""
    doc = (cls.__doc__ or "").split("Attributes:", 1)
    if len(doc) < 2:
        return {}
    out, current = {}, []
    entry_indent = None
    for line in doc[1].splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if entry_indent is None:
            entry_indent = indent
        if indent < entry_indent:
            break
        if indent == entry_indent and ":" in line:
            head, text = line.strip().split(":", 1)
            current = [n.strip() for n in head.split(",")]
            for n in current:
                out[n] = text.strip()
        else:
            for n in current:
                out[n] += " " + line.strip()
    for name in list(out):
        m = re.search(r";\s*(\w+): (.*)$", out[name])
        if m and m.group(1) in out or (m and m.group(1) not in out and m.group(1).isidentifier()
                                      and m.group(1) in _fields_of(cls)):
            out[name] = out[name][:m.start()].strip() + "."
            out[m.group(1)] = m.group(2).strip()
    return out


def _fields_of(cls) -> set:
    return {f.name for f in dataclasses.fields(cls)}


def _type_name(tp) -> str:
    """A type as the table shows it (``X | None`` as ``X or None``: a bar would end the
    table cell)."""
    name = tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")
    return name.replace(" | ", " or ")


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _rst_to_md(text: str) -> str:
    text = re.sub(r":(?:func|class|data|mod|meth|attr):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def config_page() -> str:
    """The settings, presets and layer types reference."""
    from batsnn.experiments import config, model

    fields = dataclasses.fields(config.TrainConfig)
    hints = typing.get_type_hints(config.TrainConfig)
    docs = _attribute_docs(config.TrainConfig)
    out = ["# Settings and network descriptions", "",
           "Generated when the site is built from `batsnn.experiments.config` (the "
           "`TrainConfig` fields, their defaults and documentation, the presets) and "
           "`batsnn.experiments.model` (the layer types). The column *refused* lists the "
           "messages of the settings' own validator (`check_setting`) for a fixed set of "
           "probe values, so it states the accepted ranges exactly as `batsnn` checks them.",
           "",
           "Settings come, later ones winning, from the defaults, a preset (`--preset`), a "
           "JSON or TOML file (`--config`) and the command line. In a file, every field "
           "below may appear, plus the shorthands " +
           ", ".join(f"`{s}`" for s in config.SHORTHANDS) +
           " (lists, one value per layer of a stack of linear layers) and `preset`. "
           "A run's own `config.json` is such a file; the run facts it also holds (" +
           ", ".join(f"`{k}`" for k in config.RUN_INFO_KEYS) + ") are skipped when it is "
           "read back.", "",
           "## Settings", "",
           "| setting | type | default | refused | meaning |", "|---|---|---|---|---|"]
    for f in fields:
        rules = "; ".join(_rule_of(f.name))
        if _accepts_null(f.name):
            rules += " (null accepted)"
        d = _default(f)
        out.append(f"| `{f.name}` | {_cell(_code(_type_name(hints[f.name])))} | "
                   f"{_cell(_code(json.dumps(d)))} | {_cell(rules)} | "
                   f"{_cell(_rst_to_md(docs.get(f.name, '')))} |")
    out += ["", "`--resume` refuses a change of any of: " +
            ", ".join(f"`{k}`" for k in config.RESUME_FIELDS) + ".", "",
            "Time-step modes (`dt_mode`, `--dt-mode`): " +
            ", ".join(f"`{m}`" for m in config.DT_MODES) + ".", ""]
    out += ["## Presets", "",
            "Each preset is a set of settings over the defaults (`--preset NAME`, or "
            '`{"preset": "NAME"}` in a file); the reference experiments of the '
            "[specification](../model.md), section 5.", ""]
    for name, settings in config.PRESETS.items():
        out += [f"### `{name}`", "", "```json",
                json.dumps(settings, indent=1, sort_keys=False), "```", ""]
    out += ["## Layer types", "",
            "`network` is a list of layer descriptions, JSON objects with a `type`. "
            "The types known to this version (`batsnn.experiments.model.LAYER_TYPES`; "
            "more can be added with `register_layer_type`):", "",
            "| type | required keys | optional keys | reads maps `(C, H, W)` |",
            "|---|---|---|---|"]
    for name, lt in model.LAYER_TYPES.items():
        req = ", ".join(f"`{k}`" for k in sorted(lt.required)) or "none"
        opt = ", ".join(f"`{k}`" for k in sorted(lt.optional)) or "none"
        out.append(f"| `{name}` | {req} | {opt} | {'yes' if lt.maps else 'no'} |")
    out += ["", "What each key means, from the module's documentation:", "",
            _dedent(_rst_to_md(model.__doc__ or "")), ""]
    return "\n".join(out) + "\n"


def _dedent(text: str) -> str:
    import inspect
    text = inspect.cleandoc(text)
    # literal blocks after "::" or ":" + indented lines become code blocks
    lines, out, in_block = text.splitlines(), [], False
    for line in lines:
        if line.startswith("    ") and not in_block and out and not out[-1].strip():
            out.append("```json")
            in_block = True
        elif in_block and line.strip() and not line.startswith("    "):
            out += ["```", ""]
            in_block = False
        out.append(line[4:] if in_block else line)
    if in_block:
        out.append("```")
    return "\n".join(out)


# ----------------------------------------------------------------------------- pages

def pages() -> dict[str, str]:
    """Every generated page: path under the docs directory -> Markdown."""
    modules = public_modules()
    out = {"reference/cli.md": cli_page(), "reference/config.md": config_page(),
           "reference/api/index.md": api_index(modules)}
    for m in modules:
        out[f"reference/api/{m}.md"] = api_page(m)
    return out


def _api_nav(modules: list[str]) -> list:
    return ["reference/api/index.md"] + [{m: f"reference/api/{m}.md"} for m in modules]


# ----------------------------------------------------------------------------- MkDocs hooks

def on_config(config, **kwargs):
    """Put the API pages into the navigation where ``mkdocs.yml`` names ``API``."""
    modules = public_modules()

    def fill(items):
        for item in items or []:
            if isinstance(item, dict):
                for key, value in item.items():
                    if key == "API" and value == "reference/api/index.md":
                        item[key] = _api_nav(modules)
                    elif isinstance(value, list):
                        fill(value)
    fill(config.nav)
    return config


def on_files(files, config, **kwargs):
    """Add the generated pages to the site."""
    from mkdocs.structure.files import File

    for path, text in pages().items():
        files.append(File.generated(config, path, content=text))
    return files


_ROLE = re.compile(r":(?:func|class|data|mod|meth|attr|exc|obj):<code>~?")


def on_page_content(html, **kwargs):
    """Show the docstrings' Sphinx roles (``:func:`x` ``, ``:class:`~a.B` ``) as plain code."""
    return _ROLE.sub("<code>", html)


if __name__ == "__main__":
    target = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "generated-docs")
    for path, text in pages().items():
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_text(text)
    print(f"{len(pages())} pages in {target}")

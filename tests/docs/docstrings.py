"""Reads the public API of ``src/batsnn`` and the parameters its docstrings document.

The docstring convention (Google style, as the package writes it):

- every public module, function, class and public method has a docstring;
- a docstring that lists parameters does so in an ``Args:`` section, one entry per line
  at one indentation, ``name: text`` (several names that share a text as
  ``a, b: text``; ``*args``/``**kwargs`` with or without their stars), continuation lines
  indented deeper; the names it lists must be parameters of the signature (``self`` and
  ``cls`` aside), and when the section is there it lists every parameter;
- a docstring without an ``Args:`` section describes the parameters in its prose.

A module is public when no part of its dotted name starts with ``_`` (``__init__`` is the
package). Its public names are ``__all__`` when it defines one, else the names that do not
start with ``_`` and are defined in the module itself.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import re

import batsnn

#: optional dependencies -> the modules that import them at import time (skipped, and only
#: those, when the dependency is missing)
OPTIONAL = {"triton": "batsnn.ops.lif.cuda"}

SECTION = re.compile(r"^(\s*)([A-Z][A-Za-z ]*):\s*$")


def public_modules() -> list[str]:
    """Dotted names of every public module of the batsnn package, sorted: every ``.py``
    file under the package's directory (namespace folders such as ``ops/`` included)."""
    root = pathlib.Path(batsnn.__file__).parent
    names = []
    for path in root.rglob("*.py"):
        parts = ("batsnn",) + path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(part.startswith("_") for part in parts):
            names.append(".".join(parts))
    return sorted(names)


def public_names(module) -> list[str]:
    """The public names of ``module``: its ``__all__``, else the names without a leading
    underscore that the module defines itself (not imports)."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    out = []
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and \
                getattr(obj, "__module__", None) == module.__name__:
            out.append(name)
    return out


def documented_objects():
    """``(qualified name, object, class)`` for every public module, and every public function,
    class and method (defined in the class itself) of the public modules (``class``: the
    class of a method, else ``None``); an object reached under several names is listed
    once, under the module that defines it."""
    seen = set()
    for modname in public_modules():
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name in OPTIONAL and modname.startswith(OPTIONAL[e.name]):
                continue  # the GPU kernels, where Triton is not installed
            raise
        yield modname, module, None
        for name in public_names(module):
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", modname) != modname and \
                    getattr(obj, "__module__", "").startswith("batsnn"):
                continue  # documented where it is defined
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            yield f"{modname}.{name}", obj, None
            if inspect.isclass(obj):
                for mname, meth in vars(obj).items():
                    if mname.startswith("_"):
                        continue
                    if isinstance(meth, (staticmethod, classmethod)):
                        meth = meth.__func__
                    if inspect.isfunction(meth):
                        yield f"{modname}.{name}.{mname}", meth, obj


def own_docstring(obj, owner=None) -> str | None:
    """The docstring of ``obj``: a class's own (a dataclass's generated signature text and
    a base class's docstring do not count); a method's own or, when it overrides a
    documented method of a base class (``forward``, a callback's ``on_epoch_end``), that
    one's (``owner``: the class of a method)."""
    if owner is not None and not obj.__doc__:
        for base in owner.__mro__[1:]:
            doc = getattr(base.__dict__.get(obj.__name__), "__doc__", None)
            if doc and doc.strip():
                return doc
        return None
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if inspect.isclass(obj) and doc and doc.startswith(obj.__name__ + "("):
        return None  # written by @dataclass
    return doc if doc and doc.strip() else None


def args_section(doc: str) -> list[str] | None:
    """The parameter names an ``Args:`` section of ``doc`` lists (``None``: no section)."""
    lines = inspect.cleandoc(doc).splitlines()
    for i, line in enumerate(lines):
        m = SECTION.match(line)
        if m and m.group(2) == "Args":
            base = len(m.group(1))
            names, entry = [], None
            for item in lines[i + 1:]:
                if not item.strip():
                    continue
                indent = len(item) - len(item.lstrip())
                if indent <= base:
                    break
                if entry is None:
                    entry = indent
                if indent == entry:
                    head = item.strip().split(":", 1)[0]
                    head = re.sub(r"\s*\(.*\)\s*$", "", head)  # "name (type)"
                    names += [n.strip().lstrip("*") for n in head.split(",") if n.strip()]
            return names
    return None


def signature_names(obj) -> list[str] | None:
    """The parameter names of ``obj``'s signature (``self``/``cls`` dropped; ``None`` when
    there is no signature to read)."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    return [p for p in sig.parameters if p not in ("self", "cls")]


def problems(known_missing: frozenset = frozenset()) -> list[str]:
    """Every breach of the convention, one line each: ``NAME: no docstring`` (unless NAME
    is in ``known_missing``) and ``NAME: Args lists X, the signature has Y``."""
    out = []
    for qualname, obj, owner in documented_objects():
        doc = own_docstring(obj, owner)
        if doc is None:
            if qualname not in known_missing:
                out.append(f"{qualname}: no docstring")
            continue
        if inspect.ismodule(obj):
            continue
        listed = args_section(doc)
        if listed is None and inspect.isclass(obj):
            init = obj.__dict__.get("__init__")
            if init is not None and init.__doc__:
                listed = args_section(init.__doc__)
        if listed is None:
            continue
        sig = signature_names(obj)
        if sig is None:
            continue
        if set(listed) != set(sig):
            extra = sorted(set(listed) - set(sig))
            missing = [n for n in sig if n not in listed]
            out.append(f"{qualname}: Args lists {extra or 'nothing'} not in the signature, "
                       f"leaves out {missing or 'nothing'}")
    return out

"""The public surface (STYLE.md habits 11 and 13): what each package exports, that it is
documented, that ``medledger --help`` lists the commands, and that the README's quick start
is the commands CI runs."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app

REPO = Path(__file__).resolve().parents[1]
PUBLIC_PACKAGES = ["codec", "crypto", "merkle", "ledger", "store", "state", "standards",
                   "apps", "node", "api", "client"]
COMMANDS = ["init", "up", "verify", "status", "keys", "anchor", "tx", "state", "net", "bench"]
QUICK_START = ["make run", "make test"]


def package(name: str) -> ModuleType:
    return importlib.import_module(f"medledger.{name}")


@cache
def _class_nodes(module: str) -> dict[str, ast.ClassDef]:
    """Classes by qualified name in ``module``'s source, to read docstrings as written
    (``cls.__doc__`` of a dataclass or NamedTuple is a generated signature, not a doc)."""
    source = Path(sys.modules[module].__file__ or "").read_text(encoding="utf-8")
    found: dict[str, ast.ClassDef] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                found[prefix + node.name] = node
                visit(node.body, f"{prefix}{node.name}.")

    visit(ast.parse(source).body, "")
    return found


def has_docstring(obj: Any) -> bool:
    if inspect.isclass(obj):
        node = _class_nodes(obj.__module__).get(obj.__qualname__)
        return node is not None and bool((ast.get_docstring(node) or "").strip())
    return bool((inspect.unwrap(obj).__doc__ or "").strip())


def defined_in_medledger(obj: Any) -> bool:
    return ((inspect.isclass(obj) or inspect.isroutine(obj))
            and (getattr(obj, "__module__", None) or "").split(".")[0] == "medledger")


# --- __all__ ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_package_declares_all(name: str) -> None:
    exported = getattr(package(name), "__all__", None)
    assert isinstance(exported, (list, tuple)) and exported, \
        f"medledger.{name} has no __all__ (STYLE.md habit 11)"
    assert all(isinstance(n, str) for n in exported), f"medledger.{name}.__all__: not all str"
    duplicates = sorted({n for n in exported if list(exported).count(n) > 1})
    assert not duplicates, f"medledger.{name}.__all__ lists twice: {duplicates}"


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_every_exported_name_resolves(name: str) -> None:
    module = package(name)
    missing = [n for n in getattr(module, "__all__", ()) if not hasattr(module, n)]
    assert not missing, f"medledger.{name}.__all__ names what the package lacks: {missing}"


@pytest.mark.parametrize("name", PUBLIC_PACKAGES)
def test_exported_classes_and_functions_have_docstrings(name: str) -> None:
    module = package(name)
    undocumented = [
        f"{n} ({obj.__module__}.{obj.__qualname__})"
        for n in getattr(module, "__all__", ())
        if defined_in_medledger(obj := getattr(module, n, None)) and not has_docstring(obj)
    ]
    assert not undocumented, (f"medledger.{name} exports classes or functions without a "
                              f"docstring of their own: {undocumented}")


def test_docstring_check_ignores_generated_dataclass_docs() -> None:
    from dataclasses import dataclass

    @dataclass
    class Bare:
        x: int

    assert Bare.__doc__  # dataclass made one up ...
    assert not has_docstring(Bare)  # ... which does not count
    assert has_docstring(package("ledger").Transaction)


# --- the command line ------------------------------------------------------------------------
def help_commands(text: str) -> list[str]:
    """Command names from ``--help`` output: rich panels (``│ name   Help``) or plain click
    (``  name   Help``), in the part after the "Commands" heading."""
    _, sep, rest = text.partition("Commands")
    assert sep, f"no Commands section in --help:\n{text}"
    return re.findall(r"^[│|]?\s{1,3}([a-z][a-z0-9_-]*)\s{2,}\S", rest, flags=re.MULTILINE)


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(app, ["--help"], prog_name="medledger",
                                env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    listed = help_commands(result.output)
    missing = [c for c in COMMANDS if c not in listed]
    assert not missing, f"`medledger --help` does not list {missing}; it lists {listed}"


# --- the README ------------------------------------------------------------------------------
def quick_start_section(readme: str) -> str:
    """The text under the README's "Quick start" heading, up to the next heading of the same
    or a higher level (``#`` lines inside code blocks are not headings)."""
    level, fenced, lines = 0, False, []
    for line in readme.splitlines():
        heading = None if fenced else re.match(r"(#+)\s+(.*)", line)
        fenced ^= line.lstrip().startswith("```")
        if heading and level and len(heading.group(1)) <= level:
            break
        if level:
            lines.append(line)
        elif heading and re.match(r"quick\s*start\b", heading.group(2), flags=re.IGNORECASE):
            level = len(heading.group(1))
    assert level, "README.md has no 'Quick start' heading"
    return "\n".join(lines) + "\n"


def code_blocks(markdown: str) -> list[list[str]]:
    """The commands in each fenced code block: a ``$ `` prompt, ``# comments`` and blank
    lines dropped, ``\\`` continuations joined."""
    blocks = re.findall(r"^\s*```[^\n]*\n(.*?)^\s*```", markdown, flags=re.MULTILINE | re.DOTALL)
    out = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        lines = [" ".join(re.sub(r"(^|\s)#.*$", "", line).split()).removeprefix("$ ")
                 for line in joined.splitlines()]
        out.append([line for line in lines if line])
    return out


def test_quick_start_parser() -> None:
    readme = ("# medledger\n\n## Quick start\n\n```sh\n$ make run   # serve\n# a comment\n"
              "make test\n```\n\nThen:\n\n```\nmedledger status \\\n    --home x\n```\n\n"
              "## Next\n\n```\nmake bench\n```\n")
    assert code_blocks(quick_start_section(readme)) == [QUICK_START,
                                                        ["medledger status --home x"]]


def readme_text() -> str:
    readme = REPO / "README.md"
    assert readme.exists(), "README.md is missing: the quick start lives there"
    return readme.read_text(encoding="utf-8")


def test_readme_quick_start_is_make_run_and_make_test() -> None:
    blocks = code_blocks(quick_start_section(readme_text()))
    assert blocks, "the README's quick start has no code block"
    assert blocks[0] == QUICK_START, \
        f"the README's quick start shows {blocks[0]}, want exactly {QUICK_START}"
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for command in QUICK_START:
        target = command.split()[1]
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), \
            f"README says `{command}` but the Makefile has no `{target}` target"


def test_readme_names_only_real_commands() -> None:
    named = set(re.findall(r"(?:^\s*|`|bin/)medledger (\w[\w-]*)", readme_text(),
                           flags=re.MULTILINE))
    result = CliRunner().invoke(app, ["--help"], prog_name="medledger",
                                env={"COLUMNS": "120", "NO_COLOR": "1"})
    unknown = sorted(named - set(help_commands(result.output)))
    assert not unknown, f"README.md shows `medledger` commands the CLI lacks: {unknown}"


def _named_commands(readme: str) -> set[tuple[str, ...]]:
    """Every ``medledger <command> [<subcommand>] ...`` the README names, with ``a|b``
    alternatives (``net up\\|down``) spread out; placeholders and options end a name."""
    found: set[tuple[str, ...]] = set()
    for match in re.finditer(r"medledger((?: [a-z][a-z0-9-]*(?:\\?\|[a-z][a-z0-9-]*)*)+)",
                             readme):
        words = match.group(1).split()
        options: list[list[str]] = [re.split(r"\\?\|", w) for w in words[:3]]
        for first in options[0]:
            if len(options) == 1:
                found.add((first,))
            for second in options[1] if len(options) > 1 else []:
                found.add((first, second))
                for third in options[2] if len(options) > 2 else []:
                    found.add((first, second, third))
    return found


def test_every_command_the_readme_names_exists() -> None:
    import click
    import typer

    root = typer.main.get_command(app)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    named = _named_commands(readme)
    assert ("identity", "member", "register") in named and ("events", "watch") in named
    missing = []
    for words in sorted(named):
        command: click.Command = root
        for word in words:
            if not isinstance(command, click.Group):
                break  # the rest are arguments (`anchor add DIGEST`)
            sub = command.commands.get(word)
            if sub is None:
                missing.append(" ".join(words))
                break
            command = sub
    assert not missing, f"the README names commands the CLI lacks: {missing}"

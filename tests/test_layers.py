"""Layer rules (DESIGN.md, "Layers"; STYLE.md habit 15): imports point downward only.

Every module under ``src/medledger`` is parsed with :mod:`ast` (nothing is imported), and
each of its imports of ``medledger.*`` -- absolute or relative, at module level or inside a
function -- is mapped to the subpackage it lands in. A subpackage may import its own modules
and any subpackage of a lower rank; never one of a higher rank, and never a peer of the same
rank unless the pair is listed in :data:`PEER_IMPORTS_ALLOWED` with its reason.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "medledger"

#: ``medledger/__init__.py`` and ``medledger/__main__.py`` are this name; they sit with cli.
TOP = "<top>"

#: Layer rank of each subpackage, lowest first, following DESIGN.md. Packages the design
#: names but the code does not have (blobs, consensus, p2p, standards, web) are placed
#: now, so that adding one does not need this table first.
RANK: dict[str, int] = {
    "codec": 0,
    "crypto": 1, "merkle": 1,
    "ledger": 2, "store": 2,
    "state": 3, "blobs": 3,
    "consensus": 4, "p2p": 4, "standards": 4,
    "apps": 5,
    "node": 6,
    "api": 7, "client": 7,
    "cli": 8, "web": 8, TOP: 8,
}

#: Imports between two peers of the same rank that are deliberate, with the reason. Each
#: entry is (importer, imported).
PEER_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {
    (TOP, "cli"): "medledger/__main__.py is `python -m medledger`: it runs the CLI",
}

#: Specific rules, each a named scenario: (package, packages it must not import).
FORBIDDEN: dict[str, tuple[str, frozenset[str]]] = {
    "apps know nothing of consensus, networking, the node, the edges or storage engines": (
        "apps", frozenset({"consensus", "p2p", "node", "api", "client", "cli", "web", "store",
                           TOP}),
    ),
    "state knows nothing of the apps": ("state", frozenset({"apps", "standards"})),
    "consensus knows nothing of healthcare and does no I/O": (
        "consensus", frozenset({"apps", "standards", "store", "p2p", "blobs"}),
    ),
}

#: Packages that may import only the packages listed (besides themselves).
ONLY: dict[str, tuple[str, frozenset[str]]] = {
    "codec imports nothing from medledger": ("codec", frozenset()),
    "crypto imports only codec": ("crypto", frozenset({"codec"})),
}


@dataclass(frozen=True)
class Import:
    """One import of a medledger module: where it is written and what it reaches."""

    file: Path
    line: int
    text: str
    target: str  # the subpackage imported, or TOP

    def __str__(self) -> str:
        return f"{self.file.relative_to(SRC.parent)}:{self.line}: `{self.text}`"


def package_of_file(path: Path) -> str:
    """The subpackage a source file belongs to (TOP for medledger/__init__ and __main__)."""
    parts = path.relative_to(ROOT).parts
    return TOP if len(parts) == 1 else parts[0]


def module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def subpackage(dotted: list[str], name: str | None = None) -> str:
    """The subpackage reached by ``from <dotted> import <name>`` (or ``import <dotted>``)."""
    if len(dotted) >= 2:
        return dotted[1]
    # `import medledger` or `from medledger import x`: x may itself be a subpackage
    return name if name is not None and (ROOT / name).is_dir() else TOP


def imports_in(path: Path, source: str | None = None) -> list[Import]:
    """The medledger imports in the module at ``path`` (parsed from ``source`` if given)."""
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                dotted = alias.name.split(".")
                if dotted[0] == "medledger":
                    found.append(Import(path, node.lineno, ast.unparse(node),
                                        subpackage(dotted)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                here = module_name(path)
                package = here if path.name == "__init__.py" else here[:-1]
                base = package[: len(package) - (node.level - 1)]
                dotted = base + (node.module.split(".") if node.module else [])
            else:
                dotted = (node.module or "").split(".")
            if dotted[:1] == ["medledger"]:
                for alias in node.names:  # `from medledger import codec, crypto`: both
                    found.append(Import(path, node.lineno, ast.unparse(node),
                                        subpackage(dotted, alias.name)))
    return found


@cache
def all_imports() -> tuple[Import, ...]:
    return tuple(i for path in sorted(ROOT.rglob("*.py")) for i in imports_in(path))


def cross_package(importer: str) -> list[Import]:
    return [i for i in all_imports()
            if package_of_file(i.file) == importer and i.target != importer]


def report(bad: list[Import], rule: str) -> str:
    return f"{rule}; offending imports:\n" + "\n".join(f"  {i} -> {i.target}" for i in bad)


# --- the parser itself -----------------------------------------------------------------------
def test_the_walk_sees_the_source_tree() -> None:
    assert (ROOT / "__init__.py").is_file()
    files = list(ROOT.rglob("*.py"))
    assert len(files) > 20
    # a known import at module level and a known import inside a function are both seen
    texts = {(i.file.name, i.target) for i in all_imports()}
    assert ("tx.py", "crypto") in texts
    assert ("main.py", "api") in texts  # `from medledger.api import create_app` in a function


def test_relative_and_package_imports_resolve() -> None:
    source = ("from . import tx\nfrom ..crypto import verify\nfrom medledger import codec\n"
              "import medledger.merkle.log\nimport medledger\n"
              "def f():\n    from medledger.node import Node\n")
    probe = ROOT / "ledger" / "probe.py"  # never written: the source is passed in
    got = [i.target for i in imports_in(probe, source)]
    assert got == ["ledger", "crypto", "codec", "merkle", TOP, "node"]


def test_every_package_has_a_rank() -> None:
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    unranked = sorted(packages - set(RANK))
    assert not unranked, (f"give these packages a layer rank in RANK (tests/test_layers.py) "
                          f"following DESIGN.md: {unranked}")


# --- the general rule: downward only, no peer imports ----------------------------------------
@pytest.mark.parametrize("importer", sorted(p for p in RANK if (ROOT / p).is_dir()) + [TOP])
def test_imports_point_downward_only(importer: str) -> None:
    upward = [i for i in cross_package(importer) if RANK.get(i.target, 99) > RANK[importer]]
    assert not upward, report(upward, f"{importer} (rank {RANK[importer]}) imports a higher layer")


@pytest.mark.parametrize("importer", sorted(p for p in RANK if (ROOT / p).is_dir()) + [TOP])
def test_peers_do_not_import_each_other(importer: str) -> None:
    peers = [i for i in cross_package(importer)
             if RANK.get(i.target) == RANK[importer]
             and (importer, i.target) not in PEER_IMPORTS_ALLOWED]
    assert not peers, report(peers, f"{importer} imports a peer of the same rank "
                                    f"{RANK[importer]}")


def test_api_and_client_are_independent() -> None:
    both = [i for i in cross_package("api") if i.target == "client"]
    both += [i for i in cross_package("client") if i.target == "api"]
    assert not both, report(both, "api and client must not import each other")


# --- the specific rules ----------------------------------------------------------------------
@pytest.mark.parametrize("rule", sorted(FORBIDDEN))
def test_forbidden_imports(rule: str) -> None:
    importer, forbidden = FORBIDDEN[rule]
    bad = [i for i in cross_package(importer) if i.target in forbidden]
    assert not bad, report(bad, rule)


@pytest.mark.parametrize("rule", sorted(ONLY))
def test_only_allowed_imports(rule: str) -> None:
    importer, allowed = ONLY[rule]
    bad = [i for i in cross_package(importer) if i.target not in allowed]
    assert not bad, report(bad, rule)


# --- apps are self-contained: nothing outside apps/ names one ---------------------------------
APPS = ROOT / "apps"


def app_packages() -> list[str]:
    """The apps this build has: each a package under ``medledger/apps/``."""
    return sorted(p.name for p in APPS.iterdir() if (p / "__init__.py").is_file())


def named_apps(path: Path) -> list[tuple[int, str]]:
    """(line, app) for each import in ``path`` that reaches a specific app's package:
    ``import medledger.apps.x``, ``from medledger.apps.x import y`` or
    ``from medledger.apps import x``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    apps, found = set(app_packages()), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name.split(".") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            base = node.module.split(".")
            targets = [base + [alias.name] for alias in node.names]
        else:
            continue
        for dotted in targets:
            if dotted[:2] == ["medledger", "apps"] and len(dotted) > 2 and dotted[2] in apps:
                found.append((node.lineno, dotted[2]))
    return found


def test_the_apps_are_found() -> None:
    assert {"identity", "anchor", "governance"} <= set(app_packages())
    probe = ROOT / "apps" / "__init__.py"
    assert {app for _, app in named_apps(probe)} >= {"identity", "anchor", "governance"}


def test_no_module_outside_apps_names_a_specific_app() -> None:
    bad = [f"{path.relative_to(SRC.parent)}:{line}: imports app {app!r}"
           for path in sorted(ROOT.rglob("*.py"))
           if package_of_file(path) != "apps"
           for line, app in named_apps(path)]
    assert not bad, ("the node, the API, the SDK and the command line reach apps through "
                     "the registry (medledger.apps.default_registry()), never by name:\n"
                     + "\n".join(bad))


def test_app_routes_and_commands_stay_below_the_edges() -> None:
    """An app's routes and commands get the node and the CLI through apps/host.py's
    interfaces; they never import the api, node, client or cli packages."""
    bad = [i for i in cross_package("apps") if i.target in {"api", "node", "client", "cli"}]
    assert not bad, report(bad, "apps reach the edges only through medledger.apps.host")

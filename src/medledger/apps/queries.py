"""What the apps' routes share: the pieces of their OpenAPI schemas, the ``prove`` and page
parameters, and the answers of a single entry and of a page of entries.

Every app's router (``apps/<app>/routes.py``) is built from these, so that each route module
holds only its own paths, schemas and state keys::

    @api.get("/orgs/{org_id}", responses={200: answer_response(ORG, "..."), **NOT_FOUND})
    async def org(org_id: ..., prove: Prove = False) -> Any:
        return entry(host, org_key(org_id), prove, f"no organisation {org_id}")

Answers follow the host's shared schemas (``#/components/schemas/Answer``, ``ListAnswer``
and ``Error``); an app types only the ``value``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Query

from medledger.apps.host import QueryError, QueryHost
from medledger.apps.lists import MAX_SEQ

__all__ = ["ERROR", "HEX32", "HEX32_PATTERN", "MAX_PAGE", "NOT_FOUND", "NULL", "STR", "Limit",
           "Prove", "after_param", "answer_response", "entry", "json_response", "maybe",
           "not_found", "obj", "scan_page", "start_param"]

HEX32_PATTERN = "^[0-9a-f]{64}$"
"""32 bytes as lower-case hex: keys, digests, ids."""
MAX_PAGE = 100
"""The most entries one page of a list holds."""

STR: dict[str, Any] = {"type": "string"}
NULL: dict[str, Any] = {"type": "null"}
HEX32: dict[str, Any] = {"type": "string", "pattern": HEX32_PATTERN}
ERROR: dict[str, Any] = {"$ref": "#/components/schemas/Error"}


# schemas ------------------------------------------------------------------------------------
def maybe(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null."""
    return {"anyOf": [schema, NULL]}


def obj(**fields: Any) -> dict[str, Any]:
    """An object with exactly ``fields`` (each one required), in that order."""
    return {"type": "object", "required": list(fields), "properties": fields}


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An OpenAPI response whose JSON body follows ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def answer_response(value: dict[str, Any], description: str) -> dict[str, Any]:
    """A response whose body is the host's ``Answer`` with its ``value`` typed as ``value``
    (or null: absent, and with ``prove`` proven so)."""
    return json_response({"allOf": [{"$ref": "#/components/schemas/Answer"},
                                     {"properties": {"value": maybe(value)}}]}, description)


def not_found(absent: str = "absent") -> dict[int, dict[str, Any]]:
    """The 404 of a single entry's route: ``absent`` (without ``prove``), or no block yet."""
    return {404: json_response(ERROR, f"not_found: {absent} (without `prove`), or no block "
                                      "committed yet")}


NOT_FOUND = not_found()
"""``responses={..., **NOT_FOUND}`` of a single entry's route."""


# parameters ---------------------------------------------------------------------------------
Prove = Annotated[bool, Query(description="answer with the proof and the certified header")]
"""``prove: Prove = False``: answer with the sparse Merkle proof and the certified header."""
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
"""``limit: Limit = 20``: how many entries a page holds, 1 to :data:`MAX_PAGE`."""


def after_param(pattern: str) -> Any:
    """The type of an ``after`` parameter (``after: OrgAfter = None``): only the entries
    whose id, matching ``pattern``, comes after this one."""
    return Annotated[str | None, Query(pattern=pattern, description="only ids after this one")]


def start_param(description: str) -> Any:
    """The type of a ``start`` parameter (``start: EvidenceStart = 1``): the sequence
    number, from 1, of a list's first item on the page."""
    return Annotated[int, Query(ge=1, le=MAX_SEQ, description=description)]


# answers ------------------------------------------------------------------------------------
def entry(host: QueryHost, key: str, prove: bool, missing: str) -> dict[str, Any]:
    """The answer for state key ``key`` (``host.answer``); without ``prove``, a 404 whose
    message is ``missing`` when the entry is absent (with it, the absence is proven)."""
    answer = host.answer(key, prove=prove)
    if not prove and answer["value"] is None:
        raise QueryError(404, "not_found", missing)
    return answer


def scan_page(host: QueryHost, prefix: str, after: str | None, limit: int, name: str,
              key: Callable[[str], str]) -> dict[str, Any]:
    """A page of the entries under ``prefix`` in id order: ``{name: [up to limit values],
    "next": the last one's "id" when there are more, else None}``; ``after`` is an id,
    ``key`` the state key of an id."""
    found = host.scan(prefix, after=None if after is None else key(after), limit=limit + 1)
    page = [value for _, value in found[:limit]]
    more = len(found) > limit
    return {name: page, "next": page[-1]["id"] if more and page else None}

"""The identity app's queries, served under ``/v1/identity``.

=======================================  ===============================================
``GET /orgs?after=&limit=``              organisations in id order, a page at a time
``GET /orgs/{org_id}``                   one organisation
``GET /orgs/{org_id}/members``           the keys it registered (the provable list
                                         :data:`~medledger.apps.identity.MEMBERS`)
``GET /keys/{public_key}``               a registered key: whose, its role and status
``GET /patients/{pseudonym}``            a patient, by pseudonym
=======================================  ===============================================

Each single entry and the members list take ``?prove=true``: the answer then carries the
sparse Merkle proof (of the value, or of its absence) and the certified header of the tip,
so a client checks it with ``medledger.client.verify_state_answer`` (or
``verify_list_answer``) without trusting the node. Without ``prove``, an absent entry is a
404; with it, the absence is answered (``value`` null) and proven.

Answers follow the host's shared schemas (``#/components/schemas/Answer`` and
``ListAnswer``), with the value typed here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from medledger.apps.host import QueryError, QueryHost
from medledger.apps.identity import (
    MEMBER_ROLES,
    MEMBERS,
    ORG_ROLES,
    PREFIX,
    key_key,
    org_key,
    patient_key,
)
from medledger.apps.lists import MAX_SEQ

__all__ = ["ORG_ID_PATTERN", "router"]

ORG_ID_PATTERN = "^[a-z0-9][a-z0-9-]{1,62}$"
KEY_PATTERN = "^[0-9a-f]{64}$"
PSEUDONYM_PATTERN = "^[0-9a-f]{32}$"
MAX_PAGE = 100

_ORGS = f"{PREFIX}org/"
_STR = {"type": "string"}
_NULL = {"type": "null"}
_HEX32 = {"type": "string", "pattern": KEY_PATTERN}


def _maybe(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, _NULL]}


def _obj(**fields: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(fields), "properties": fields}


ORG = _obj(id=_STR, name=_STR, role={"enum": list(ORG_ROLES)},
           status=_STR)
KEY = _obj(kind={"enum": ["admin", "member", "patient"]}, org=_maybe(_STR),
           role={"enum": [*MEMBER_ROLES, "patient"]},
           status={"enum": ["active", "suspended", "rotated"]}, name=_maybe(_STR),
           enc_key=_maybe(_STR), enc_suite=_maybe(_STR),
           replaced_by=_maybe(_HEX32), pseudonym=_maybe(_STR))
PATIENT = _obj(key=_HEX32, enc_key=_STR, enc_suite=_STR,
               height={"type": "integer", "minimum": 1})


def _answer(value: dict[str, Any], description: str) -> dict[str, Any]:
    """A response whose body is the host's ``Answer`` with ``value`` typed."""
    schema = {"allOf": [{"$ref": "#/components/schemas/Answer"},
                        {"properties": {"value": _maybe(value)}}]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_NOT_FOUND = {404: {"description": "not_found: absent (without `prove`), or no block "
                                   "committed yet", **_ERROR}}

Prove = Annotated[bool, Query(description="answer with the proof and the certified header")]


def router(host: QueryHost) -> APIRouter:
    """The identity app's routes over ``host``."""
    api = APIRouter()

    def entry(key: str, prove: bool, what: str) -> dict[str, Any]:
        answer = host.answer(key, prove=prove)
        if not prove and answer["value"] is None:
            raise QueryError(404, "not_found", f"no {what}")
        return answer

    @api.get("/orgs", summary="Organisations, in id order",
             responses={200: _json(_obj(
                 orgs={"type": "array", "items": ORG},
                 next=_maybe({"type": "string", "pattern": ORG_ID_PATTERN})),
                 "a page of organisations; `next` is the `after` of the next page")})
    async def orgs(
        after: Annotated[str | None, Query(pattern=ORG_ID_PATTERN,
                                           description="only ids after this one")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    ) -> Any:
        """Every organisation, admitted at genesis or by governance, without proofs (each
        one is provable through ``/orgs/{org_id}?prove=true``)."""
        found = host.scan(_ORGS, after=None if after is None else org_key(after),
                          limit=limit + 1)
        page = [value for _, value in found[:limit]]
        more = len(found) > limit
        return {"orgs": page, "next": page[-1]["id"] if more and page else None}

    @api.get("/orgs/{org_id}", summary="An organisation",
             responses={200: _answer(ORG, "the organisation (null: absent, proven)"),
                        **_NOT_FOUND})
    async def org(org_id: Annotated[str, Path(pattern=ORG_ID_PATTERN)],
                  prove: Prove = False) -> Any:
        """``{"id", "name", "role", "status"}`` at state key ``identity/org/<org_id>``."""
        return entry(org_key(org_id), prove, f"organisation {org_id}")

    @api.get("/orgs/{org_id}/members", summary="The keys an organisation registered",
             responses={200: _json({"$ref": "#/components/schemas/ListAnswer"},
                                   "a page of the list, with its count"),
                        **_NOT_FOUND})
    async def members(
        org_id: Annotated[str, Path(pattern=ORG_ID_PATTERN)],
        start: Annotated[int, Query(ge=1, le=MAX_SEQ, description="the first item, from 1")
                         ] = 1,
        limit: Annotated[int, Query(ge=0, le=MAX_PAGE)] = MAX_PAGE,
        prove: Prove = False,
    ) -> Any:
        """Its keys (hex) in the order they were registered, its admins first: the
        provable list ``identity/members/<org_id>``. With ``prove=true`` each item and the
        count carry a proof, so leaving a key out is caught
        (``medledger.client.verify_list_answer(answer, ..., "identity", "members",
        org_id, start, limit)``). An unknown organisation has an empty list."""
        return host.list_answer(MEMBERS, org_id, start, limit, prove=prove)

    @api.get("/keys/{public_key}", summary="A registered signing key",
             responses={200: _answer(KEY, "the key's entry (null: absent, proven)"),
                        **_NOT_FOUND})
    async def key(public_key: Annotated[str, Path(pattern=KEY_PATTERN)],
                  prove: Prove = False) -> Any:
        """Whose key it is (``kind``, ``org``, ``role``), whether it may sign
        (``status``), its encryption key, and the key that replaced it after a rotation."""
        return entry(key_key(public_key), prove, f"registered key {public_key}")

    @api.get("/patients/{pseudonym}", summary="A patient, by pseudonym",
             responses={200: _answer(PATIENT, "the patient (null: absent, proven)"),
                        **_NOT_FOUND})
    async def patient(pseudonym: Annotated[str, Path(pattern=PSEUDONYM_PATTERN)],
                      prove: Prove = False) -> Any:
        """The patient's signing key, encryption key and the height they registered at."""
        return entry(patient_key(pseudonym), prove, f"patient {pseudonym}")

    return api

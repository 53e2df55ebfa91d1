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

from medledger.apps.host import QueryHost
from medledger.apps.identity import (
    MEMBER_ROLES,
    MEMBERS,
    ORG_ROLES,
    PREFIX,
    key_key,
    org_key,
    patient_key,
)
from medledger.apps.queries import (
    HEX32,
    HEX32_PATTERN,
    MAX_PAGE,
    NOT_FOUND,
    STR,
    Limit,
    Prove,
    after_param,
    answer_response,
    entry,
    json_response,
    maybe,
    obj,
    scan_page,
    start_param,
)

__all__ = ["ORG_ID_PATTERN", "router"]

ORG_ID_PATTERN = "^[a-z0-9][a-z0-9-]{1,62}$"
KEY_PATTERN = HEX32_PATTERN
PSEUDONYM_PATTERN = "^[0-9a-f]{32}$"

_ORGS = f"{PREFIX}org/"

ORG = obj(id=STR, name=STR, role={"enum": list(ORG_ROLES)}, status=STR)
KEY = obj(kind={"enum": ["admin", "member", "patient"]}, org=maybe(STR),
          role={"enum": [*MEMBER_ROLES, "patient"]},
          status={"enum": ["active", "suspended", "rotated"]}, name=maybe(STR),
          enc_key=maybe(STR), enc_suite=maybe(STR), replaced_by=maybe(HEX32),
          pseudonym=maybe(STR))
PATIENT = obj(key=HEX32, enc_key=STR, enc_suite=STR, height={"type": "integer", "minimum": 1})

OrgAfter = after_param(ORG_ID_PATTERN)
MemberStart = start_param("the first item, from 1")


def router(host: QueryHost) -> APIRouter:
    """The identity app's routes over ``host``."""
    api = APIRouter()

    @api.get("/orgs", summary="Organisations, in id order",
             responses={200: json_response(obj(
                 orgs={"type": "array", "items": ORG},
                 next=maybe({"type": "string", "pattern": ORG_ID_PATTERN})),
                 "a page of organisations; `next` is the `after` of the next page")})
    async def orgs(after: OrgAfter = None, limit: Limit = 20) -> Any:
        """Every organisation, admitted at genesis or by governance, without proofs (each
        one is provable through ``/orgs/{org_id}?prove=true``)."""
        return scan_page(host, _ORGS, after, limit, "orgs", org_key)

    @api.get("/orgs/{org_id}", summary="An organisation",
             responses={200: answer_response(ORG, "the organisation (null: absent, proven)"),
                        **NOT_FOUND})
    async def org(org_id: Annotated[str, Path(pattern=ORG_ID_PATTERN)],
                  prove: Prove = False) -> Any:
        """``{"id", "name", "role", "status"}`` at state key ``identity/org/<org_id>``."""
        return entry(host, org_key(org_id), prove, f"no organisation {org_id}")

    @api.get("/orgs/{org_id}/members", summary="The keys an organisation registered",
             responses={200: json_response({"$ref": "#/components/schemas/ListAnswer"},
                                           "a page of the list, with its count"),
                        **NOT_FOUND})
    async def members(
        org_id: Annotated[str, Path(pattern=ORG_ID_PATTERN)],
        start: MemberStart = 1,
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
             responses={200: answer_response(KEY, "the key's entry (null: absent, proven)"),
                        **NOT_FOUND})
    async def key(public_key: Annotated[str, Path(pattern=KEY_PATTERN)],
                  prove: Prove = False) -> Any:
        """Whose key it is (``kind``, ``org``, ``role``), whether it may sign
        (``status``), its encryption key, and the key that replaced it after a rotation."""
        return entry(host, key_key(public_key), prove, f"no registered key {public_key}")

    @api.get("/patients/{pseudonym}", summary="A patient, by pseudonym",
             responses={200: answer_response(PATIENT, "the patient (null: absent, proven)"),
                        **NOT_FOUND})
    async def patient(pseudonym: Annotated[str, Path(pattern=PSEUDONYM_PATTERN)],
                      prove: Prove = False) -> Any:
        """The patient's signing key, encryption key and the height they registered at."""
        return entry(host, patient_key(pseudonym), prove, f"no patient {pseudonym}")

    return api

"""The records app's queries, served under ``/v1/records`` (read-only).

=================================================  ==========================================
``GET /records/{record_id}``                       a record's metadata
``GET /records/{record_id}/keys/{reader}``         the content key wrapped for a reader
``GET /digests/{digest}``                          the record whose ciphertext has a digest
``GET /patients/{pseudonym}/records``              the patient's record ids (provable list)
``GET /patients/{pseudonym}/grants``               the patient's grant ids (provable list)
``GET /patients/{pseudonym}/access``               the patient's access log (provable list)
``GET /grants/{grant_id}``                         a grant
``GET /emergencies/{emergency_id}``                an emergency access
``GET /emergencies/{emergency_id}/releases/{org}`` an organisation's share released for it
``GET /patients/{pseudonym}/emergency-key``        the patient's emergency key and shares
``GET /overdue?after=&limit=``                     emergencies flagged for want of a
                                                   justification and still unjustified
=================================================  ==========================================

Single entries take ``?prove=true`` (``medledger.client.verify_state_answer``); the lists take
``start``, ``limit`` and ``prove`` (``medledger.client.verify_list_answer(answer, ...,
"records", "by_patient"|"grants"|"access", pseudonym, start, limit)``), so a client proves
that none is left out. Without ``prove``, an absent entry is a 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from medledger.apps.host import QueryHost
from medledger.apps.lists import ProvableList
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
from medledger.apps.records.state import (
    ACCESS_LOG,
    BY_PATIENT,
    CATEGORIES,
    GRANTS,
    PREFIX,
    break_glass_key,
    digest_key,
    emergency_key,
    grant_key,
    overdue_key,
    reader_key,
    record_key,
    release_key,
)

__all__ = ["router"]

PSEUDONYM_PATTERN = "^[0-9a-f]{32}$"
ORG_PATTERN = "^[a-z0-9][a-z0-9-]{1,62}$"
INT = {"type": "integer", "minimum": 0}
AT = obj(height=INT, time=INT)
RECORD = obj(id=HEX32, patient=STR, category={"enum": list(CATEGORIES)}, digest=HEX32,
             size=INT, author=HEX32, org=STR, previous=maybe(HEX32), amended_by=maybe(HEX32),
             readers={"type": "array", "items": HEX32}, erased=maybe(AT), height=INT, time=INT)
READER_KEY = obj(wrapped=STR, grant=maybe(HEX32), height=INT)
GRANT = obj(id=HEX32, patient=STR, grantee=STR, categories={"type": "array", "items": STR},
            purpose=STR, expires=INT, records={"type": "array", "items": HEX32}, by=HEX32,
            revoked=maybe(obj(by=HEX32, height=INT, time=INT)), height=INT, time=INT)
EMERGENCY = obj(id=HEX32, patient=STR, reader=HEX32, org=STR, reason=STR,
                records={"type": "array", "items": HEX32}, time=INT, height=INT, due=INT,
                justification=maybe(obj(by=HEX32, text=STR, height=INT, time=INT)),
                flagged=maybe(AT))
ESCROW = obj(patient=STR, enc_key=STR, enc_suite=STR, reader=HEX32, threshold=INT,
             shares={"type": "object", "additionalProperties": obj(holder=HEX32, wrapped=STR)},
             by=HEX32, height=INT, time=INT)
RELEASE = obj(emergency=HEX32, org=STR, by=HEX32, to=HEX32, reader=HEX32, share=STR,
              height=INT, time=INT)
OVERDUE = obj(id=HEX32, patient=STR, org=STR, reader=HEX32, due=INT, flagged=AT)

Id = Annotated[str, Path(pattern=HEX32_PATTERN, description="64 hex")]
Pseudonym = Annotated[str, Path(pattern=PSEUDONYM_PATTERN, description="32 hex")]
Start = start_param("the first item, from 1")
PageLimit = Annotated[int, Query(ge=0, le=MAX_PAGE)]
OverdueAfter = after_param(HEX32_PATTERN)
LIST = {200: json_response({"$ref": "#/components/schemas/ListAnswer"},
                           "a page of the list, with its count")}


def router(host: QueryHost) -> APIRouter:
    """The records app's routes over ``host``."""
    api = APIRouter()
    _entries(api, host)
    _lists(api, host)

    @api.get("/overdue", summary="Emergencies past due without a justification",
             responses={200: json_response(obj(
                 overdue={"type": "array", "items": OVERDUE}, next=maybe(HEX32)),
                 "a page of overdue emergencies; `next` is the `after` of the next page")})
    async def overdue(after: OverdueAfter = None, limit: Limit = 20) -> Any:
        """What the regulator follows up: every emergency the end-block hook flagged 72
        hours (block time) after it, still without a justification, in id order."""
        return scan_page(host, f"{PREFIX}overdue/", after, limit, "overdue", overdue_key)

    return api


def _entries(api: APIRouter, host: QueryHost) -> None:
    @api.get("/records/{record_id}", summary="A record's metadata",
             responses={200: answer_response(RECORD, "the record (null: absent, proven)"),
                        **NOT_FOUND})
    async def record(record_id: Id, prove: Prove = False) -> Any:
        """Patient pseudonym, category, digest, size, author, versions, readers, erasure."""
        return entry(host, record_key(record_id), prove, f"no record {record_id}")

    @api.get("/records/{record_id}/keys/{reader}", summary="A reader's wrapped content key",
             responses={200: answer_response(READER_KEY, "the wrapped key (null: none, "
                                                         "proven)"), **NOT_FOUND})
    async def wrapped(record_id: Id, reader: Id, prove: Prove = False) -> Any:
        """The record's content key wrapped (HPKE) for ``reader``, and the grant that gave
        it (null: given when the record was added)."""
        return entry(host, reader_key(record_id, reader), prove,
                     f"record {record_id} has no key for {reader}")

    @api.get("/digests/{digest}", summary="The record of a ciphertext digest",
             responses={200: answer_response(HEX32, "the record id (null: none, proven)"),
                        **NOT_FOUND})
    async def by_digest(digest: Id, prove: Prove = False) -> Any:
        """The id of the record whose ciphertext has this SHA-256 (the blob store's index)."""
        return entry(host, digest_key(digest), prove, f"no record has digest {digest}")

    @api.get("/grants/{grant_id}", summary="A grant",
             responses={200: answer_response(GRANT, "the grant (null: absent, proven)"),
                        **NOT_FOUND})
    async def grant(grant_id: Id, prove: Prove = False) -> Any:
        """Grantee, categories, purpose, expiry (block time), and its revocation if any."""
        return entry(host, grant_key(grant_id), prove, f"no grant {grant_id}")

    @api.get("/emergencies/{emergency_id}", summary="An emergency access",
             responses={200: answer_response(EMERGENCY, "the emergency (null: absent, "
                                                        "proven)"), **NOT_FOUND})
    async def emergency(emergency_id: Id, prove: Prove = False) -> Any:
        """Who broke the glass, why (a v3 ActReason code), on which records, when the
        justification falls due, the justification, and whether it was flagged."""
        return entry(host, emergency_key(emergency_id), prove, f"no emergency {emergency_id}")

    @api.get("/emergencies/{emergency_id}/releases/{org}",
             summary="A share released for an emergency",
             responses={200: answer_response(RELEASE, "the release (null: none, proven)"),
                        **NOT_FOUND})
    async def release(emergency_id: Id, org: Annotated[str, Path(pattern=ORG_PATTERN)],
                      prove: Prove = False) -> Any:
        """``org``'s share of the patient's emergency key, re-wrapped for the emergency
        clinician (``to``), who recovers the key from ``threshold`` of them."""
        return entry(host, release_key(emergency_id, org), prove,
                     f"{org} has released no share for emergency {emergency_id}")

    @api.get("/patients/{pseudonym}/emergency-key", summary="A patient's emergency key",
             responses={200: answer_response(ESCROW, "the emergency key (null: none, "
                                                     "proven)"), **NOT_FOUND})
    async def emergency_key_of(pseudonym: Pseudonym, prove: Prove = False) -> Any:
        """The public key every new record is also sealed for (as reader ``reader``), the
        threshold, and each hospital's share wrapped for its holding admin."""
        return entry(host, break_glass_key(pseudonym), prove,
                     f"patient {pseudonym} has no emergency key")


def _lists(api: APIRouter, host: QueryHost) -> None:
    def page(lst: ProvableList, pseudonym: str, start: int, limit: int,
             prove: bool) -> dict[str, Any]:
        return host.list_answer(lst, pseudonym, start, limit, prove=prove)

    @api.get("/patients/{pseudonym}/records", summary="A patient's records", responses=LIST)
    async def records(pseudonym: Pseudonym, start: Start = 1, limit: PageLimit = MAX_PAGE,
                      prove: Prove = False) -> Any:
        """Record ids in the order they were added (amendments included): the provable list
        ``records/by_patient/<pseudonym>``."""
        return page(BY_PATIENT, pseudonym, start, limit, prove)

    @api.get("/patients/{pseudonym}/grants", summary="A patient's grants", responses=LIST)
    async def grants(pseudonym: Pseudonym, start: Start = 1, limit: PageLimit = MAX_PAGE,
                     prove: Prove = False) -> Any:
        """Grant ids in the order they were made (revoked ones too; read each with
        ``/grants/{grant_id}``): the provable list ``records/grants/<pseudonym>``."""
        return page(GRANTS, pseudonym, start, limit, prove)

    @api.get("/patients/{pseudonym}/access", summary="A patient's access log",
             responses=LIST)
    async def access(pseudonym: Pseudonym, start: Start = 1, limit: PageLimit = MAX_PAGE,
                     prove: Prove = False) -> Any:
        """Every read on a grant or an emergency (reader, organisation, records, basis,
        block time): the provable list ``records/access/<pseudonym>``."""
        return page(ACCESS_LOG, pseudonym, start, limit, prove)

"""The governance app's queries, served under ``/v1/governance``.

==================================  ====================================================
``GET /proposals?after=&limit=``    proposals in id order, a page at a time
``GET /proposals/{id}``             one proposal: its change, approvals and status
``GET /evidence?start=&limit=``     committed double-sign evidence, in commit order
``GET /evidence/{hash}``            one piece of evidence
==================================  ====================================================

The single entries take ``?prove=true``: the answer then carries the sparse Merkle proof
(of the entry, or of its absence) and the certified header of the tip, checked by
``medledger.client.verify_state_answer``. Without ``prove``, an absent entry is a 404. An
open proposal whose ``effective_height`` is reached stays ``"open"`` in state: it is
expired by rule (:func:`~medledger.apps.governance.proposal_expired`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from medledger.apps.governance import KINDS, evidence_key, list_evidence, proposal_key
from medledger.apps.host import QueryError, QueryHost
from medledger.apps.lists import MAX_SEQ

__all__ = ["router"]

HEX32_PATTERN = "^[0-9a-f]{64}$"
MAX_PAGE = 100

_PROPOSALS = proposal_key("")
_HEX32 = {"type": "string", "pattern": HEX32_PATTERN}
_INT = {"type": "integer", "minimum": 0}
_NULL = {"type": "null"}


def _obj(**fields: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(fields), "properties": fields}


PROPOSAL = _obj(id=_HEX32, kind={"enum": list(KINDS)}, change={"type": "object"},
                effective_height=_INT, proposer=_HEX32,
                approvals={"type": "array", "items": _HEX32},
                status={"enum": ["open", "approved"]}, height=_INT,
                approved_height={"anyOf": [_INT, _NULL]})
EVIDENCE = _obj(evidence={"type": "object"}, hash=_HEX32, height=_INT, offence_height=_INT,
                seq={"type": "integer", "minimum": 1}, validator=_HEX32)


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _answer(value: dict[str, Any], description: str) -> dict[str, Any]:
    return _json({"allOf": [{"$ref": "#/components/schemas/Answer"},
                            {"properties": {"value": {"anyOf": [value, _NULL]}}}]},
                 description)


_NOT_FOUND = {404: _json({"$ref": "#/components/schemas/Error"},
                         "not_found: absent (without `prove`), or no block committed yet")}

Prove = Annotated[bool, Query(description="answer with the proof and the certified header")]


def router(host: QueryHost) -> APIRouter:
    """The governance app's routes over ``host``."""
    api = APIRouter()

    def entry(key: str, prove: bool, what: str) -> dict[str, Any]:
        answer = host.answer(key, prove=prove)
        if not prove and answer["value"] is None:
            raise QueryError(404, "not_found", f"no {what}")
        return answer

    @api.get("/proposals", summary="Proposals, in id order",
             responses={200: _json(_obj(proposals={"type": "array", "items": PROPOSAL},
                                        next={"anyOf": [_HEX32, _NULL]}),
                                   "a page; `next` is the `after` of the next page")})
    async def proposals(
        after: Annotated[str | None, Query(pattern=HEX32_PATTERN,
                                           description="only ids after this one")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    ) -> Any:
        """Every proposal, open or approved, without proofs (each one is provable through
        ``/proposals/{id}?prove=true``)."""
        found = host.scan(_PROPOSALS, after=None if after is None else proposal_key(after),
                          limit=limit + 1)
        page = [value for _, value in found[:limit]]
        more = len(found) > limit
        return {"proposals": page, "next": page[-1]["id"] if more and page else None}

    @api.get("/proposals/{proposal_id}", summary="A proposal",
             responses={200: _answer(PROPOSAL, "the proposal (null: absent, proven)"),
                        **_NOT_FOUND})
    async def proposal(proposal_id: Annotated[str, Path(pattern=HEX32_PATTERN,
                                                        description="its transaction id")],
                       prove: Prove = False) -> Any:
        """The change proposed, its ``effective_height``, the validators that approved it
        and whether it was enacted (``status``, ``approved_height``)."""
        return entry(proposal_key(proposal_id), prove, f"proposal {proposal_id}")

    @api.get("/evidence", summary="Committed double-sign evidence, in commit order",
             responses={200: _json(_obj(evidence={"type": "array", "items": EVIDENCE},
                                        next={"anyOf": [{"type": "integer", "minimum": 1},
                                                        _NULL]}),
                                   "a page; `next` is the `start` of the next page")})
    async def evidence_list(
        start: Annotated[int, Query(ge=1, le=MAX_SEQ, description="the first, from 1")] = 1,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    ) -> Any:
        """Each piece with the validator it names, the offence's height and the height it
        was committed at, without proofs (each one is provable through
        ``/evidence/{hash}?prove=true``)."""
        found = list_evidence(host.view(), start, limit + 1)
        more = len(found) > limit
        return {"evidence": found[:limit], "next": start + limit if more else None}

    @api.get("/evidence/{evidence_hash}", summary="One piece of double-sign evidence",
             responses={200: _answer(EVIDENCE, "the evidence (null: absent, proven)"),
                        **_NOT_FOUND})
    async def evidence(evidence_hash: Annotated[str, Path(pattern=HEX32_PATTERN)],
                       prove: Prove = False) -> Any:
        """The two conflicting votes, the validator and the heights: state key
        ``evidence/<hash>``."""
        return entry(evidence_key(evidence_hash), prove, f"evidence {evidence_hash}")

    return api

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

from fastapi import APIRouter, Path

from medledger.apps.governance import KINDS, evidence_key, list_evidence, proposal_key
from medledger.apps.host import QueryHost
from medledger.apps.queries import (
    HEX32,
    HEX32_PATTERN,
    NOT_FOUND,
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

__all__ = ["router"]

_PROPOSALS = proposal_key("")
_INT = {"type": "integer", "minimum": 0}

PROPOSAL = obj(id=HEX32, kind={"enum": list(KINDS)}, change={"type": "object"},
               effective_height=_INT, proposer=HEX32,
               approvals={"type": "array", "items": HEX32},
               status={"enum": ["open", "approved"]}, height=_INT,
               approved_height=maybe(_INT))
EVIDENCE = obj(evidence={"type": "object"}, hash=HEX32, height=_INT, offence_height=_INT,
               seq={"type": "integer", "minimum": 1}, validator=HEX32)

ProposalAfter = after_param(HEX32_PATTERN)
EvidenceStart = start_param("the first, from 1")


def router(host: QueryHost) -> APIRouter:
    """The governance app's routes over ``host``."""
    api = APIRouter()

    @api.get("/proposals", summary="Proposals, in id order",
             responses={200: json_response(obj(proposals={"type": "array", "items": PROPOSAL},
                                               next=maybe(HEX32)),
                                           "a page; `next` is the `after` of the next page")})
    async def proposals(after: ProposalAfter = None, limit: Limit = 20) -> Any:
        """Every proposal, open or approved, without proofs (each one is provable through
        ``/proposals/{id}?prove=true``)."""
        return scan_page(host, _PROPOSALS, after, limit, "proposals", proposal_key)

    @api.get("/proposals/{proposal_id}", summary="A proposal",
             responses={200: answer_response(PROPOSAL, "the proposal (null: absent, proven)"),
                        **NOT_FOUND})
    async def proposal(proposal_id: Annotated[str, Path(pattern=HEX32_PATTERN,
                                                        description="its transaction id")],
                       prove: Prove = False) -> Any:
        """The change proposed, its ``effective_height``, the validators that approved it
        and whether it was enacted (``status``, ``approved_height``)."""
        return entry(host, proposal_key(proposal_id), prove, f"no proposal {proposal_id}")

    @api.get("/evidence", summary="Committed double-sign evidence, in commit order",
             responses={200: json_response(obj(evidence={"type": "array", "items": EVIDENCE},
                                               next=maybe({"type": "integer", "minimum": 1})),
                                           "a page; `next` is the `start` of the next page")})
    async def evidence_list(start: EvidenceStart = 1, limit: Limit = 20) -> Any:
        """Each piece with the validator it names, the offence's height and the height it
        was committed at, without proofs (each one is provable through
        ``/evidence/{hash}?prove=true``)."""
        found = list_evidence(host.view(), start, limit + 1)
        more = len(found) > limit
        return {"evidence": found[:limit], "next": start + limit if more else None}

    @api.get("/evidence/{evidence_hash}", summary="One piece of double-sign evidence",
             responses={200: answer_response(EVIDENCE, "the evidence (null: absent, proven)"),
                        **NOT_FOUND})
    async def evidence(evidence_hash: Annotated[str, Path(pattern=HEX32_PATTERN)],
                       prove: Prove = False) -> Any:
        """The two conflicting votes, the validator and the heights: state key
        ``evidence/<hash>``."""
        return entry(host, evidence_key(evidence_hash), prove,
                     f"no evidence {evidence_hash}")

    return api

"""JSON schemas of the API's request bodies and answers, for the OpenAPI document.

Bodies are parsed by our own strict codec, not by pydantic, so that what is hashed is
exactly what was sent; answers are built as dicts by the node and described here. Each
answer schema says what is always there (``required``) and leaves room for fields added
later (no ``additionalProperties: false``), so a client written against it keeps working.

The schemas an app's routes share with the node's own are published as named components
(:data:`COMPONENTS`): ``Answer`` (one state entry, with its proof when asked for it),
``ListAnswer`` (a page of a provable list) and the parts they are made of. An app's route
refers to them as ``{"$ref": "#/components/schemas/Answer"}``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ANSWER", "BLOCK", "BLOCK_LIST", "BLOCK_PROOF", "COMPONENTS", "ENVELOPE", "ERROR", "GENESIS", "INDEX",
    "LIST_ANSWER", "SET_CHANGES", "SET_PROOF", "STATE_ANSWER", "STATUS", "SUBMITTED",
    "SUBMIT_BATCH", "TX", "TX_COMMITTED", "TX_LIST", "VALIDATORS", "envelope",
    "json_content", "ref", "tx_body",
]

HEX32: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
HEX64: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{128}$"}
HEX: dict[str, Any] = {"type": "string", "pattern": "^([0-9a-f]{2})*$"}
UINT: dict[str, Any] = {"type": "integer", "minimum": 0}
HEIGHT: dict[str, Any] = {"type": "integer", "minimum": 1}
NULL: dict[str, Any] = {"type": "null"}


def ref(name: str) -> dict[str, Any]:
    """A reference to the named component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, NULL]}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None, *,
        title: str | None = None) -> dict[str, Any]:
    """An object schema: ``required`` fields always present, ``optional`` ones maybe."""
    out: dict[str, Any] = {"type": "object", "required": list(required),
                           "properties": {**required, **(optional or {})}}
    if title:
        out["title"] = title
    return out


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A ``responses`` entry answering JSON of ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# requests -----------------------------------------------------------------------------------
MAX_SAFE_INT = 2**53 - 1
_ASCII_KEY = {"pattern": "^[\\x00-\\x7f]*$"}

CANONICAL_VALUE: dict[str, Any] = {
    "title": "CanonicalValue",
    "description": "What medledger's strict JSON holds: no floats, integers within 2^53, "
                   "ASCII object keys",
    "anyOf": [
        {"type": "string"}, {"type": "boolean"}, {"type": "null"},
        {"type": "integer", "minimum": -MAX_SAFE_INT, "maximum": MAX_SAFE_INT},
        {"type": "array", "items": {"$ref": "#/components/schemas/CanonicalValue"}},
        {"type": "object", "propertyNames": _ASCII_KEY,
         "additionalProperties": {"$ref": "#/components/schemas/CanonicalValue"}},
    ],
}


def envelope(chain_id: str | None = None, types: list[str] | None = None) -> dict[str, Any]:
    """The schema of a signed transaction; with ``chain_id`` and ``types``, of one that
    this node's chain and apps can accept (any other is refused as ``chain_id`` or
    ``unknown_type``)."""
    return {
        "type": "object",
        "title": "Transaction",
        "required": ["chain_id", "type", "sender", "nonce", "body", "signature"],
        "additionalProperties": False,
        "properties": {
            "chain_id": ({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
                         if chain_id is None else {"type": "string", "enum": [chain_id]}),
            "type": ({"type": "string", "pattern": "^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$",
                      "maxLength": 64, "examples": ["ledger.anchor"]}
                     if types is None else {"type": "string", "enum": list(types)}),
            "sender": HEX32,
            "nonce": {"type": "integer", "minimum": 1, "maximum": MAX_SAFE_INT},
            "body": {"type": "object", "propertyNames": _ASCII_KEY,
                     "additionalProperties": {"$ref": "#/components/schemas/CanonicalValue"}},
            "signature": HEX64,
        },
    }


ENVELOPE: dict[str, Any] = envelope()

ERROR: dict[str, Any] = obj({"code": {"type": "string"}, "message": {"type": "string"}},
                            title="Error")


def tx_body(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body of ``schema``."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


# the parts of a proven answer ----------------------------------------------------------------
HEADER = obj({
    "chain_id": {"type": "string"}, "height": HEIGHT, "time": UINT, "prev_hash": HEX32,
    "tx_root": HEX32, "tx_count": UINT, "results_root": HEX32, "state_root": HEX32,
    "history_root": HEX32, "validators_hash": HEX32, "last_commit_hash": HEX32,
    "proposer": HEX32,
}, title="Header")

SIGNED_HEADER = obj({
    "header": {"type": "object", "description": "CometBFT's header, as its RPC gives it"},
    "commit": {"type": "object", "description": "the commit that signs it"},
}, title="SignedHeader")

LIGHT: dict[str, Any] = {"type": "array", "items": ref("SignedHeader"), "minItems": 1,
                         "maxItems": 2}

CERTIFIED_PARTS: dict[str, Any] = {
    "height": HEIGHT, "block_hash": HEX32, "header": ref("Header"), "light": LIGHT,
}
"""The parts every proven answer carries: a block's app-level header with CometBFT's signed headers that prove it (``light``: the
header of the height that signs the state after it, and for a transaction also the one of
its own height)."""

SPARSE_PROOF = obj({
    "depth": UINT, "bitmap": HEX, "siblings": {"type": "array", "items": HEX32},
    "leaf": nullable(obj({"key": HEX32, "value_hash": HEX32})),
}, title="SparseProof")

EVENT = obj({"type": {"type": "string"},
             "attrs": {"type": "object", "additionalProperties": {"type": "string"}}},
            title="Event")

ANSWER = obj(
    {"key": {"type": "string"}, "value": {"description": "the entry, null when absent"},
     "height": UINT},
    {"proof": ref("SparseProof"), "block_hash": HEX32, "header": ref("Header"),
     "light": LIGHT},
    title="Answer")
"""One state entry at the tip: with ``prove=true`` also its sparse Merkle proof and the
certified header of the tip (checked by ``medledger.client.verify_state_answer``)."""

STATE_ANSWER = obj({**CERTIFIED_PARTS, "key": {"type": "string"}, "value": {},
                    "proof": ref("SparseProof")}, title="StateAnswer")

LIST_ITEM = obj({"seq": HEIGHT, "key": {"type": "string"}, "value": {}},
                {"proof": ref("SparseProof")})
LIST_ANSWER = obj(
    {"list": {"type": "string"}, "owner": {"type": "string"}, "count": UINT, "start": HEIGHT,
     "items": {"type": "array", "items": LIST_ITEM}, "height": HEIGHT},
    {"count_proof": obj({"key": {"type": "string"}, "value": {}, "proof": ref("SparseProof")}),
     "block_hash": HEX32, "header": ref("Header"), "light": LIGHT},
    title="ListAnswer")
"""A page of a provable list; with ``prove=true`` every item and the count carry proofs
(checked by ``medledger.client.verify_list_answer``)."""

COMPONENTS: dict[str, dict[str, Any]] = {
    "CanonicalValue": CANONICAL_VALUE, "Header": HEADER, "SignedHeader": SIGNED_HEADER,
    "SparseProof": SPARSE_PROOF, "Event": EVENT, "Answer": ANSWER, "ListAnswer": LIST_ANSWER,
    "Error": ERROR,
}
"""Schemas published under ``#/components/schemas`` for the node's and the apps' routes."""


# answers ------------------------------------------------------------------------------------
VALIDATOR = obj({"name": {"type": "string"}, "power": HEIGHT, "public_key": HEX32})

STATUS = obj({
    "chain_id": {"type": "string"}, "height": UINT, "latest_block_hash": HEX32,
    "latest_block_time": nullable(UINT), "state_root": HEX32, "validators_hash": HEX32,
    "mempool_size": nullable(UINT), "total_txs": UINT, "node_key": HEX32,
}, {"engine": {"type": "string"}, "engine_node_id": {"type": "string"},
    "engine_height": UINT, "catching_up": {"type": "boolean"}, "round": UINT, "step": UINT,
    "peers": UINT}, title="Status")

GENESIS = obj({
    "chain_id": {"type": "string"}, "genesis_time": UINT,
    "organisations": {"type": "array", "items": obj({
        "id": {"type": "string"}, "name": {"type": "string"}, "role": {"type": "string"},
        "admins": {"type": "array", "items": HEX32}})},
    "validators": {"type": "array", "items": VALIDATOR},
}, title="Genesis")

VALIDATORS = obj({"validators": {"type": "array", "items": VALIDATOR}, "hash": HEX32,
                  "total_power": UINT}, title="Validators")

SET_CHANGES = obj({"heights": {"type": "array", "items": HEIGHT}}, title="SetChanges")

SET_PROOF = obj({**CERTIFIED_PARTS, "key": {"type": "string"},
                 "value": nullable({"type": "array", "items": VALIDATOR}),
                 "proof": ref("SparseProof")}, title="SetProof")

RESULT = obj({"code": {"type": "string"}, "message": {"type": "string"}},
             {"events": {"type": "array", "items": ref("Event")}})

BLOCK = obj({**CERTIFIED_PARTS, "txs": {"type": "array", "items": ENVELOPE},
             "results": {"type": "array", "items": RESULT}}, title="Block")

BLOCK_PROOF = obj({
    "height": HEIGHT,
    "entry": obj({"height": HEIGHT, "block_hash": HEX32, "results_hash": HEX32,
                  "leaf_index": UINT, "tree_size": HEIGHT,
                  "audit_path": {"type": "array", "items": HEX32}}),
    "engine_header": {"type": "object", "description": "CometBFT's header of the block, as "
                                                       "its RPC `/commit` gives it"},
    "log": STATE_ANSWER}, title="BlockProof")
"""A block's entry in the log of blocks, its audit path, the log's root and size in state
proven under a recent signed header (``log``), and CometBFT's header of the block (checked
by ``medledger.client.verify_block_answer``)."""

TX_FIELDS: dict[str, Any] = {
    "tx_id": HEX32, "height": HEIGHT, "index": UINT, "code": {"type": "string"},
    "message": {"type": "string"}, "events": {"type": "array", "items": ref("Event")},
}

TX = obj({**CERTIFIED_PARTS, **TX_FIELDS, "tx": ENVELOPE, "proof": obj({
    "leaf_index": UINT, "tree_size": HEIGHT,
    "data_audit_path": {"type": "array", "items": HEX32},
    "result_audit_path": {"type": "array", "items": HEX32}})}, title="TxWithProof")

SUBMITTED = obj({"tx_id": HEX32, "status": {"const": "pending"}}, title="Submitted")
TX_COMMITTED = obj({**TX_FIELDS, "status": {"const": "committed"}}, title="Committed")

SUBMIT_BATCH = obj({"accepted": UINT, "results": {"type": "array", "items": obj({
    "tx_id": nullable(HEX32), "code": {"type": "string"}, "message": {"type": "string"}})}},
    title="BatchResults")

BLOCK_LIST = obj({
    "blocks": {"type": "array", "items": obj({
        "height": HEIGHT, "hash": HEX32, "time": UINT, "tx_count": UINT, "proposer": HEX32})},
    "next": nullable(HEIGHT),
}, title="BlockList")

TX_LIST = obj({
    "txs": {"type": "array", "items": obj({
        "tx_id": HEX32, "height": HEIGHT, "index": UINT, "type": {"type": "string"},
        "nonce": HEIGHT, "code": {"type": "string"}, "message": {"type": "string"}})},
    "next": nullable({"type": "string", "pattern": "^[0-9]+:[0-9]+$"}),
}, title="TxList")

INDEX = obj({"name": {"type": "string"}, "version": {"type": "string"},
             "chain_id": {"type": "string"},
             "links": {"type": "object", "additionalProperties": {"type": "string"}}},
            title="Index")

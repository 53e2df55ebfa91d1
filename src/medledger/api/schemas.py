"""JSON schemas of request bodies, for the OpenAPI document (bodies are parsed by our own
strict codec, not by pydantic, so that what is hashed is exactly what was sent)."""

from __future__ import annotations

from typing import Any

__all__ = ["ENVELOPE", "ERROR", "tx_body"]

_HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}

ENVELOPE: dict[str, Any] = {
    "type": "object",
    "title": "Transaction",
    "required": ["chain_id", "type", "sender", "nonce", "body", "signature"],
    "additionalProperties": False,
    "properties": {
        "chain_id": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
        "type": {"type": "string", "examples": ["ledger.anchor"]},
        "sender": _HEX32,
        "nonce": {"type": "integer", "minimum": 1},
        "body": {"type": "object"},
        "signature": {"type": "string", "pattern": "^[0-9a-f]{128}$"},
    },
}

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
}


def tx_body(schema: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body of ``schema``."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}

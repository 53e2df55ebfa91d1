"""A small HTTP client for the node's API (httpx), with errors that explain themselves."""

from __future__ import annotations

from typing import Any

import httpx

from medledger.ledger import Transaction

__all__ = ["ApiRefused", "Client", "Unreachable"]


class Unreachable(Exception):
    """The node did not answer (not running, wrong address, timeout)."""


class ApiRefused(Exception):
    """The node answered with an error: ``status``, stable ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status, self.code, self.message = status, code, message


class Client:
    """Talk to one node's API at ``base_url`` (e.g. ``http://127.0.0.1:26657``)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise Unreachable(f"no answer from {self.base_url}: {e}") from e
        if response.status_code >= 400:
            try:
                body = response.json()
                code, message = body["code"], body["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "http", response.text[:200]
            raise ApiRefused(response.status_code, code, message)
        return response.json()

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/v1/status")  # type: ignore[no-any-return]

    def genesis(self) -> dict[str, Any]:
        return self._call("GET", "/v1/genesis")  # type: ignore[no-any-return]

    def submit(self, tx: Transaction, *, wait: bool = False, timeout: float = 30.0) -> dict[str, Any]:
        params = {"wait": "true", "timeout": str(timeout)} if wait else {}
        return self._call("POST", "/v1/txs", content=tx.raw,  # type: ignore[no-any-return]
                          params=params, headers={"content-type": "application/json"})

    def tx(self, tx_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/txs/{tx_id}")  # type: ignore[no-any-return]

    def block(self, height: int) -> dict[str, Any]:
        return self._call("GET", f"/v1/blocks/{height}")  # type: ignore[no-any-return]

    def state(self, key: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/state/{key}")  # type: ignore[no-any-return]

    def validator_changes(self) -> list[int]:
        """The heights from which a set changed by governance was in force."""
        return self._call("GET", "/v1/validators/changes")["heights"]  # type: ignore[no-any-return]

    def validator_proof(self, height: int) -> dict[str, Any]:
        """The proof of the set of ``height`` (see :func:`medledger.client.verify_set_change`)."""
        return self._call("GET", f"/v1/validators/proof/{height}")  # type: ignore[no-any-return]

    def next_nonce(self, sender: bytes) -> int:
        """One more than the sender's last committed nonce."""
        value = self.state(f"nonce/{sender.hex()}")["value"]
        return 1 if value is None else int(value) + 1

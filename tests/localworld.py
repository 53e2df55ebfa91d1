"""A demo node on a local chain (``tests/localchain.py``) behind ``httpx.MockTransport``,
for tests that run the command line in process against it: :class:`Served` forwards each
request whole to the node's API (signatures included); :func:`serve_cli` points the command
line's client at it; :func:`register_people` registers members and patients, each with a
keystore file."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import httpx
import pytest

import medledger.cli.host as cli_host
from medledger.api import create_app
from medledger.client import Client
from medledger.crypto import Keystore
from medledger.ledger import Transaction
from medledger.node import Home
from tests.conftest import FAST_KDF
from tests.localchain import LocalNode


class Served:
    """The node's API behind a MockTransport: each request forwarded as it is (method, URL,
    headers, body); ``POST /v1/txs?wait=true`` admits the transaction, commits its block
    and answers as the node does once it is committed."""

    def __init__(self, node: LocalNode) -> None:
        self.node = node
        self.app = create_app(node, run_node=False)

    async def _forward(self, request: httpx.Request, params: Any = None) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                     base_url=f"{request.url.scheme}://{request.url.host}"
                                     ) as http:
            return await http.request(request.method, request.url.path,
                                      params=request.url.params if params is None else params,
                                      headers=request.headers, content=request.content)

    def handle(self, request: httpx.Request) -> httpx.Response:
        wait = request.method == "POST" and request.url.path == "/v1/txs"
        response = asyncio.run(self._forward(request, {} if wait else None))
        if not wait or response.status_code != 202:
            return httpx.Response(response.status_code, headers=response.headers,
                                  content=response.content)
        tx_id = response.json()["tx_id"]
        self.node.produce_block()
        stored = asyncio.run(self._forward(httpx.Request("GET", f"{request.url.scheme}://"
                                                                f"{request.url.host}/v1/txs/"
                                                                f"{tx_id}")))
        answer = {k: stored.json()[k] for k in ("tx_id", "height", "code", "message")}
        return httpx.Response(200, json={**answer, "status": "committed"})


def serve_cli(node: LocalNode, m: pytest.MonkeyPatch) -> Served:
    """The node's API served in process, and the command line's client pointed at it."""
    served = Served(node)
    m.setattr(cli_host, "Client", functools.partial(
        Client, transport=httpx.MockTransport(served.handle)))
    return served


def commit_ok(node: LocalNode, txs: list[Transaction]) -> None:
    """Admit ``txs``, commit one block, and check that each committed ``ok``."""
    for tx in txs:
        assert node.submit(tx).accepted
    node.produce_block()
    for tx in txs:
        assert node.store.get_tx(tx.tx_id).code == "ok"


def register_people(home: Home, node: LocalNode, folder: Path, chain_id: str, *,
                    members: dict[str, tuple[str, str]], patients: tuple[str, ...],
                    suite: str, passphrase: str) -> dict[str, Path]:
    """A keystore file per person under ``folder`` (``<who>.key``); ``members`` (who ->
    (organisation, role)) registered by their organisation's admin, ``patients`` by
    themselves, all in one block. Returns the files by person."""
    files: dict[str, Path] = {}
    txs = []
    nonces: dict[str, int] = {}
    for who in [*members, *patients]:
        keys = Keystore.generate(suite)
        files[who] = folder / f"{who}.key"
        keys.save(files[who], passphrase, kdf_params=FAST_KDF)
        enc = {"enc_key": keys.encryption.public_bytes().hex(), "enc_suite": suite}
        if who in members:
            org, role = members[who]
            admin = home.member_keys(org).signing
            nonces[org] = nonces.get(org, 0) + 1
            txs.append(Transaction.create(admin, chain_id, "identity.member.register",
                                          nonces[org], {"org": org, "role": role,
                                                        "key": keys.signing.public_key.hex(),
                                                        "name": who, **enc}))
        else:
            txs.append(Transaction.create(keys.signing, chain_id,
                                          "identity.patient.register", 1, enc))
    commit_ok(node, txs)
    return files

"""Shared fixtures. Each block says what it makes; add yours in a block of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from medledger.api import create_app
from medledger.crypto import ScryptParams, SigningKey
from medledger.node import Home
from tests.localchain import LocalNode, open_local

# A fresh demo home, its node and its admin key (API, light-client and CLI tests) ------------
DEMO_CHAIN_ID = "test-chain"
DEMO_GENESIS_TIME = 1_700_000_000_000
FAST_KDF = ScryptParams(n=2**10, r=8, p=1)


@pytest.fixture
def demo_home(tmp_path: Path) -> Home:
    """``tmp_path/node``: one validator, the local org and the demo organisations."""
    return Home.init(tmp_path / "node", DEMO_CHAIN_ID, kdf_params=FAST_KDF, demo=True,
                     genesis_time=DEMO_GENESIS_TIME)


@pytest.fixture
def demo_node(demo_home: Home) -> Iterator[LocalNode]:
    """The node of :func:`demo_home` on a local chain (:mod:`tests.localchain`): CometBFT's
    ABCI calls drive its application, and its answers carry signed CometBFT headers. Blocks
    are committed by the test (``produce_block()``); closed after the test."""
    node = open_local(demo_home)
    yield node
    node.close()


@pytest.fixture
def demo_admin_key(demo_home: Home) -> SigningKey:
    """The signing key of the local organisation's genesis admin."""
    return demo_home.member_keys("admin").signing


# The API of the demo node, and an HTTP client of it -------------------------------------------
@pytest.fixture
def app(demo_node: LocalNode) -> FastAPI:
    """The API over the demo node, without block production (tests commit blocks)."""
    return create_app(demo_node, run_node=False)


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of :func:`app`, over ASGI (no sockets)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as client:
        yield client


# The command line, run in-process ---------------------------------------------------------------
@pytest.fixture
def runner() -> CliRunner:
    """A Typer runner for ``medledger.cli.main.app``."""
    return CliRunner()

"""Which nodes may connect: the node IDs that genesis and governance list for organisations."""

from __future__ import annotations

from typing import Any

import pytest

from medledger.apps import default_registry
from medledger.apps.identity import genesis_writes, node_key
from medledger.codec import encode
from medledger.state import Overlay, ReadOnly

A, B = "a" * 40, "b" * 40


def org(org_id: str, admin: str, **extra: Any) -> dict[str, Any]:
    return {"id": org_id, "name": org_id, "role": "hospital", "admins": [admin], **extra}


def view_of(orgs: list[dict[str, Any]]) -> Overlay:
    writes = {key: encode(value) for key, value in genesis_writes(orgs).items()}
    return Overlay(ReadOnly(writes.get))


def test_a_listed_node_of_an_active_organisation_is_admitted() -> None:
    view = view_of([org("st-mary", "01" * 32, nodes=[A])])
    registry = default_registry()
    assert registry.admits_peer(view, A)
    assert not registry.admits_peer(view, B)
    assert not registry.admits_peer(view, "not-a-node-id")


@pytest.mark.parametrize(("nodes", "why"), [
    ("abc", "node IDs"),
    (["A" * 40], "node IDs"),
    (["a" * 39], "node IDs"),
    ([A, A], "node IDs"),
    ([f"{i:040x}" for i in range(17)], "node IDs"),
])
def test_malformed_node_lists_are_refused(nodes: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        genesis_writes([org("st-mary", "01" * 32, nodes=nodes)])


def test_a_node_listed_by_two_organisations_is_refused() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        genesis_writes([org("st-mary", "01" * 32, nodes=[A]),
                        org("northgate", "02" * 32, nodes=[A])])


def test_a_node_of_a_suspended_organisation_is_not_admitted() -> None:
    view = view_of([org("st-mary", "01" * 32, nodes=[A])])
    entry = view.get("identity/org/st-mary")
    view.put("identity/org/st-mary", {**entry, "status": "suspended"})
    assert view.get(node_key(A)) == {"org": "st-mary"}
    assert not default_registry().admits_peer(view, A)


def test_an_organisation_admitted_by_governance_brings_its_nodes() -> None:
    from medledger.apps import Rejected
    from medledger.apps.identity import admit_organisation

    view = view_of([org("st-mary", "01" * 32, nodes=[A])])
    admit_organisation(view, org("northgate", "02" * 32, nodes=[B]))
    assert default_registry().admits_peer(view, B)
    with pytest.raises(Rejected, match="already a member's"):
        admit_organisation(view, org("carewell", "03" * 32, nodes=[A]))


def test_an_admin_adds_a_node_of_its_organisation() -> None:
    from medledger.apps import BlockContext, Rejected
    from medledger.apps.identity import NODE_ADD, NODES
    from medledger.crypto import SigningKey
    from medledger.ledger import Transaction

    admin, other = SigningKey.generate(), SigningKey.generate()
    view = view_of([org("st-mary", admin.public_key.hex(), nodes=[A]),
                    org("northgate", other.public_key.hex())])
    registry = default_registry()
    ctx = BlockContext("peers", 5, 1_700_000_000_000)

    def add(key: SigningKey, org_id: str, node: str, nonce: int = 1) -> Any:
        tx = Transaction.create(key, "peers", NODE_ADD, nonce, {"org": org_id, "node_id": node})
        return registry.apply(view, tx, ctx)

    events = add(admin, "st-mary", B)
    assert [(e.type, e.attr("node_id")) for e in events] == [("identity.node_added", B)]
    assert registry.admits_peer(view, B)
    assert view.get(NODES.item_key("st-mary", 1)) == B
    with pytest.raises(Rejected, match="already a member's"):
        add(admin, "st-mary", A, 2)
    with pytest.raises(Rejected, match="admin"):
        add(other, "st-mary", "c" * 40)
    assert not registry.admits_peer(view, "c" * 40)

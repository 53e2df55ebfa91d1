"""The trace app's state: its keys (each made by one function here), its provable lists, and
the reads every path shares (who owns a GTIN, which organisation a party GLN is, where an
object is).

Objects are serialised packs (SGTIN) and containers (SSCC: cases, pallets); lots (LGTIN) are
raw-material lots received, finished lots made from them, and the lots packs name. Each has
one state entry, keyed by its GS1 key's ledger form (:mod:`medledger.standards.gs1`).

Everything here is pure: reads and writes go through the view handed in.
"""

from __future__ import annotations

from typing import Any

from medledger.apps import identity
from medledger.apps.base import Rejected
from medledger.apps.lists import ProvableList
from medledger.standards.gs1 import LGTIN, SGTIN, SSCC
from medledger.state import StateView

__all__ = [
    "ALL", "CURSOR_KEY", "HISTORY", "HOUR_MS", "Ident", "LOT_PACKS", "OUTPUTS", "PREFIX",
    "RECALLS", "REPORTS", "RESPOND_MS", "SUPERVISORS", "container_key", "event_key",
    "history_owner", "lot_key", "member_org", "object_entry", "object_key", "org_of_party",
    "org_party_key", "overdue_key", "owner_of_gtin", "pack_key", "party_key",
    "party_of_org", "prefix_key", "prefix_length", "product_key", "report_key", "stem_key",
]

PREFIX = "trace/"
HOUR_MS = 3_600_000
RESPOND_MS = 24 * HOUR_MS
"""How long (block time) a drug maker has to answer a suspect-product report (DSCSA's 24
hours to notify); the end-block hook flags it after that."""
SUPERVISORS = ("regulator",)
"""Organisation roles that may recall any lot and answer any report."""

Ident = SGTIN | SSCC | LGTIN

HISTORY = ProvableList("trace", "history")
"""Each object's and lot's events, in order (owner: its history owner, :func:`history_owner`):
event hashes (hex)."""
LOT_PACKS = ProvableList("trace", "lot_packs")
"""The packs commissioned in each lot (owner: the lot's key): pack keys."""
OUTPUTS = ProvableList("trace", "outputs")
"""The lots made from each lot (owner: the input lot's key): lot keys."""
RECALLS = ProvableList("trace", "recalls")
"""Every recall, in order (owner: ``all``): lot keys."""
REPORTS = ProvableList("trace", "reports")
"""Every suspect-product report, in order (owner: ``all``): report ids, the queue the
end-block hook walks."""
ALL = "all"
CURSOR_KEY = f"{PREFIX}report_cursor"
"""The position in :data:`REPORTS` of the first report not yet due."""


# keys -----------------------------------------------------------------------------------------
def prefix_key(prefix: str) -> str:
    """A GS1 company prefix registered by a drug maker: ``{"org", "height"}``."""
    return f"{PREFIX}prefix/{prefix}"


def stem_key(stem: str) -> str:
    """A proper start of a registered prefix: the prefix (so that a shorter prefix, which
    would make that prefix's GTINs ambiguous, is refused)."""
    return f"{PREFIX}prefix_stem/{stem}"


def party_key(gln: str) -> str:
    """A party GLN (PGLN) registered by an organisation: ``{"org", "height"}``."""
    return f"{PREFIX}party/{gln}"


def org_party_key(org: str) -> str:
    """The GLN an organisation registered (what exports name it by)."""
    return f"{PREFIX}org_party/{org}"


def product_key(gtin: str) -> str:
    """A product: ``{"gtin", "name", "ndc", "org", "height"}``."""
    return f"{PREFIX}product/{gtin}"


def pack_key(pack: SGTIN) -> str:
    return f"{PREFIX}pack/{pack.key}"


def container_key(container: SSCC) -> str:
    return f"{PREFIX}container/{container.key}"


def lot_key(lot: LGTIN) -> str:
    return f"{PREFIX}lot/{lot.key}"


def object_key(ident: Ident) -> str:
    """The state key of a pack, a container or a lot."""
    if isinstance(ident, SGTIN):
        return pack_key(ident)
    if isinstance(ident, SSCC):
        return container_key(ident)
    return lot_key(ident)


def history_owner(ident: Ident) -> str:
    """The owner segment of an object's :data:`HISTORY` (``pack.<key>``, ``container.<key>``,
    ``lot.<key>``)."""
    kind = "pack" if isinstance(ident, SGTIN) else "container" if isinstance(ident, SSCC) \
        else "lot"
    return f"{kind}.{ident.key}"


def event_key(event_hash_hex: str) -> str:
    """A captured event, by the hex of its CBV 2.0 event hash."""
    return f"{PREFIX}event/{event_hash_hex}"


def report_key(report_id: str) -> str:
    return f"{PREFIX}report/{report_id}"


def overdue_key(report_id: str) -> str:
    return f"{PREFIX}overdue/{report_id}"


# reads ----------------------------------------------------------------------------------------
def object_entry(view: StateView, ident: Ident) -> dict[str, Any] | None:
    return view.get(object_key(ident))  # type: ignore[no-any-return]


def owner_of_gtin(view: StateView, gtin: str) -> str | None:
    """The organisation whose registered company prefix the GTIN-14 carries (after its
    indicator digit), or None."""
    for length in range(6, 13):
        entry = view.get(prefix_key(gtin[1:1 + length]))
        if entry is not None:
            return str(entry["org"])
    return None


def prefix_length(view: StateView, gtin: str) -> int | None:
    """The length of the registered company prefix a GTIN-14 carries, or None."""
    for length in range(6, 13):
        if view.get_raw(prefix_key(gtin[1:1 + length])) is not None:
            return length
    return None


def party_of_org(view: StateView, org: str) -> str | None:
    return view.get(org_party_key(org))  # type: ignore[no-any-return]


def org_of_party(view: StateView, gln: str) -> str:
    """The organisation a party GLN stands for; Rejected ``unknown_party`` when none."""
    entry = view.get(party_key(gln))
    if entry is None:
        raise Rejected("unknown_party", f"no organisation registered party GLN {gln}")
    return str(entry["org"])


def member_org(view: StateView, sender: bytes) -> tuple[str, str]:
    """``(organisation, its role)`` of an active member or admin key; Rejected
    ``not_member`` for a patient's key or an organisation that is not active."""
    entry = identity.key_entry(view, sender)
    if entry is None or entry["kind"] == "patient" or not entry.get("org"):
        raise Rejected("not_member", "only a member of an organisation records supply events")
    org = identity.org_entry(view, entry["org"])
    if org is None or org["status"] != "active":
        raise Rejected("not_member", f"organisation {entry['org']} is not active")
    return str(entry["org"]), str(org["role"])

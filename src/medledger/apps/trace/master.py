"""Master data: ``trace.prefix`` (a drug maker's GS1 company prefix), ``trace.party`` (an
organisation's party GLN, which events name it by) and ``trace.product`` (a GTIN, its name
and NDC)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from medledger.apps import identity
from medledger.apps.base import BlockContext, Event, Rejected
from medledger.apps.body import Text
from medledger.apps.trace.state import (
    member_org,
    org_party_key,
    owner_of_gtin,
    party_key,
    party_of_org,
    prefix_key,
    product_key,
    stem_key,
)
from medledger.ledger import Transaction
from medledger.standards.gs1 import GS1Error, check_digit, gtin14
from medledger.state import StateView

__all__ = ["MAKER_ROLES", "PartyBody", "PrefixBody", "ProductBody"]

MAKER_ROLES = ("manufacturer",)
"""Organisation roles that register a company prefix and its products."""
_PREFIX = re.compile(r"[0-9]{6,12}")
_GLN = re.compile(r"[0-9]{13}")
_NDC = re.compile(r"[0-9]{4,5}-[0-9]{3,4}-[0-9]{1,2}")


def _admin_org(view: StateView, tx: Transaction) -> tuple[str, str]:
    org, role = member_org(view, tx.sender)
    entry = identity.key_entry(view, tx.sender)
    if entry is None or entry["role"] != "admin":
        raise Rejected("not_admin", f"only an admin of {org} registers its master data")
    return org, role


# trace.prefix ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PrefixBody:
    """A GS1 company prefix (6 to 12 digits) the sender's organisation was allocated."""

    prefix: Annotated[str, Text(12, 6)]

    def validate(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise Rejected("malformed", "prefix must be 6 to 12 digits")


def prefix_check(view: StateView, tx: Transaction, b: PrefixBody, ctx: BlockContext) -> None:
    """An admin of a drug maker; no registered prefix is this one or overlaps it."""
    _org, role = _admin_org(view, tx)
    if role not in MAKER_ROLES:
        raise Rejected("not_maker", f"a {role} does not register a company prefix")
    for length in range(6, 13):
        shorter = view.get(prefix_key(b.prefix[:length])) if length <= len(b.prefix) else None
        if shorter is not None:
            raise Rejected("prefix_taken", f"prefix {b.prefix[:length]} is registered to "
                                           f"{shorter['org']}")
    # a longer registered prefix starting with this one would make GTINs ambiguous
    longer = view.get(stem_key(b.prefix))
    if longer is not None:
        raise Rejected("prefix_taken", f"prefix {longer} is registered and starts with "
                                       f"{b.prefix}")


def prefix_apply(view: StateView, tx: Transaction, b: PrefixBody,
                 ctx: BlockContext) -> tuple[Event, ...]:
    org, _ = member_org(view, tx.sender)
    view.put(prefix_key(b.prefix), {"height": ctx.height, "org": org})
    for length in range(6, len(b.prefix)):
        view.put(stem_key(b.prefix[:length]), b.prefix)
    return (Event("trace.prefix_registered", (("prefix", b.prefix), ("org", org))),)


# trace.party ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PartyBody:
    """The party GLN (13 digits, check digit valid) the sender's organisation is known by in
    events' source and destination lists."""

    gln: Annotated[str, Text(13, 13)]

    def validate(self) -> None:
        if not _GLN.fullmatch(self.gln) or check_digit(self.gln[:-1]) != int(self.gln[-1]):
            raise Rejected("malformed", "gln must be 13 digits with a valid check digit")


def party_check(view: StateView, tx: Transaction, b: PartyBody, ctx: BlockContext) -> None:
    org, _ = _admin_org(view, tx)
    taken = view.get(party_key(b.gln))
    if taken is not None:
        raise Rejected("party_taken", f"GLN {b.gln} is {taken['org']}'s")
    if party_of_org(view, org) is not None:
        raise Rejected("exists", f"{org} already registered its GLN")


def party_apply(view: StateView, tx: Transaction, b: PartyBody,
                ctx: BlockContext) -> tuple[Event, ...]:
    org, _ = member_org(view, tx.sender)
    view.put(party_key(b.gln), {"height": ctx.height, "org": org})
    view.put(org_party_key(org), b.gln)
    return (Event("trace.party_registered", (("gln", b.gln), ("org", org))),)


# trace.product --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProductBody:
    """A product of the sender's organisation: its GTIN (8, 12, 13 or 14 digits), name and,
    where there is one, its NDC."""

    gtin: Annotated[str, Text(14, 8)]
    name: Annotated[str, Text(200)]
    ndc: Annotated[str, Text(13)] | None = None

    def validate(self) -> None:
        try:
            gtin14(self.gtin)
        except GS1Error as e:
            raise Rejected("malformed", f"gtin: {e}") from None
        if self.ndc is not None and not _NDC.fullmatch(self.ndc):
            raise Rejected("malformed", "ndc must be an NDC like 0777-3105-02")


def product_check(view: StateView, tx: Transaction, b: ProductBody,
                  ctx: BlockContext) -> None:
    """A member of the organisation that owns the GTIN's company prefix; once."""
    org, _ = member_org(view, tx.sender)
    gtin = gtin14(b.gtin)
    owner = owner_of_gtin(view, gtin)
    if owner is None:
        raise Rejected("unknown_prefix", f"GTIN {gtin} carries no registered company prefix")
    if owner != org:
        raise Rejected("not_owner", f"GTIN {gtin} is {owner}'s, not {org}'s")
    if view.get_raw(product_key(gtin)) is not None:
        raise Rejected("exists", f"product {gtin} is registered")


def product_apply(view: StateView, tx: Transaction, b: ProductBody,
                  ctx: BlockContext) -> tuple[Event, ...]:
    org, _ = member_org(view, tx.sender)
    gtin = gtin14(b.gtin)
    view.put(product_key(gtin), {"gtin": gtin, "height": ctx.height, "name": b.name,
                                 "ndc": b.ndc, "org": org})
    return (Event("trace.product_registered", (("gtin", gtin), ("org", org))),)

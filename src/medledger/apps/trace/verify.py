"""A pack's verdict: GENUINE, or SUSPECT with every reason that applies.

:func:`verdict` is a pure function of what a scan reads off the label and of two state
entries (the pack's and its lot's). The node answers ``GET /v1/trace/verify`` with it and
with the proofs of both entries (the pack's absence proved when it was never issued); a
client checks the proofs against a signed header and computes the verdict again itself, so
that a pharmacist need not trust the node that answered.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

__all__ = ["GENUINE", "REASONS", "SUSPECT", "Verdict", "verdict"]

GENUINE, SUSPECT = "GENUINE", "SUSPECT"
REASONS = {
    "never_issued": "no pack with this serial was ever commissioned (proved absent)",
    "dispensed": "this pack was already dispensed to a patient",
    "recalled": "its lot is recalled",
    "expired": "it is past its expiry date",
    "label_lot_mismatch": "the label's lot differs from the ledger's",
    "label_expiry_mismatch": "the label's expiry differs from the ledger's",
    "not_in_custody": "it is not in the scanner's custody (diverted)",
    "decommissioned": "it was decommissioned",
    "destroyed": "it was destroyed",
}
"""Every reason a verdict can give, with what it means."""


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: str
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": list(self.reasons),
                "explained": [REASONS[r] for r in self.reasons]}


def verdict(label_lot: str | None, label_expiry: str | None, pack: dict[str, Any] | None,
            lot: dict[str, Any] | None, scanner: str | None, time_ms: int) -> Verdict:
    """The verdict on a scanned pack: ``label_*`` as the label reads (None: not printed),
    ``pack`` and ``lot`` the state entries (None: absent), ``scanner`` the scanning
    organisation (None: a patient or an auditor, for whom custody does not apply),
    ``time_ms`` the block time of the state read."""
    if pack is None:
        return Verdict(SUSPECT, ("never_issued",))
    reasons = []
    if pack["status"] in ("dispensed", "decommissioned", "destroyed"):
        reasons.append(pack["status"])
    if lot is not None and lot.get("recalled") is not None:
        reasons.append("recalled")
    if pack["expiry"] < _date(time_ms):
        reasons.append("expired")
    if label_lot is not None and label_lot != pack["lot"]:
        reasons.append("label_lot_mismatch")
    if label_expiry is not None and label_expiry != pack["expiry"]:
        reasons.append("label_expiry_mismatch")
    if scanner is not None and pack["status"] == "active" and not _held_by(pack, scanner):
        reasons.append("not_in_custody")
    ordered = tuple(r for r in REASONS if r in reasons)
    return Verdict(SUSPECT if ordered else GENUINE, ordered)


def _held_by(pack: dict[str, Any], org: str) -> bool:
    """In ``org``'s custody, or on its way to ``org`` (a delivery scanned on arrival)."""
    transit = pack["transit"]
    return transit["to"] == org if transit is not None else pack["custodian"] == org


def _date(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms // 1000, datetime.UTC).date().isoformat()

"""The apps (contracts): identity, anchor, governance and evidence, records, behind one
registry.

:func:`default_registry` is the one place that lists them; the node, the API and the
command line iterate over the registry and never name an app.
"""

from medledger.apps.anchor import AnchorApp
from medledger.apps.base import (
    App,
    AppView,
    BlockContext,
    DemoTx,
    Event,
    GenesisDoc,
    Misbehavior,
    PrefixViolation,
    Rejected,
    TxType,
    ValidatorAuthority,
)
from medledger.apps.governance import GovernanceApp
from medledger.apps.host import AppClient, CommandHost, QueryError, QueryHost
from medledger.apps.identity import IdentityApp
from medledger.apps.lists import ProvableList
from medledger.apps.records import RecordsApp
from medledger.apps.trace import TraceApp
from medledger.apps.registry import BASE_CODES, AppRegistry

__all__ = [
    "BASE_CODES", "App", "AppClient", "AppRegistry", "AppView", "BlockContext",
    "CommandHost", "DemoTx", "Event", "GenesisDoc", "Misbehavior", "PrefixViolation", "ProvableList", "QueryError",
    "QueryHost", "Rejected", "TxType", "ValidatorAuthority", "default_registry",
]


def default_registry() -> AppRegistry:
    """A registry with every app this build knows."""
    return AppRegistry([IdentityApp(), AnchorApp(), GovernanceApp(), RecordsApp(), TraceApp()])

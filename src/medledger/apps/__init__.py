"""The apps (contracts): identity, ledger.anchor, governance and evidence, behind one
registry."""

from medledger.apps import anchor, governance, identity
from medledger.apps.base import AppRegistry, BlockContext, Handler, Rejected

__all__ = ["AppRegistry", "BlockContext", "Handler", "Rejected", "default_registry"]


def default_registry() -> AppRegistry:
    """A registry with every app this build knows."""
    registry = AppRegistry()
    identity.register(registry)
    anchor.register(registry)
    governance.register(registry)
    return registry

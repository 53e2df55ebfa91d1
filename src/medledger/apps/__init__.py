"""medledger.apps"""

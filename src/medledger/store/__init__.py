"""medledger.store"""

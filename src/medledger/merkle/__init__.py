"""medledger.merkle"""

"""medledger.client"""

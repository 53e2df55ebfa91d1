"""medledger.state"""

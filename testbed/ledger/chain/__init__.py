"""The optional smart-contract chain: the ledger's finalised results on a local Ethereum node.

`chain/contracts/EnergyLedger.sol` (the seed's Table 5 operations) is compiled with solc-js
(`artifact`), deployed to an anvil development node (`node`) and fed, in order, with the calls that
the embedded ledger's entries translate to (`calls`, `mirror`). Orders stay off chain.
"""

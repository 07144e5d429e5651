"""Registration, wallets and a tamper-evident ledger (`docs/ledger.md`).

Peer side: `identity.PeerIdentity` (a peer's key pair and KYC record in its own folder) signs the
registration request and orders (`orders.sign_order`). Operator side: `operator.LedgerOperator`
registers peers, admits orders (`state.LedgerState.order_problem`, `orders.order_signature_valid`)
and records clearings, deliveries, settlements and transfers through `store.LedgerWriter` (a
SHA-256 hash chain signed by the operator in the run's SQLite). Anyone: `verify.verify_run`.
"""

// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title The P2P testbed's ledger of finalised results (the seed's Table 5 operations)
/// @notice The market operator (the trusted third party, TTP) registers households, mints tokens
/// (whole paisa of the settlement currency) when a wallet opens, burns them when a household
/// leaves, records each clearing result's hash and settles each interval's transfers between the
/// wallets. Orders stay off chain. Every recorded hash is the hash of an entry of the run's
/// embedded, hash-chained ledger, so the chain anchors that ledger up to the entry's seq.
/// @dev A payer that cannot pay: it pays what it holds and the operator advances the rest, which
/// becomes the payer's debt; money that reaches a wallet with a debt repays the operator first.
/// No balance ever goes below zero (the same rule as `testbed.ledger.wallets`).
contract EnergyLedger {
    struct Wallet {
        bool open;
        uint8 kind; // 0 peer, 1 operator, 2 grid retailer, 3 network operator
        uint256 balance;
        uint256 debt;
    }

    struct Household {
        bool registered;
        bytes32 kycHash; // salted hash of the KYC record, which stays off chain
        bytes32 publicKey; // the household's Ed25519 public key (orders are signed off chain)
    }

    /// @dev One step of a settlement: `from == 0` mints `amount` to `to` (the operator's credit
    /// line), otherwise `amount` moves from `from` to `to` by the rule above.
    struct Move {
        bytes32 from;
        bytes32 to;
        uint256 amount;
    }

    address public immutable ttp;
    bytes32 public immutable runId;
    bytes32 public immutable operatorWallet;
    mapping(bytes32 => Wallet) private wallets;
    mapping(bytes32 => Household) private households;
    mapping(uint64 => bytes32) public clearingResults; // interval start (unix s) => entry hash
    mapping(uint64 => bytes32) public settlements; // interval start (unix s) => entry hash
    uint64 public appliedSeq; // the last embedded-ledger entry whose call was applied
    uint64 public anchoredSeq; // the last embedded-ledger entry whose hash is on chain
    bytes32 public anchoredHash;
    bool public closed;

    event HouseholdRegistered(bytes32 indexed wallet, bytes32 kycHash, bytes32 publicKey);
    event HouseholdDeregistered(bytes32 indexed wallet);
    event WalletOpened(bytes32 indexed wallet, uint8 kind);
    event Minted(bytes32 indexed wallet, uint256 amount);
    event Burned(bytes32 indexed wallet, uint256 amount);
    event Transferred(bytes32 indexed from, bytes32 indexed to, uint256 amount, uint256 advanced);
    event ClearingStored(uint64 indexed intervalStart, uint64 seq, bytes32 entryHash);
    event IntervalSettled(uint64 indexed intervalStart, uint64 seq, bytes32 entryHash, uint256 moves);
    event LedgerClosed(uint64 seq, bytes32 entryHash);
    event Applied(uint64 indexed ledgerSeq);

    error NotTtp();
    error SameWallet(bytes32 wallet);
    error WalletClosed(bytes32 wallet);
    error WalletAlreadyOpen(bytes32 wallet);
    error NotRegistered(bytes32 wallet);
    error InsufficientBalance(bytes32 wallet, uint256 balance, uint256 amount);
    error AlreadyRecorded(uint64 intervalStart);
    error SeqNotIncreasing(uint64 seq, uint64 anchoredSeq);
    error LedgerIsClosed();
    error AlreadyApplied(uint64 ledgerSeq, uint64 appliedSeq);

    /// @dev Every write is the call of the embedded-ledger entries up to `ledgerSeq`, and is
    /// applied once: a sender that lost the answer to a call and sends it again is refused
    /// (`AlreadyApplied`), and finds the first one by its `Applied` event.
    modifier onlyTtp(uint64 ledgerSeq) {
        if (msg.sender != ttp) revert NotTtp();
        if (closed) revert LedgerIsClosed();
        if (ledgerSeq <= appliedSeq) revert AlreadyApplied(ledgerSeq, appliedSeq);
        appliedSeq = ledgerSeq;
        _;
        emit Applied(ledgerSeq);
    }

    constructor(bytes32 runId_, bytes32 operatorWallet_) {
        ttp = msg.sender;
        runId = runId_;
        operatorWallet = operatorWallet_;
    }

    // -- registry ---------------------------------------------------------------------------

    function registerHousehold(uint64 ledgerSeq, bytes32 wallet, bytes32 kycHash, bytes32 publicKey)
        external
        onlyTtp(ledgerSeq)
    {
        households[wallet] = Household(true, kycHash, publicKey);
        _open(wallet, 0);
        emit HouseholdRegistered(wallet, kycHash, publicKey);
    }

    function deregisterHousehold(uint64 ledgerSeq, bytes32 wallet) external onlyTtp(ledgerSeq) {
        if (!households[wallet].registered) revert NotRegistered(wallet);
        households[wallet].registered = false;
        emit HouseholdDeregistered(wallet);
    }

    function isRegisteredHousehold(bytes32 wallet) external view returns (bool) {
        return households[wallet].registered;
    }

    function household(bytes32 wallet) external view returns (Household memory) {
        return households[wallet];
    }

    function openWallet(uint64 ledgerSeq, bytes32 wallet, uint8 kind) external onlyTtp(ledgerSeq) {
        _open(wallet, kind);
    }

    // -- tokens -----------------------------------------------------------------------------

    function mintToken(uint64 ledgerSeq, bytes32 wallet, uint256 amount) external onlyTtp(ledgerSeq) {
        _mint(wallet, amount);
    }

    function burnToken(uint64 ledgerSeq, bytes32 wallet, uint256 amount) external onlyTtp(ledgerSeq) {
        Wallet storage held = _wallet(wallet);
        if (amount > held.balance) revert InsufficientBalance(wallet, held.balance, amount);
        held.balance -= amount;
        emit Burned(wallet, amount);
    }

    function balanceOf(bytes32 wallet) external view returns (uint256 balance, uint256 debt) {
        Wallet storage held = wallets[wallet];
        return (held.balance, held.debt);
    }

    function transferTokens(uint64 ledgerSeq, Move[] calldata moves) external onlyTtp(ledgerSeq) {
        _apply(moves);
    }

    // -- clearing and settlement ------------------------------------------------------------

    function storeClearingResults(uint64 ledgerSeq, uint64 intervalStart, uint64 seq, bytes32 entryHash)
        external
        onlyTtp(ledgerSeq)
    {
        if (clearingResults[intervalStart] != bytes32(0)) revert AlreadyRecorded(intervalStart);
        clearingResults[intervalStart] = entryHash;
        _anchor(seq, entryHash);
        emit ClearingStored(intervalStart, seq, entryHash);
    }

    function settleInterval(
        uint64 ledgerSeq,
        uint64 intervalStart,
        uint64 seq,
        bytes32 entryHash,
        Move[] calldata moves
    )
        external
        onlyTtp(ledgerSeq)
    {
        if (settlements[intervalStart] != bytes32(0)) revert AlreadyRecorded(intervalStart);
        settlements[intervalStart] = entryHash;
        _anchor(seq, entryHash);
        _apply(moves);
        emit IntervalSettled(intervalStart, seq, entryHash, moves.length);
    }

    function closeLedger(uint64 ledgerSeq, uint64 seq, bytes32 entryHash) external onlyTtp(ledgerSeq) {
        _anchor(seq, entryHash);
        closed = true;
        emit LedgerClosed(seq, entryHash);
    }

    // -- rules ------------------------------------------------------------------------------

    function _open(bytes32 wallet, uint8 kind) private {
        if (wallets[wallet].open) revert WalletAlreadyOpen(wallet);
        wallets[wallet] = Wallet(true, kind, 0, 0);
        emit WalletOpened(wallet, kind);
    }

    function _wallet(bytes32 wallet) private view returns (Wallet storage) {
        Wallet storage held = wallets[wallet];
        if (!held.open) revert WalletClosed(wallet);
        return held;
    }

    function _mint(bytes32 wallet, uint256 amount) private {
        _wallet(wallet).balance += amount;
        emit Minted(wallet, amount);
    }

    function _anchor(uint64 seq, bytes32 entryHash) private {
        if (anchoredHash != bytes32(0) && seq <= anchoredSeq) revert SeqNotIncreasing(seq, anchoredSeq);
        anchoredSeq = seq;
        anchoredHash = entryHash;
    }

    function _apply(Move[] calldata moves) private {
        for (uint256 i = 0; i < moves.length; i++) {
            Move calldata move = moves[i];
            if (move.from == bytes32(0)) {
                _mint(move.to, move.amount);
            } else {
                _transfer(move.from, move.to, move.amount);
            }
        }
    }

    function _transfer(bytes32 from, bytes32 to, uint256 amount) private {
        if (from == to) revert SameWallet(from);
        Wallet storage payer = _wallet(from);
        Wallet storage payee = _wallet(to);
        Wallet storage operator = wallets[operatorWallet];
        uint256 paid = payer.balance < amount ? payer.balance : amount;
        uint256 advanced = amount - paid;
        if (advanced > 0 && (from == operatorWallet || (to != operatorWallet && advanced > operator.balance))) {
            revert InsufficientBalance(from, payer.balance, amount);
        }
        payer.balance -= paid;
        payer.debt += advanced;
        if (to == operatorWallet) {
            operator.balance += paid; // what the payer could not pay stays its debt
        } else {
            uint256 repaid = payee.debt < amount ? payee.debt : amount;
            operator.balance -= advanced;
            payee.debt -= repaid;
            operator.balance += repaid;
            payee.balance += amount - repaid;
        }
        emit Transferred(from, to, amount, advanced);
    }
}

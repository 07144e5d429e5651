"""The optional chain: the ledger's finalised results sent to the contract on a real anvil node
(from the npm package, started on a free loopback port by the fixture), read back with web3.py."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from testbed.ledger.chain.account import ChainKeyError, create_account_file, load_account
from testbed.ledger.chain.check import check_chain
from testbed.ledger.chain.mirror import ChainMirror, ChainRejected, ChainUnavailable
from testbed.ledger.chain.node import LocalNode, free_port, start_node
from testbed.ledger.verify import VerifyReport, verify_run
from testbed.market.book import Trade
from tests.ledger.builder import Lab, interval_start, open_lab, small_day, trading_day

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    folder = tmp_path_factory.mktemp("anvil")
    with start_node(log_path=folder / "anvil.log") as running:
        yield running


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return trading_day(tmp_path_factory.mktemp("day"))


def read_back(mirror: ChainMirror, report: VerifyReport) -> dict[str, tuple[int, int]]:
    return mirror.balances(sorted(report.wallets))


def test_a_days_settlements_on_chain_equal_the_embedded_ledger(node: LocalNode, day: Lab) -> None:
    report = verify_run(day.run_dir)
    assert report.ok, report.describe()
    mirror = ChainMirror(day.run_dir / "run.sqlite", node.url)
    mirror.connect("day")
    assert mirror.sync() > 96 * 2
    # the debts (the operator advanced for B and C), the credit lines and the leaving peers'
    # redemptions come out the same on chain, to the paisa
    assert read_back(mirror, report) == report.wallets
    assert report.wallets["C"][1] > 0
    with sqlite3.connect(day.run_dir / "run.sqlite") as conn:
        last_seq, last_hash = conn.execute(
            "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        settled = conn.execute(
            "SELECT COUNT(*) FROM chain_tx WHERE function = 'settleInterval'"
        ).fetchone()[0]
    assert mirror.anchor() == (last_seq, last_hash)  # the closing entry anchors the whole ledger
    assert settled == 96
    assert mirror.sync() == 0  # nothing is sent twice
    mirror.close()


def test_a_node_down_at_start_is_one_clear_message(day: Lab, tmp_path: Path) -> None:
    shutil.copytree(day.run_dir, tmp_path / "run")
    url = f"http://127.0.0.1:{free_port()}"
    mirror = ChainMirror(tmp_path / "run" / "run.sqlite", url, timeout_s=2.0)
    with pytest.raises(ChainUnavailable, match=f"the chain node at {url} does not answer"):
        mirror.connect("day")
    mirror.close()


def test_calls_wait_while_the_node_is_down_and_go_in_order_when_it_returns(
    tmp_path: Path,
) -> None:
    lab = open_lab(tmp_path / "lab")
    state = tmp_path / "anvil-state.json"
    port = free_port()
    node = start_node(port, state_path=state)
    mirror = ChainMirror(lab.run_dir / "run.sqlite", node.url, timeout_s=3.0)
    mirror.connect("outage")

    def trade(interval: int) -> None:
        sell = lab.order("A", "sell", 1.0, 4.0, interval)
        buy = lab.order("B", "buy", 1.0, 7.0, interval)
        lab.place([sell, buy], interval)
        trades = (Trade(buy.order_id, sell.order_id, "B", "A", 1.0, 5.5),)
        lab.settle(interval, trades, {"A": 0.8, "B": -1.3, "C": -0.4})

    trade(1)
    assert mirror.try_sync()
    node.stop()  # writes the chain's state
    for interval in (2, 3, 4):
        trade(interval)
        assert not mirror.try_sync()  # queued: the ledger keeps them
    sent_before = mirror.sent_upto()
    lab.operator.close(interval_start(5), "finished")
    lab.writer.close()

    with start_node(port, state_path=state):  # the same chain comes back
        assert mirror.sync() == 3 * 2 + 1
        report = verify_run(lab.run_dir)
        assert read_back(mirror, report) == report.wallets
        with sqlite3.connect(lab.run_dir / "run.sqlite") as conn:
            order = [
                row[0]
                for row in conn.execute(
                    "SELECT last_seq FROM chain_tx WHERE last_seq > ? ORDER BY block",
                    (sent_before,),
                )
            ]
        assert order == sorted(order)
    mirror.close()


def test_a_ledger_rewritten_after_it_went_on_chain_is_reported(
    node: LocalNode, day: Lab, tmp_path: Path
) -> None:
    mirror = ChainMirror(day.run_dir / "run.sqlite", node.url)
    mirror.connect("day")
    mirror.sync()
    mirror.close()
    assert check_chain(day.run_dir, node.url).ok
    copy = tmp_path / "run"
    shutil.copytree(day.run_dir, copy)
    with sqlite3.connect(copy / "run.sqlite") as conn:
        seq = conn.execute("SELECT MAX(seq) FROM ledger").fetchone()[0]
        conn.execute("UPDATE ledger SET hash = ? WHERE seq = ?", ("ab" * 32, seq))
    problems = check_chain(copy, node.url).problems
    assert any(p.startswith(f"the chain anchors ledger entry {seq} with hash") for p in problems)


def test_a_call_the_contract_refuses_is_named_and_ends_sending(
    node: LocalNode, day: Lab, tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(day.run_dir, copy)
    with sqlite3.connect(copy / "run.sqlite") as conn:
        conn.execute("DELETE FROM chain_tx")  # a contract of its own, from the start
        conn.execute("DELETE FROM chain_contract")
        # a redemption larger than the wallet holds: the contract refuses to burn it
        seq, data = conn.execute(
            "SELECT seq, payload FROM ledger WHERE kind = 'redeem' ORDER BY seq LIMIT 1"
        ).fetchone()
        changed = {**json.loads(data), "amount_paisa": 10**12}
        conn.execute("UPDATE ledger SET payload = ? WHERE seq = ?", (json.dumps(changed), seq))
    mirror = ChainMirror(copy / "run.sqlite", node.url)
    mirror.connect("day, changed")
    with pytest.raises(ChainRejected, match=rf"refused burnToken for ledger entry {seq}: .*"):
        mirror.sync()
    assert not mirror.try_sync()
    assert mirror.rejected is not None and f"burnToken for ledger entry {seq}" in mirror.rejected
    mirror.close()


class AnswerLosingProxy(ThreadingHTTPServer):
    """A JSON-RPC relay on loopback in front of the node that, when armed, passes the next
    transaction on to the node and then breaks the connection instead of answering: the node has
    applied it, the sender does not know."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.upstream = upstream
        self.lose_next = False
        self.lost: list[dict[str, object]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Relay(BaseHTTPRequestHandler):
    server: AnswerLosingProxy

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = urllib.request.Request(
            self.server.upstream, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = response.read()
        message = json.loads(body)
        sends = ("eth_sendTransaction", "eth_sendRawTransaction")
        if self.server.lose_next and message.get("method") in sends:
            self.server.lose_next = False
            self.server.lost.append(message)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=["node's account", "own key"])
def signer(request: pytest.FixtureRequest, node: LocalNode, tmp_path: Path) -> LocalAccount | None:
    """Who writes the contract: the node's unlocked development account, or the operator's own
    key (transactions signed by the sender, sent raw)."""
    if request.param == "node's account":
        return None
    key_file = tmp_path / "operator-chain.key"
    create_account_file(key_file)
    account = load_account(key_file)
    node.fund(account.address)
    return account


def test_a_call_whose_answer_was_lost_is_applied_once(
    node: LocalNode, signer: LocalAccount | None, tmp_path: Path
) -> None:
    lab = small_day(tmp_path / "lab")
    db = lab.run_dir / "run.sqlite"
    proxy = AnswerLosingProxy(node.url)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        mirror = ChainMirror(db, proxy.url, timeout_s=3.0, account=signer)
        mirror.connect("lost answer")
        proxy.lose_next = True
        assert not mirror.try_sync()  # the first call went through, its answer did not
        assert len(proxy.lost) == 1
        sent = mirror.sync()
        report = verify_run(lab.run_dir)
        assert read_back(mirror, report) == report.wallets  # nothing minted or opened twice
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT last_seq, tx_hash FROM chain_tx ORDER BY last_seq"
            ).fetchall()
        first_seq, first_tx = rows[0]
        assert first_tx  # found again by its Applied event
        assert len(rows) == sent + 1
        assert mirror.applied_upto() == rows[-1][0]
        mirror.close()
        # a process that stopped between sending and recording: the rows are found again
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM chain_tx WHERE last_seq > ?", (first_seq,))
        again = ChainMirror(db, proxy.url, timeout_s=3.0, account=signer)
        again.connect("lost answer")
        assert again.sync() == 0
        with sqlite3.connect(db) as conn:
            assert (
                conn.execute("SELECT last_seq, tx_hash FROM chain_tx ORDER BY last_seq").fetchall()
                == rows
            )
        assert read_back(again, report) == report.wallets
        again.close()
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_the_operator_writes_with_its_own_key_and_nobody_else_does(
    node: LocalNode, tmp_path: Path
) -> None:
    lab = small_day(tmp_path / "lab")
    db = lab.run_dir / "run.sqlite"
    key_file = tmp_path / "keys" / "chain.key"
    done = subprocess.run(
        [sys.executable, "-m", "testbed", "ledger", "chain-account", str(key_file)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    account = load_account(key_file)
    assert account.address in done.stdout
    assert key_file.stat().st_mode & 0o077 == 0  # the private key is the owner's alone
    again = subprocess.run(
        [sys.executable, "-m", "testbed", "ledger", "chain-account", str(key_file)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert again.returncode == 2 and "not overwritten" in again.stdout
    assert load_account(key_file).address == account.address

    unfunded = ChainMirror(db, node.url, account=account)
    with pytest.raises(ChainUnavailable, match=f"account {account.address} holds no ether"):
        unfunded.connect("own key")
    unfunded.close()
    node.fund(account.address)
    mirror = ChainMirror(db, node.url, account=account)
    deployment = mirror.connect("own key")
    mirror.sync()
    assert mirror.contract.functions.ttp().call() == account.address
    report = verify_run(lab.run_dir)
    assert read_back(mirror, report) == report.wallets
    mirror.close()
    # the node's development account is not the contract's writer
    other = ChainMirror(db, node.url)
    with pytest.raises(ChainUnavailable, match=f"written by account {account.address}"):
        other.connect("own key")
    other.close()
    check = check_chain(lab.run_dir, node.url, account_key_file=key_file)
    assert check.ok and check.address == deployment.address


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "found 0 characters"),
        ("0x" + "ab" * 31, "expected one private key of 64 hex digits"),
        ("zz" * 32, "expected one private key of 64 hex digits"),
        ("00" * 32, "not a valid key"),
    ],
)
def test_a_bad_key_file_is_named(tmp_path: Path, content: str, problem: str) -> None:
    key_file = tmp_path / "chain.key"
    key_file.write_text(content)
    with pytest.raises(ChainKeyError, match=f"chain account key file {key_file}: .*{problem}"):
        load_account(key_file)
    with pytest.raises(ChainKeyError, match="cannot be read"):
        load_account(tmp_path / "missing.key")


OFFLINE_SCRIPT = """
import json, sys, tempfile
from pathlib import Path
from testbed.ledger.chain.artifact import CHAIN_DIR, CONTRACT_NAME, _compile
from testbed.ledger.chain.mirror import ChainMirror
from testbed.ledger.chain.node import start_node
from testbed.ledger.verify import verify_run
from tests.ledger.builder import small_day

folder = Path(tempfile.mkdtemp())
source = CHAIN_DIR / "contracts" / f"{CONTRACT_NAME}.sol"
_compile(CHAIN_DIR, CHAIN_DIR / "compile.js", source, folder / "compiled.json")
compiled = json.loads((folder / "compiled.json").read_text())
lab = small_day(folder / "lab")
with start_node() as node:
    mirror = ChainMirror(lab.run_dir / "run.sqlite", node.url)
    mirror.connect("offline")
    sent = mirror.sync()
    report = verify_run(lab.run_dir)
    equal = mirror.balances(sorted(report.wallets)) == report.wallets
print(json.dumps({"bytecode": len(compiled["bytecode"]), "sent": sent, "equal": equal}))
"""


@pytest.mark.slow
def test_compiling_and_the_node_need_no_network(tmp_path: Path) -> None:
    """In a network namespace with nothing but loopback (root's `unshare -n`, as CI runs): solc-js
    compiles the contract and anvil runs it."""
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "-n", "true"], capture_output=True, check=False)
    if unshare is None or probe.returncode != 0:
        pytest.skip("no `unshare -n` here (needs root): cannot cut the network")
    script = tmp_path / "offline.py"
    script.write_text(OFFLINE_SCRIPT)
    shell = f"ip link set lo up 2>/dev/null; exec {sys.executable} {script}"
    done = subprocess.run(
        [unshare, "-n", "sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["bytecode"] > 1000 and result["sent"] == 17 and result["equal"]

"""Mechanisms by name, as the configuration selects them."""

from __future__ import annotations

import json

import pytest

from testbed.market import MECHANISMS, Mechanism, get_mechanism
from tests.market.books import unit_book


@pytest.mark.parametrize("name", list(MECHANISMS))
def test_every_registered_name_builds_a_mechanism_that_clears(name):
    mechanism = get_mechanism(name)
    assert isinstance(mechanism, Mechanism)
    assert mechanism.name == name
    result = mechanism.clear(unit_book([10, 9], [1, 2]))
    assert result.mechanism == name
    assert result.report["mechanism"] == name
    assert result.report["params"] == mechanism.params
    assert result.volume_kwh > 0


def test_default_is_the_uniform_auction_with_k_one_half():
    mechanism = get_mechanism()
    assert mechanism.name == "uniform"
    assert mechanism.params == {"k": 0.5}


@pytest.mark.parametrize(
    ("alias", "name"),
    [("k_double", "uniform"), ("Pay-As-Bid", "pay_as_bid"), ("continuous", "cda")],
)
def test_aliases(alias, name):
    assert get_mechanism(alias).name == name


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("english", {}, "unknown market mechanism 'english' (allowed: uniform, pay_as_bid"),
        ("uniform", {"k": 1.2}, "k = 1.2 is outside the allowed range [0, 1]"),
        ("uniform", {"k": "half"}, "k = 'half' must be a number in [0, 1]"),
        ("uniform", {"kk": 0.5}, "mechanism 'uniform' has no parameter 'kk' (its parameters: k)"),
        ("mcafee", {"k": 0.5}, "mechanism 'mcafee' has no parameter 'k' (its parameters: none)"),
    ],
)
def test_bad_names_and_parameters_are_named(name, params, message):
    with pytest.raises(ValueError) as error:
        get_mechanism(name, **params)
    assert message in str(error.value)


def test_to_document_carries_trades_report_and_curves():
    result = get_mechanism("uniform").clear(unit_book([10, 9], [1, 2]))
    document = result.to_document(result.book.interval_start)
    assert document.mechanism == "uniform"
    assert document.volume_kwh == pytest.approx(2.0)
    assert document.trades == tuple(result.trades)
    assert document.report["curves"]["clearing_point"]["kwh"] == pytest.approx(2.0)


@pytest.mark.parametrize("name", list(MECHANISMS))
def test_report_is_plain_json(name):
    book = [*unit_book([10, 9, 8], [1, 2, 9]), *unit_book([], [])]
    report = get_mechanism(name).clear(book).report
    assert json.loads(json.dumps(report, allow_nan=False)) == report

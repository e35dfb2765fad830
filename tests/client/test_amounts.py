"""The one reader of typed amounts: budgets, thresholds and top-ups, from flags and from the config."""

from __future__ import annotations

from decimal import Decimal

import pytest

from usageledger._amounts import parse_amount
from usageledger.errors import ParameterError


@pytest.mark.parametrize(
    ("value", "expected"),
    [("150", Decimal(150)), (" 12.50 ", Decimal("12.50")), (0, Decimal(0)), (2.5, Decimal("2.5"))],
)
def test_amounts_read_as_decimals(value: object, expected: Decimal) -> None:
    assert parse_amount(value, param="--budget") == expected


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (
            "lots",
            {},
            "--budget: 'lots' is not an amount (the number alone: digits and a point, no currency or unit); write it"
            " like 150 or 12.50",
        ),
        ("-5", {}, "--budget: an amount must be zero or more, got '-5'"),
        ("-5", {}, "--budget: an amount must be zero or more, got '-5'; write it like 150 or 12.50"),
        ("nan", {}, "--budget: 'nan' is not a finite number; write it like 150 or 12.50"),
        ("-inf", {}, "--budget: '-inf' is not a finite number; write it like 150 or 12.50"),
        (float("inf"), {}, "--budget: inf is not a finite number; write it like 150 or 12.50"),
        ("2", {"at_most": Decimal(1), "noun": "a rate"}, "--budget: a rate is at most 1, got '2'; write it like 150"),
        # past 28 digits, rounding to cents raised decimal.InvalidOperation where the budget was printed
        ("1e400", {}, "--budget: '1e400' is too large; an amount is below 1,000,000,000,000,000"),
        ("0", {"positive": True, "noun": "a top-up"}, "--budget: a top-up must be more than zero, got '0'"),
        ("1.0000001", {"places": 6}, "--budget: '1.0000001' has too many digits; give at most 6 decimal places"),
        (True, {}, "--budget: expected an amount"),
        (None, {}, "--budget: expected an amount"),
    ],
)
def test_bad_amounts_are_refused_naming_the_parameter(value: object, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_amount(value, param="--budget", **kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        # each says what is accepted, where every one was the same "is not an amount"
        ("5,00", {}, "'5,00' is not an amount (no commas: a point before the decimals, no thousands separators);"),
        ("1,000.50", {}, "'1,000.50' is not an amount (no commas: a point before the decimals, no thousands"),
        ("5 USD", {}, "'5 USD' is not an amount (the number alone: digits and a point, no currency or unit);"),
        ("€5", {}, "'€5' is not an amount (the number alone: digits and a point, no currency or unit);"),
        ("1.2.3", {}, "'1.2.3' is not an amount (digits with at most one point); write it like 150 or 12.50"),
        ("", {}, "'' is not an amount (no digits); write it like 150 or 12.50"),
        ("$", {}, "'$' is not an amount (no digits); write it like 150 or 12.50"),
        # the sign is what is wrong, not the `$` that `$5` is allowed (it was told "no currency or unit")
        ("-$5", {}, "an amount must be zero or more, got '-$5'; write it like 150 or 12.50"),
        ("-$0.50", {"positive": True, "noun": "a top-up"}, "a top-up must be more than zero, got '-$0.50'; write"),
        # Decimal reads `1_000` as Python source does: no number with a point, refused as a comma is
        ("1_000", {}, "'1_000' is not an amount (no underscores: a point before the decimals, no thousands"),
        ("$1_000.50", {}, "'$1_000.50' is not an amount (no underscores: a point before the decimals, no"),
        ("1_0%", {"money": False}, "'1_0%' is not an amount (no underscores"),
        ("$-5", {}, "an amount must be zero or more, got '$-5'; write it like 150 or 12.50"),
        # a threshold, a tolerance or a rate is no money: no `$`
        ("$3", {"money": False}, "'$3' is not an amount (the number alone: digits and a point, no currency"),
    ],
)
def test_each_refusal_says_what_is_accepted(value: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_amount(value, param="--budget", **kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"--budget: {message}"), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"), [("$5", Decimal(5)), (" $12.50 ", Decimal("12.50")), ("1e3", 1000), ("+$5", Decimal(5))]
)
def test_money_is_read_as_the_terminal_prints_it(value: str, expected: Decimal) -> None:
    """``$5``, as every table prints money, is 5 (it was "is not an amount"); ``1e3`` stays the exact 1000."""
    assert parse_amount(value, param="--budget") == expected

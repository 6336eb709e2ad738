"""PII detection: what is found, what is not (validated, not just matched), and masking."""

from __future__ import annotations

import random
import time

import pytest

from adaptlab.data.pii import find_pii, iban_ok, luhn_ok, mask


def kinds(text: str) -> list[tuple[str, str]]:
    return [(m.kind, m.value) for m in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Ruf mich an: +49 30 1234567 bitte", "+49 30 1234567"),
        ("Tel. 030/1234567.", "030/1234567"),
        ("mobil 0171 2345678", "0171 2345678"),
        ("mobil 01712345678", "01712345678"),
        ("Büro (030) 123 4567", "(030) 123 4567"),
        ("Zentrale +49 (0)30 1234567", "+49 (0)30 1234567"),
        ("aus dem Ausland 0049 30 1234567", "0049 30 1234567"),
        ("call +1 415 555 2671 now", "+1 415 555 2671"),
        ("E.164: +14155552671", "+14155552671"),
        ("London +44 20 7946 0958", "+44 20 7946 0958"),
        ("Hamburg 040-12345678", "040-12345678"),
    ],
)
def test_phone_numbers_found(text: str, value: str) -> None:
    assert kinds(text) == [("phone", value)]


@pytest.mark.parametrize(
    "text",
    [
        "Bestellung 12345678 ist unterwegs",  # no leading 0 or +
        "Order #2023-10-15-0042",  # a date-like order number
        "Rechnung 0815/2023",  # too short for a German number
        "Konto 0012345678",  # 00 in one piece: an account number as likely
        "am 01.02.2023 um 10:30",
        "Preis 1.234.567,89 EUR",
        "Version 1.2.3-45",
        "+1",
    ],
)
def test_not_phone_numbers(text: str) -> None:
    assert [k for k, _ in kinds(text)] == []


def test_iban_found_only_with_a_valid_check() -> None:
    assert kinds("IBAN DE89 3704 0044 0532 0130 00 danke") == [
        ("iban", "DE89 3704 0044 0532 0130 00")
    ]
    assert kinds("DE89370400440532013000") == [("iban", "DE89370400440532013000")]
    assert kinds("GB82 WEST 1234 5698 7654 32") == [("iban", "GB82 WEST 1234 5698 7654 32")]
    assert kinds("AT61 1904 3002 3457 3201") == [("iban", "AT61 1904 3002 3457 3201")]
    # One digit changed: the mod-97 check fails, and its digits are no phone or card.
    assert kinds("DE89 3704 0044 0532 0130 01") == []
    # The right check but the wrong length for Germany.
    assert not iban_ok("DE8937040044053201300")
    assert iban_ok("de89 3704 0044 0532 0130 00")
    assert not iban_ok("XX89370400440532013000")  # no such country


def test_cards_need_luhn_and_a_network_prefix() -> None:
    assert kinds("Karte 4111 1111 1111 1111 gültig") == [("credit_card", "4111 1111 1111 1111")]
    assert kinds("4111-1111-1111-1111") == [("credit_card", "4111-1111-1111-1111")]
    assert kinds("Amex 378282246310005") == [("credit_card", "378282246310005")]
    assert kinds("MC 5555 5555 5555 4444") == [("credit_card", "5555 5555 5555 4444")]
    assert kinds("4111 1111 1111 1112") == []  # Luhn fails
    assert kinds("1234 5678 9012 3456") == []  # Luhn fails, no network starts with 1
    assert kinds("ticket 0000000000000000") == []  # passes Luhn, is no card
    assert kinds("4111 1111-1111 1111") == []  # mixed separators


def test_luhn_against_random_numbers() -> None:
    """About one random number in ten passes Luhn; appending the check digit always does."""
    rng = random.Random(7)
    passed = 0
    for _ in range(2000):
        body = "".join(rng.choice("0123456789") for _ in range(15))
        passed += luhn_ok(body + "0")
        check = next(d for d in "0123456789" if luhn_ok(body + d))
        assert luhn_ok(body + check)
    assert 150 < passed < 250
    assert not luhn_ok("") and not luhn_ok("12a4") and not luhn_ok("٤١١١١١١١١١١١١١١١")


def test_email() -> None:
    assert kinds("mail an jane.doe+x@example.co.uk!") == [("email", "jane.doe+x@example.co.uk")]
    assert kinds("a@b") == [] and kinds("user@localhost") == [] and kinds("@example.com") == []


def test_masks_never_print_the_value() -> None:
    text = "IBAN DE89 3704 0044 0532 0130 00, Karte 4111111111111111, Tel 0171 2345678"
    found = find_pii(text)
    assert [m.kind for m in found] == ["iban", "credit_card", "phone"]
    for m in found:
        assert m.masked != m.value and "*" in m.masked
        assert text[m.start : m.end] == m.value
    assert mask("4111111111111111", "credit_card") == "4***********1111"
    assert mask("jane@example.com", "email") == "j***@example.com"


def test_hostile_long_inputs_are_fast() -> None:
    start = time.perf_counter()
    for text in ("+1" + "2" * 200_000, ("+1 " + "2" * 31 + " ") * 5000, "a@" * 100_000):
        find_pii(text)
    assert time.perf_counter() - start < 5

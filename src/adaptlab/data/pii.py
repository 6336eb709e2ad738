"""Personal data in training text: e-mail addresses, phone numbers, IBANs, card numbers.

A pattern finds a candidate, a validator keeps it only when it is what it looks like,
so an order number or a date is not reported as a phone number and a random 16-digit
number is not a card:

* e-mail: ``local@domain.tld`` with a dotted domain and a 2+ letter top-level domain;
* phone: international (``+49 30 1234567``, ``0049 …``, ``+1 415 555 2671``; 8-15
  digits, the E.164 maximum, ITU-T E.164) or German national with the trunk prefix 0:
  an area code then a separator (``030/1234567``, ``030 1234567``, ``(030) 1234567``,
  ``0171 2345678``) or a mobile number written in one piece (``01712345678``,
  015x/016x/017x, 11-12 digits). Digits without a leading ``+``/``00``/``0`` are never a
  phone number;
* IBAN: ISO 13616 — country code, two check digits, the country's length (SWIFT IBAN
  registry) and the mod-97 check (ISO 7064) equal to 1; printed in groups of four or in
  one piece;
* payment card: 13-19 digits (ISO/IEC 7812), in one piece or grouped with spaces or
  dashes, a network prefix (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay,
  Maestro) and the Luhn check (ISO/IEC 7812-1 annex B).

Values are reported masked (:attr:`PiiMatch.masked`): a report of personal data must not
print it again. ``phonenumbers`` or ``python-stdnum`` would validate more countries'
numbers; neither is a dependency, so these checks cover what the users write most
(German and international formats).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

PiiKind = Literal["email", "phone", "iban", "credit_card"]
KINDS: tuple[PiiKind, ...] = ("email", "phone", "iban", "credit_card")

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][\w.%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])"
)

# IBAN lengths by country, as the SWIFT IBAN registry lists them.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
# Country code, check digits, then the account part in one piece or in groups of four.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")

# 13-19 digits, one piece or groups split by one kind of separator; not the tail of a
# longer group of numbers (an IBAN that failed its check).
_CARD = re.compile(r"(?<![\d.,+-])(?<!\d[ -])\d(?:\d|[ -](?=\d)){11,22}\d(?![\d]|[.,-]\d)")
_CARD_PREFIXES = re.compile(
    r"^(?:4"  # Visa
    r"|5[1-5]|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720"  # Mastercard
    r"|3[47]"  # American Express
    r"|6011|65|64[4-9]"  # Discover
    r"|35(?:2[89]|[3-8]\d)"  # JCB
    r"|30[0-5]|36|38|39"  # Diners Club
    r"|62"  # UnionPay
    r"|50|5[6-9]|6[0-9])"  # Maestro
)

_SEP = r"(?:[ \-/]|\s?/\s?|\s-\s)"
_PHONE_INTL = re.compile(
    r"(?<![\w+])(?<!\d[ \-./])(?:\+|00)[1-9]\d{0,2}"  # country code
    r"(?:[ \-]?\(0\))?"  # German habit: +49 (0)30 …
    r"(?:[ \-./]?\(?\d{1,5}+\)?){1,6}"
    r"(?![\w])"
)
_PHONE_DE = re.compile(
    r"(?<![\w+/.,-])(?<!\d[ \-./])(?:"
    r"\(0[1-9]\d{1,4}\)\s?\d{2,8}(?:[ \-]\d{1,5}){0,3}"  # (030) 1234567
    r"|0[1-9]\d{1,4}" + _SEP + r"\d{2,8}(?:[ \-]\d{1,5}){0,3}"  # 030/1234567, 0171 2345678
    r"|01[5-7]\d{8,9}"  # 01712345678: mobile in one piece
    r")(?![\w]|[/.,-]\d)"
)


@dataclass(frozen=True)
class PiiMatch:
    """One finding: ``kind``, where it is in the text (``start``/``end``, characters) and
    the value as written; print :attr:`masked`, never ``value``."""

    kind: PiiKind
    start: int
    end: int
    value: str

    @property
    def masked(self) -> str:
        """The value with all but a few characters replaced by '*'.

        E-mail: first letter of the local part and the domain (``j***@example.com``);
        card and IBAN: country or first digit and the last 4 (``DE** **** … 3000``);
        phone: the first 3 and the last 2 digits.
        """
        return mask(self.value, self.kind)


def mask(value: str, kind: PiiKind) -> str:
    """``value`` with its identifying characters starred (see :attr:`PiiMatch.masked`)."""
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    keep_head = {"iban": 2, "credit_card": 1, "phone": 3}[kind]
    keep_tail = 2 if kind == "phone" else 4
    alnum = [i for i, ch in enumerate(value) if ch.isalnum()]
    shown = set(alnum[:keep_head]) | set(alnum[-keep_tail:])
    return "".join(ch if (i in shown or not ch.isalnum()) else "*" for i, ch in enumerate(value))


def luhn_ok(digits: str) -> bool:
    """The Luhn check (ISO/IEC 7812-1): from the right, double every second digit (minus
    9 above 9); the sum is a multiple of 10. False for anything but 2+ ASCII digits."""
    if len(digits) < 2 or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616: spaces dropped, the country's registered length, and the number formed
    by moving the first four characters to the end (letters as 10-35) is 1 mod 97."""
    s = iban.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", s):
        return False
    if IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _card_ok(raw: str) -> bool:
    seps = set(raw) - set("0123456789")
    if len(seps) > 1:  # "1234 5678-9012 3456" is not how a card is written
        return False
    digits = raw.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    if seps and any(len(g) > 6 or len(g) < 3 for g in re.split(r"[ -]", raw)):
        return False  # cards are printed in groups of 4 (Amex 4-6-5)
    return bool(_CARD_PREFIXES.match(digits)) and luhn_ok(digits)


def _ibans(text: str) -> list[PiiMatch]:
    found = []
    for m in _IBAN.finditer(text):
        raw = m.group(0)
        want = IBAN_LENGTHS.get(raw[:2])
        if want is None:
            continue
        # The greedy pattern may run into the next word: keep exactly the country's length.
        count, end = 0, 0
        for i, ch in enumerate(raw):
            if ch != " ":
                count += 1
                if count == want:
                    end = i + 1
                    break
        if not end:
            continue
        rest = text[m.start() + end : m.start() + end + 1]
        if rest.isalnum():
            continue  # longer than an IBAN of this country: an id, not an IBAN
        if iban_ok(raw[:end]):
            found.append(PiiMatch("iban", m.start(), m.start() + end, raw[:end]))
    return found


def _phone_ok(raw: str, international: bool) -> bool:
    digits = re.sub(r"\D", "", raw.replace("(0)", ""))
    if international:
        if raw.startswith("00"):
            # "0012345678" is as likely an account number: the 00 form must be grouped.
            return not raw.isdigit() and 8 <= len(digits) - 2 <= 15
        return 8 <= len(digits) <= 15
    # 9+ digits with the 0: "0815/2023" (a reference number) is not a phone number.
    return 9 <= len(digits) <= 13


def _overlaps(m: PiiMatch, taken: list[PiiMatch]) -> bool:
    return any(m.start < t.end and t.start < m.end for t in taken)


def find_pii(text: str) -> list[PiiMatch]:
    """Every validated finding in ``text``, in order of position.

    A span is reported once, by the most specific kind (IBAN, then card, then e-mail,
    then phone): the digits of an IBAN are not also a phone number.
    """
    found: list[PiiMatch] = []
    found += _ibans(text)
    for m in _CARD.finditer(text):
        card = PiiMatch("credit_card", m.start(), m.end(), m.group(0))
        if _card_ok(card.value) and not _overlaps(card, found):
            found.append(card)
    for m in _EMAIL.finditer(text):
        email = PiiMatch("email", m.start(), m.end(), m.group(0))
        if not _overlaps(email, found):
            found.append(email)
    for pattern, international in ((_PHONE_INTL, True), (_PHONE_DE, False)):
        for m in pattern.finditer(text):
            raw = m.group(0).rstrip(" -/")
            phone = PiiMatch("phone", m.start(), m.start() + len(raw), raw)
            if _phone_ok(raw, international) and not _overlaps(phone, found):
                found.append(phone)
    return sorted(found, key=lambda p: p.start)


__all__ = ["IBAN_LENGTHS", "KINDS", "PiiKind", "PiiMatch", "find_pii", "iban_ok", "luhn_ok", "mask"]

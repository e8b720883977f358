"""Chunker polynomials: random irreducible polynomials of degree 53 over GF(2).

Oracles written here, independent of the engine: brute-force trial division for small
degrees and Rabin's irreducibility test for degree 53.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_backup.repository.polynomial import DEGREE, is_irreducible, random_polynomial

RESTIC_TEST_POL = 0x3DA3358B4DC173  # restic/chunker's polynomial in its tests


def clmul(a: int, b: int) -> int:
    out = 0
    while b:
        if b & 1:
            out ^= a
        a <<= 1
        b >>= 1
    return out


def pmod(a: int, m: int) -> int:
    dm = m.bit_length()
    while a.bit_length() >= dm:
        a ^= m << (a.bit_length() - dm)
    return a


def pgcd(a: int, b: int) -> int:
    while b:
        a, b = b, pmod(a, b)
    return a


def brute_force_irreducible(p: int) -> bool:
    d = p.bit_length() - 1
    if d < 1:
        return False
    return all(pmod(p, q) != 0 for q in range(2, 1 << (d // 2 + 1)))


def rabin_irreducible_prime_degree(p: int) -> bool:
    """Rabin: for prime n = deg p, p is irreducible iff x^(2^n) = x (mod p) and
    gcd(x^2 - x, p) = 1."""
    n = p.bit_length() - 1
    x = 0b10
    power = x
    for _ in range(n):
        power = pmod(clmul(power, power), p)
    return power == x and pgcd(p, 0b110) == 1


def test_restic_test_polynomial_is_irreducible() -> None:
    assert rabin_irreducible_prime_degree(RESTIC_TEST_POL)
    assert is_irreducible(RESTIC_TEST_POL)


def test_random_polynomials_are_degree_53_and_irreducible() -> None:
    seen = set()
    for _ in range(5):
        p = random_polynomial()
        assert p.bit_length() - 1 == DEGREE == 53
        assert is_irreducible(p)
        assert rabin_irreducible_prime_degree(p)
        seen.add(p)
    assert len(seen) > 1


@pytest.mark.parametrize("p", [
    0b101,                                      # x^2 + 1 = (x + 1)^2
    0b1111,                                     # x^3 + x^2 + x + 1 = (x + 1)^3
    (1 << 53) | 1,                              # x^53 + 1, divisible by x + 1
    (1 << 53) | 0b10,                           # x^53 + x, divisible by x
    clmul(0b111, 0b1011),                       # (x^2+x+1)(x^3+x+1)
    clmul(RESTIC_TEST_POL, 0b111),
    clmul(RESTIC_TEST_POL, RESTIC_TEST_POL),
    0, 1,
])
def test_reducible_polynomials_are_rejected(p: int) -> None:
    assert not is_irreducible(p)


def test_product_of_two_random_irreducibles_is_rejected() -> None:
    a, b = random_polynomial(), random_polynomial()
    assert not is_irreducible(clmul(a, b))


@pytest.mark.parametrize("p", [0b10, 0b11, 0b111, 0b1011, 0b1101, 0b10011, (1 << 53) | 0b1000111])
def test_known_irreducible_polynomials(p: int) -> None:
    # x^53 + x^6 + x^2 + x + 1 is the usual primitive pentanomial of degree 53.
    assert brute_force_irreducible(p) if p.bit_length() < 20 else \
        rabin_irreducible_prime_degree(p)
    assert is_irreducible(p)


@settings(max_examples=300, deadline=None)
@given(p=st.integers(1, (1 << 13) - 1))
def test_agrees_with_trial_division(p: int) -> None:
    assert is_irreducible(p) == brute_force_irreducible(p)


@settings(max_examples=50, deadline=None)
@given(a=st.integers(2, (1 << 30) - 1), b=st.integers(2, (1 << 30) - 1))
def test_products_are_reducible(a: int, b: int) -> None:
    assert not is_irreducible(clmul(a, b))

"""Random irreducible polynomials over GF(2) of degree 53, restic's chunker polynomial.

restic refuses a repository whose ``chunker_polynomial`` is not irreducible, so a new
repository needs a genuine one even though our chunker (FastCDC) does not use it.
Polynomials are ints: bit i is the coefficient of x^i.
"""

from __future__ import annotations

import secrets

__all__ = ["DEGREE", "is_irreducible", "random_polynomial"]

DEGREE = 53


def _deg(p: int) -> int:
    return p.bit_length() - 1


def _mod(a: int, m: int) -> int:
    dm = _deg(m)
    while a and _deg(a) >= dm:
        a ^= m << (_deg(a) - dm)
    return a


def _mulmod(a: int, b: int, m: int) -> int:
    result = 0
    a = _mod(a, m)
    while b:
        if b & 1:
            result ^= a
        b >>= 1
        a <<= 1
        if a >> _deg(m):
            a ^= m
    return result


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, _mod(a, b)
    return a


def is_irreducible(p: int) -> bool:
    """Return whether ``p`` is irreducible over GF(2) (Ben-Or's test, as restic uses)."""
    d = _deg(p)
    if d < 1:
        return False
    x = 0b10
    power = x  # x^(2^i) mod p, built by repeated squaring
    for _ in range(d // 2):
        power = _mulmod(power, power, p)
        if _gcd(p, power ^ x) != 1:
            return False
    return True


def random_polynomial() -> int:
    """Return a random irreducible polynomial of degree 53 (about 1 in 53 candidates is)."""
    while True:
        candidate = secrets.randbits(DEGREE) | (1 << DEGREE) | 1
        if is_irreducible(candidate):
            return candidate

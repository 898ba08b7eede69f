"""62-bit keys for integer sequences (label prefixes in the beam search, LM states in the fusion cache),
computed with torch on any device, and sorted tables to look int64 keys up in (also the LM's n-grams).

A key is a polynomial ``Σ dᵢ·baseⁿ⁻ⁱ`` kept modulo two primes below 2³¹ and packed as ``(h₁ << 31) | h₂``:
every product stays below 2⁶², so int64 never overflows, and by the Chinese remainder theorem the pair is
*exact* (distinct sequences, distinct keys) while the polynomial itself stays below P₁·P₂ ≈ 4.6e18, i.e.
for sequences of up to log(4.6e18)/log(base) digits (12 labels of a 29-symbol alphabet, 5 of 1296).
Longer sequences are hashed: two keys collide with odds about 2⁻⁶², which the decoder accepts (a
collision merges two beams; it cannot crash anything).

Digits must be ≥ 1 so that a leading digit is never silent; callers add 1 to ids that can be 0.
The empty sequence has key 0. Core module: must never import a modality package.
"""
from __future__ import annotations

import torch

P1, P2 = 2147483647, 2147483629  # the two largest primes below 2**31
LOW = (1 << 31) - 1


def pack(h1, h2):
    """Key from its two residues (ints or int64 tensors)."""
    return (h1 << 31) | h2


def constant(value):
    """Key whose two residues are both ``value`` (an int, or an int64 tensor of values in [0, 2³¹ − 19))."""
    if isinstance(value, int):
        return pack(value % P1, value % P2)
    return pack(value, value)


def extend(key: torch.Tensor, mult, add) -> torch.Tensor:
    """Key of a sequence followed by more digits: ``key·mult + add`` residue by residue.

    For one digit d, ``mult = constant(base)`` and ``add = constant(d)``; for a whole suffix s, ``mult`` is
    ``constant(base**len(s))`` and ``add`` the key of s. Broadcasts like ordinary tensor arithmetic.
    """
    h1, h2 = key >> 31, key & LOW
    m1, m2 = mult >> 31, mult & LOW
    a1, a2 = add >> 31, add & LOW
    return pack((h1 * m1 + a1) % P1, (h2 * m2 + a2) % P2)


SENTINEL = (1 << 63) - 1  # above every key: closes each sorted table, so a search never runs off its end


def sorted_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ascending keys followed by SENTINEL, the permutation that sorted them): a table for :func:`lookup`."""
    keys, order = keys.sort()
    return torch.cat([keys, keys.new_tensor([SENTINEL])]), order


def align(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``values`` in the order of a :func:`sorted_keys` table (a dummy entry for the sentinel)."""
    values = values[order]
    return torch.cat([values, values.new_zeros((1,) + values.shape[1:])])


def take(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a 1-D table: index_select is several times faster than advanced indexing on CPU."""
    return table.index_select(0, index.reshape(-1)).view(index.shape)


def lookup(sorted_table: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(found, index): where each query sits in a :func:`sorted_keys` table; index is valid where found."""
    index = torch.searchsorted(sorted_table, queries.contiguous())
    return take(sorted_table, index) == queries, index

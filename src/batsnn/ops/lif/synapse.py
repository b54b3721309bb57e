"""Synapse choices: how an (output neuron, input event) pair finds its weight.

The neuron core (integration, exact root search, reset, BATS error recursion) is shared by
every layer type; a synapse says which events a neuron reads, where its weight comes from,
and where the gradients of that weight and of that input time go. Backends compile one
kernel variant per synapse type (numba specialisation / Triton ``constexpr``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dense:
    """Every output neuron reads every input event; weight ``(N_out, N_in)``."""

    kind = "dense"


DENSE = Dense()

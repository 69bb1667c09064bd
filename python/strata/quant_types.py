"""The table of GGML tensor types: id, name, block size and bytes per block.

The table is built from the ``gguf`` package (``gguf.constants``), which tracks llama.cpp's
``ggml_type`` enum, so strata knows every type id a GGUF file can legally carry. Whether a
type can actually be *computed with* is a separate question, answered by
:data:`SUPPORTED_WEIGHT_TYPES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from .errors import GGUFError

__all__ = [
    "QUANT_TYPES",
    "QUANT_TYPES_BY_NAME",
    "SUPPORTED_WEIGHT_TYPES",
    "QuantType",
    "quant_type",
    "row_bytes",
]


@dataclass(frozen=True)
class QuantType:
    """One GGML tensor type.

    ``block_size`` is the number of elements per block (1 for plain types such as F32),
    ``type_size`` the number of bytes one block occupies.
    """

    id: int
    name: str
    block_size: int
    type_size: int


QUANT_TYPES: dict[int, QuantType] = {
    int(t): QuantType(int(t), t.name, *GGML_QUANT_SIZES[t])
    for t in GGMLQuantizationType
    if t in GGML_QUANT_SIZES
}
"""Every GGML type id the ``gguf`` package knows, keyed by id."""

QUANT_TYPES_BY_NAME: dict[str, QuantType] = {q.name: q for q in QUANT_TYPES.values()}
"""The same table keyed by name ("Q4_0", "F16", ...)."""

SUPPORTED_WEIGHT_TYPES: frozenset[str] = frozenset(
    [
        "F32",
        "F16",
        "BF16",
        "Q4_0",
        "Q4_1",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "IQ4_NL",
        "IQ4_XS",
    ]
)
"""Type names strata's core can compute with. The native core extends this set."""


def quant_type(type_id: int) -> QuantType:
    """Return the :class:`QuantType` for ``type_id``.

    Raises:
        GGUFError: ``type_id`` is not a GGML type id known to the ``gguf`` package.
    """
    try:
        return QUANT_TYPES[type_id]
    except KeyError:
        raise GGUFError(f"unknown GGML tensor type id {type_id}") from None


def row_bytes(type_id: int, n_elements: int) -> int:
    """Bytes occupied by ``n_elements`` consecutive elements of type ``type_id``.

    Raises:
        GGUFError: unknown ``type_id``, negative ``n_elements``, or ``n_elements`` not a
            multiple of the type's block size.
    """
    qt = quant_type(type_id)
    if n_elements < 0:
        raise GGUFError(f"negative element count {n_elements} for type {qt.name}")
    if n_elements % qt.block_size:
        raise GGUFError(
            f"{n_elements} elements is not a multiple of the {qt.name} block size {qt.block_size}"
        )
    return n_elements // qt.block_size * qt.type_size

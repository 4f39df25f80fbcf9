"""Search-space primitives: operand, operation and schedule records and their registry."""

from nosplug.primitives.base import (
    PAPER,
    BinaryOp,
    DecayBinaryOp,
    DecayUnaryOp,
    EMASpec,
    ExecContext,
    Operand,
    OperandContext,
    OperandFamily,
    Schedule,
    StatefulOp,
    UnaryOp,
)
from nosplug.primitives.registry import (
    PluginClashError,
    Registry,
    UnknownPrimitiveError,
)

__all__ = [
    "PAPER",
    "BinaryOp",
    "DecayBinaryOp",
    "DecayUnaryOp",
    "EMASpec",
    "ExecContext",
    "Operand",
    "OperandContext",
    "OperandFamily",
    "PluginClashError",
    "Registry",
    "Schedule",
    "StatefulOp",
    "UnaryOp",
    "UnknownPrimitiveError",
]

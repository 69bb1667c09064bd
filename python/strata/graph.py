"""A readable front end to the native step graph.

Model files describe one step with these methods; each returns a handle (an int) for the
value it produces. Nothing here computes anything: the native core plans the finished graph
once and runs it for every step (see docs/architecture.md).
"""

from __future__ import annotations

from . import _core
from .errors import UnsupportedModelError
from .gguf import GGUFFile

Value = int

_ACTIVATIONS = {
    "silu": _core.Activation.silu,
    "gelu": _core.Activation.gelu,
    "gelu_tanh": _core.Activation.gelu_tanh,
}


class GraphBuilder:
    """Builds a :class:`strata._core.Graph` whose weights are tensors of one GGUF file."""

    def __init__(self, gguf: GGUFFile) -> None:
        self.gguf = gguf
        self.graph = _core.Graph()
        self._weights: dict[str, Value] = {}

    # -- inputs ------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        """True if the file has a tensor called ``name``."""
        return name in self.gguf.tensors

    def weight(self, name: str) -> Value:
        """The tensor ``name`` of the file, read in place by the backend.

        Raises:
            UnsupportedModelError: the file has no such tensor.
        """
        if name in self._weights:
            return self._weights[name]
        info = self.gguf.tensors.get(name)
        if info is None:
            raise UnsupportedModelError(f"{self.gguf.path}: missing tensor {name!r}")
        v = self.graph.weight(
            name, info.type_id, info.offset, info.nbytes, info.shape[0], info.n_rows
        )
        self._weights[name] = v
        return v

    def optional_weight(self, name: str) -> Value | None:
        """The tensor ``name``, or None if the file does not have it."""
        return self.weight(name) if self.has(name) else None

    def tokens(self) -> Value:
        """The step's token ids."""
        return self.graph.tokens()

    def positions(self) -> Value:
        """The step's absolute positions (for learned position embeddings)."""
        return self.graph.positions()

    # -- ops ---------------------------------------------------------------------------
    def _op(self, op: _core.Op, inputs: list[Value | None], **params: object) -> Value:
        p = _core.OpParams()
        for k, val in params.items():
            setattr(p, k, val)
        return self.graph.add(op, [i for i in inputs if i is not None], p)

    def embedding(self, table: Value, tokens: Value) -> Value:
        return self._op(_core.Op.embedding, [table, tokens])

    def rms_norm(self, x: Value, weight: Value | None, eps: float, head_dim: int = 0) -> Value:
        """RMSNorm of each row, or of each ``head_dim``-wide head of a row when given."""
        return self._op(_core.Op.rms_norm, [x, weight], eps=eps, head_dim=head_dim)

    def layer_norm(self, x: Value, weight: Value | None, bias: Value | None, eps: float) -> Value:
        if weight is None and bias is not None:
            raise UnsupportedModelError("layer_norm with a bias but no weight")
        return self._op(_core.Op.layer_norm, [x, weight, bias], eps=eps)

    def matmul(self, x: Value, weight: Value) -> Value:
        """``x @ weight.T``: one output column per row of the weight."""
        return self._op(_core.Op.matmul, [x, weight])

    def linear(self, x: Value, weight: str, bias: str | None = None) -> Value:
        """``x @ W.T (+ b)`` with weights named in the file; the bias only if present."""
        y = self.matmul(x, self.weight(weight))
        if bias is not None and self.has(bias):
            y = self.add(y, self.weight(bias))
        return y

    def add(self, a: Value, b: Value) -> Value:
        return self._op(_core.Op.add, [a, b])

    def mul(self, a: Value, b: Value) -> Value:
        return self._op(_core.Op.mul, [a, b])

    def scale(self, x: Value, factor: float) -> Value:
        return self._op(_core.Op.scale, [x], scale=factor)

    def activation(self, x: Value, act: str) -> Value:
        return self._op(_core.Op.activation, [x], act=_ACTIVATIONS[act])

    def glu(self, gate: Value, up: Value, act: str = "silu") -> Value:
        """``act(gate) * up``."""
        return self._op(_core.Op.glu, [gate, up], act=_ACTIVATIONS[act])

    def rope(
        self,
        x: Value,
        n_head: int,
        head_dim: int,
        base: float,
        neox: bool = False,
        n_rot: int = 0,
        freq_scale: float = 1.0,
        freq_factors: Value | None = None,
        attn_factor: float = 1.0,
    ) -> Value:
        mode = _core.RopeMode.neox if neox else _core.RopeMode.normal
        return self._op(
            _core.Op.rope,
            [x, freq_factors],
            n_head=n_head,
            head_dim=head_dim,
            n_rot=n_rot,
            rope_base=base,
            rope_mode=mode,
            rope_freq_scale=freq_scale,
            rope_attn_factor=attn_factor,
        )

    def attention(
        self,
        q: Value,
        k: Value,
        v: Value,
        n_head: int,
        n_head_kv: int,
        head_dim: int,
        scale: float = 0.0,
        window: int = 0,
        softcap: float = 0.0,
    ) -> Value:
        """Causal attention of this step's queries over the layer's KV cache (which this
        op appends k and v to). ``scale`` 0 means 1/sqrt(head_dim); ``window`` 0 is full."""
        return self._op(
            _core.Op.attention,
            [q, k, v],
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim=head_dim,
            attn_scale=scale,
            window=window,
            softcap=softcap,
        )

    def slice(self, x: Value, offset: int, width: int) -> Value:
        """Columns [offset, offset + width) of each row (splits fused qkv / gate_up)."""
        return self._op(_core.Op.slice, [x], offset=offset, width=width)

    def last_row(self, x: Value) -> Value:
        """The last token's row (every row when the step asks for all logits)."""
        return self._op(_core.Op.last_row, [x])

    def output(self, x: Value) -> None:
        self.graph.set_output(x)

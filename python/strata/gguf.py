"""A validated, read-only view of a GGUF file over one mmap.

:class:`GGUFFile` maps the file once, parses the header, the metadata and the tensor table,
and checks every count, length, dimension, type id and offset against the file before it
returns. Nothing downstream (in particular native code reading weights in place from
:attr:`GGUFFile.mmap`) ever sees a file that has not passed these checks. Any problem is a
:class:`~strata.errors.GGUFError` whose message names the file, the byte offset and the
metadata key or tensor concerned; a hostile file never causes an unbounded allocation.

Only little-endian GGUF versions 2 and 3 are read (version 1 used 32-bit counts and is
refused, as current llama.cpp does).

Metadata values become Python objects:

============================  =====================================================
GGUF value type               Python value
============================  =====================================================
uint8 .. int64                ``int``
float32, float64              ``float``
bool                          ``bool`` (a byte other than 0 or 1 is an error)
string                        ``str`` (strict UTF-8; invalid bytes are an error)
array of numbers / bools      1-D ``numpy.ndarray`` of the matching dtype (a copy,
                              native byte order; bool arrays have dtype ``bool``)
array of strings              ``list[str]``
array of arrays               refused (llama.cpp refuses it too)
============================  =====================================================
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import GGUFError, StrataValueError
from .quant_types import QUANT_TYPES, QuantType

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

__all__ = ["GGML_MAX_DIMS", "GGUF_DEFAULT_ALIGNMENT", "GGUFFile", "TensorInfo"]

GGUF_MAGIC = b"GGUF"
GGUF_DEFAULT_ALIGNMENT = 32
GGML_MAX_DIMS = 4
SUPPORTED_VERSIONS = (2, 3)

_INT64_MAX = (1 << 63) - 1
_HEADER_SIZE = 24  # magic, version (u32 each), tensor count, metadata count (u64 each)
# Fewest bytes one entry can occupy: used to reject absurd counts before reading anything.
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, one-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8  # name length, n_dims, one dim, type, offset

# GGUF metadata value types (gguf.constants.GGUFValueType).
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL = range(8)
_STRING, _ARRAY, _UINT64, _INT64, _FLOAT64 = range(8, 13)
_VALUE_TYPE_NAMES = (
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool",
    "string", "array", "uint64", "int64", "float64",
)  # fmt: skip

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# Scalar value types: (struct used to read one value, numpy dtype of an array of them).
_SCALARS: dict[int, tuple[struct.Struct, np.dtype[Any]]] = {
    _UINT8: (struct.Struct("<B"), np.dtype("<u1")),
    _INT8: (struct.Struct("<b"), np.dtype("<i1")),
    _UINT16: (struct.Struct("<H"), np.dtype("<u2")),
    _INT16: (struct.Struct("<h"), np.dtype("<i2")),
    _UINT32: (struct.Struct("<I"), np.dtype("<u4")),
    _INT32: (struct.Struct("<i"), np.dtype("<i4")),
    _FLOAT32: (struct.Struct("<f"), np.dtype("<f4")),
    _BOOL: (struct.Struct("<B"), np.dtype("<u1")),
    _UINT64: (struct.Struct("<Q"), np.dtype("<u8")),
    _INT64: (struct.Struct("<q"), np.dtype("<i8")),
    _FLOAT64: (struct.Struct("<d"), np.dtype("<f8")),
}

# Tensor types that tensor_array() returns as plain numpy element arrays.
_PLAIN_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "F64": np.dtype("<f8"),
    "I8": np.dtype("<i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table, already validated against the file.

    ``shape`` is in GGML order: ``shape[0]`` (ne[0]) is the row length, the fastest-varying
    dimension. ``offset`` is the ABSOLUTE byte offset of the data in the file, ``nbytes``
    its size in bytes.
    """

    name: str
    shape: tuple[int, ...]
    type_id: int
    type_name: str
    offset: int
    nbytes: int
    n_elements: int

    @property
    def n_rows(self) -> int:
        """Number of rows (elements / ne[0])."""
        return self.n_elements // self.shape[0]

    @property
    def row_bytes(self) -> int:
        """Bytes per row of ``shape[0]`` elements."""
        return self.nbytes // self.n_rows


def _align_up(x: int, alignment: int) -> int:
    return (x + alignment - 1) // alignment * alignment


class _Parser:
    """Cursor over the mapped file; every read is bounds-checked first."""

    __slots__ = ("buf", "path", "pos", "size")

    def __init__(self, buf: mmap.mmap, size: int, path: str) -> None:
        self.buf = buf
        self.size = size
        self.path = path
        self.pos = 0

    def error(self, offset: int, msg: str) -> GGUFError:
        return GGUFError(f"{self.path}: byte {offset}: {msg}")

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise self.error(
                self.pos,
                f"{what} needs {n} bytes but only {self.size - self.pos} remain "
                f"(file truncated or length corrupt; file size {self.size})",
            )

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

    def string(self, what: str) -> str:
        start = self.pos
        n = self.u64(f"length of {what}")
        if n > self.size - self.pos:
            raise self.error(
                start,
                f"{what}: string length {n} runs past the end of the file "
                f"({self.size - self.pos} bytes remain)",
            )
        raw = self.buf[self.pos : self.pos + n]
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.error(self.pos + e.start, f"{what}: string is not valid UTF-8") from None
        self.pos += n
        return s

    # -- metadata values -----------------------------------------------------------------

    def value(self, vtype: int, key: str) -> object:
        what = f"metadata key {key!r}"
        if vtype == _STRING:
            return self.string(f"{what} (string value)")
        if vtype == _ARRAY:
            return self.array(key)
        scalar = _SCALARS.get(vtype)
        if scalar is None:
            raise self.error(self.pos - 4, f"{what}: unknown value type {vtype}")
        st = scalar[0]
        self.need(st.size, f"{what} ({_VALUE_TYPE_NAMES[vtype]} value)")
        (v,) = st.unpack_from(self.buf, self.pos)
        if vtype == _BOOL:
            if v > 1:
                raise self.error(self.pos, f"{what}: bool value is {v}, not 0 or 1")
            v = bool(v)
        self.pos += st.size
        return v

    def array(self, key: str) -> object:
        what = f"metadata key {key!r}"
        start = self.pos
        etype = self.u32(f"{what} (array element type)")
        if etype == _ARRAY:
            raise self.error(start, f"{what}: arrays of arrays are not supported")
        if etype != _STRING and etype not in _SCALARS:
            raise self.error(start, f"{what}: unknown array element type {etype}")
        count_pos = self.pos
        n = self.u64(f"{what} (array length)")
        min_size = 8 if etype == _STRING else _SCALARS[etype][0].size
        remain = self.size - self.pos
        if n > remain // min_size:
            raise self.error(
                count_pos,
                f"{what}: array of {n} {_VALUE_TYPE_NAMES[etype]} values cannot fit in the "
                f"{remain} bytes that remain",
            )
        if etype == _STRING:
            return self.string_array(n, key)
        dtype = _SCALARS[etype][1]
        arr = np.frombuffer(self.buf, dtype=dtype, count=n, offset=self.pos).astype(
            dtype.newbyteorder("=")
        )
        if etype == _BOOL:
            bad = np.flatnonzero(arr > 1)
            if bad.size:
                i = int(bad[0])
                raise self.error(
                    self.pos + i, f"{what}: bool array element {i} is {arr[i]}, not 0 or 1"
                )
            arr = arr.astype(np.bool_)
        self.pos += n * dtype.itemsize
        return arr

    def string_array(self, n: int, key: str) -> list[str]:
        # The hot loop of the whole reader (262,144 tokens in Gemma 3): locals only.
        buf, size, pos = self.buf, self.size, self.pos
        unpack = _U64.unpack_from
        out: list[str] = []
        append = out.append
        for i in range(n):
            if size - pos < 8:
                self.pos = pos
                self.need(8, f"metadata key {key!r}: length of array element {i}")
            (ln,) = unpack(buf, pos)
            end = pos + 8 + ln
            if end > size:
                raise self.error(
                    pos,
                    f"metadata key {key!r}: array element {i}: string length {ln} runs past "
                    f"the end of the file ({size - pos - 8} bytes remain)",
                )
            try:
                append(buf[pos + 8 : end].decode("utf-8"))
            except UnicodeDecodeError as e:
                raise self.error(
                    pos + 8 + e.start,
                    f"metadata key {key!r}: array element {i} is not valid UTF-8",
                ) from None
            pos = end
        self.pos = pos
        return out


class GGUFFile:
    """A GGUF file mapped read-only and validated.

    Attributes:
        path: the path given to the constructor, as a string.
        file_size: size of the file in bytes.
        version: GGUF version (2 or 3).
        alignment: data alignment in bytes (``general.alignment``, default 32).
        data_offset: absolute byte offset where tensor data starts (aligned up).
        metadata: every metadata key and value, in file order (see the module docstring
            for the Python types of values).
        tensors: the tensor table, name -> :class:`TensorInfo`, in file order.

    Use as a context manager, or call :meth:`close`.
    """

    path: str
    file_size: int
    version: int
    alignment: int
    data_offset: int
    metadata: dict[str, object]
    tensors: dict[str, TensorInfo]

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Map and validate the file at ``path``.

        Raises:
            GGUFError: the file is not a valid little-endian GGUF v2/v3 file; the message
                names the byte offset and the metadata key or tensor concerned.
            OSError: the file cannot be opened (missing, permissions, a directory).
        """
        self.path = os.fspath(path)
        self._mmap: mmap.mmap | None = None
        with open(self.path, "rb") as f:
            self.file_size = os.fstat(f.fileno()).st_size
            if self.file_size == 0:
                raise GGUFError(f"{self.path}: byte 0: file is empty, not a GGUF file")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._parse(_Parser(mm, self.file_size, self.path))
        except BaseException:
            _close_quietly(mm)
            raise
        self._mmap = mm

    # -- parsing -------------------------------------------------------------------------

    def _parse(self, p: _Parser) -> None:
        p.need(4, "magic")
        magic = p.buf[0:4]
        if magic != GGUF_MAGIC:
            raise p.error(0, f"bad magic {magic!r}, expected {GGUF_MAGIC!r}: not a GGUF file")
        p.pos = 4
        self.version = self._read_version(p)
        p.need(16, "header (tensor count and metadata count)")
        n_tensors = p.u64("tensor count")
        n_kv = p.u64("metadata count")
        body = self.file_size - _HEADER_SIZE
        if n_tensors > body // _MIN_TENSOR_INFO_BYTES:
            raise p.error(
                8,
                f"absurd tensor count {n_tensors}: a {self.file_size}-byte file holds at most "
                f"{body // _MIN_TENSOR_INFO_BYTES} tensor infos",
            )
        if n_kv > body // _MIN_KV_BYTES:
            raise p.error(
                16,
                f"absurd metadata count {n_kv}: a {self.file_size}-byte file holds at most "
                f"{body // _MIN_KV_BYTES} key/value pairs",
            )
        if n_tensors * _MIN_TENSOR_INFO_BYTES + n_kv * _MIN_KV_BYTES > body:
            raise p.error(
                8,
                f"{n_tensors} tensor infos and {n_kv} metadata pairs cannot fit in a "
                f"{self.file_size}-byte file",
            )
        self.metadata = {}
        self.alignment = GGUF_DEFAULT_ALIGNMENT
        for i in range(n_kv):
            self._read_kv(p, i)
        self.tensors = {}
        info_pos: dict[str, int] = {}  # where each tensor's offset field is, for errors
        for i in range(n_tensors):
            info_pos.update(self._read_tensor_info(p, i))
        self.data_offset = _align_up(p.pos, self.alignment)
        self._place_tensors(p, info_pos)

    def _read_version(self, p: _Parser) -> int:
        version = p.u32("version")
        if version in SUPPORTED_VERSIONS:
            return version
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if version & 0xFFFF == 0 and 1 <= swapped <= 0xFFFF:
            raise p.error(
                4,
                f"big-endian GGUF file (version field reads {version:#x} little-endian, "
                f"{swapped} big-endian): only little-endian GGUF files are supported",
            )
        if version == 1:
            raise p.error(
                4, "unsupported GGUF version 1 (32-bit counts); versions 2 and 3 are read"
            )
        raise p.error(4, f"unsupported GGUF version {version}; versions 2 and 3 are read")

    def _read_kv(self, p: _Parser, index: int) -> None:
        start = p.pos
        key = p.string(f"metadata key #{index}")
        if key in self.metadata:
            raise p.error(start, f"duplicate metadata key {key!r}")
        type_pos = p.pos
        vtype = p.u32(f"metadata key {key!r} (value type)")
        if vtype > _FLOAT64:
            raise p.error(type_pos, f"metadata key {key!r}: unknown value type {vtype}")
        value_pos = p.pos
        value = p.value(vtype, key)
        if key == "general.alignment":
            if vtype != _UINT32:
                raise p.error(
                    value_pos,
                    f"metadata key {key!r} must be uint32, not {_VALUE_TYPE_NAMES[vtype]}",
                )
            assert isinstance(value, int)
            if value == 0 or value & (value - 1):
                raise p.error(
                    value_pos, f"metadata key {key!r} is {value}, not a nonzero power of two"
                )
            self.alignment = value
        self.metadata[key] = value

    def _read_tensor_info(self, p: _Parser, index: int) -> dict[str, int]:
        start = p.pos
        name = p.string(f"name of tensor #{index}")
        if name in self.tensors:
            raise p.error(start, f"duplicate tensor name {name!r}")
        what = f"tensor {name!r}"
        ndims_pos = p.pos
        n_dims = p.u32(f"{what} (n_dims)")
        if not 1 <= n_dims <= GGML_MAX_DIMS:
            raise p.error(ndims_pos, f"{what}: n_dims is {n_dims}, must be 1..{GGML_MAX_DIMS}")
        shape: list[int] = []
        n_elements = 1
        for d in range(n_dims):
            dim_pos = p.pos
            ne = p.u64(f"{what} (ne[{d}])")
            if ne == 0 or ne > _INT64_MAX:
                raise p.error(dim_pos, f"{what}: ne[{d}] is {ne}, must be in 1..2**63-1")
            n_elements *= ne
            if n_elements > _INT64_MAX:
                raise p.error(
                    dim_pos,
                    f"{what}: element count (product of dims {[*shape, ne]}) overflows int64",
                )
            shape.append(ne)
        type_pos = p.pos
        type_id = p.u32(f"{what} (type)")
        qt: QuantType | None = QUANT_TYPES.get(type_id)
        if qt is None:
            raise p.error(type_pos, f"{what}: unknown GGML type id {type_id}")
        if shape[0] % qt.block_size:
            raise p.error(
                ndims_pos + 4,
                f"{what}: row length ne[0]={shape[0]} is not a multiple of the {qt.name} "
                f"block size {qt.block_size}",
            )
        off_pos = p.pos
        rel = p.u64(f"{what} (data offset)")
        if rel % self.alignment:
            raise p.error(
                off_pos,
                f"{what}: data offset {rel} is not a multiple of the alignment {self.alignment}",
            )
        nbytes = n_elements // qt.block_size * qt.type_size
        # offset is made absolute in _place_tensors, once the size of the table is known.
        self.tensors[name] = TensorInfo(
            name, tuple(shape), type_id, qt.name, rel, nbytes, n_elements
        )
        return {name: off_pos}

    def _place_tensors(self, p: _Parser, info_pos: dict[str, int]) -> None:
        placed: dict[str, TensorInfo] = {}
        for name, t in self.tensors.items():
            start = self.data_offset + t.offset
            end = start + t.nbytes
            if end > self.file_size:
                raise p.error(
                    info_pos[name],
                    f"tensor {name!r}: data [{start}, {end}) runs past the end of the file "
                    f"(size {self.file_size})",
                )
            placed[name] = TensorInfo(
                t.name, t.shape, t.type_id, t.type_name, start, t.nbytes, t.n_elements
            )
        self.tensors = placed
        by_offset = sorted(placed.values(), key=lambda t: t.offset)
        for a, b in zip(by_offset[:-1], by_offset[1:]):
            if a.offset + a.nbytes > b.offset:
                raise p.error(
                    info_pos[b.name],
                    f"tensor {b.name!r}: data at {b.offset} overlaps tensor {a.name!r} "
                    f"[{a.offset}, {a.offset + a.nbytes})",
                )

    # -- access --------------------------------------------------------------------------

    @property
    def mmap(self) -> mmap.mmap:
        """The read-only map of the whole file, for reading weights in place.

        Raises:
            StrataValueError: the file has been closed.
        """
        if self._mmap is None:
            raise StrataValueError(f"{self.path}: GGUF file is closed")
        return self._mmap

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._mmap is None

    def close(self) -> None:
        """Release the map. Idempotent.

        Views returned by :meth:`tensor_data` and :meth:`tensor_array` stay valid: if any are
        alive, the map is released when the last of them is garbage-collected.
        """
        mm, self._mmap = self._mmap, None
        if mm is not None:
            _close_quietly(mm)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.tensors)} tensors"
        return f"GGUFFile({self.path!r}, v{self.version}, {state})"

    def __iter__(self) -> Iterator[TensorInfo]:
        """Iterate over the tensor table in file order."""
        return iter(self.tensors.values())

    def get(self, key: str, default: object = None) -> object:
        """Return metadata value ``key``, or ``default`` if the file does not have it."""
        return self.metadata.get(key, default)

    @property
    def arch(self) -> str:
        """The architecture name (``general.architecture``).

        Raises:
            GGUFError: the key is missing or is not a string.
        """
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise GGUFError(
                f"{self.path}: metadata key 'general.architecture' is missing or not a string"
            )
        return arch

    def arch_key(self, suffix: str, default: object = ...) -> object:
        """Return ``metadata[f"{arch}.{suffix}"]`` (e.g. ``arch_key("block_count")``).

        Raises:
            GGUFError: the key is missing and no ``default`` was given, or the architecture
                is missing.
        """
        key = f"{self.arch}.{suffix}"
        if key in self.metadata:
            return self.metadata[key]
        if default is ...:
            raise GGUFError(f"{self.path}: metadata key {key!r} is missing")
        return default

    def tensor_data(self, name: str) -> memoryview:
        """The raw bytes of tensor ``name``: a read-only memoryview slice of the map.

        Raises:
            KeyError: no tensor of that name.
            StrataValueError: the file has been closed.
        """
        t = self.tensors[name]
        return memoryview(self.mmap)[t.offset : t.offset + t.nbytes]

    def tensor_array(self, name: str) -> np.ndarray:
        """A read-only numpy view of tensor ``name`` in the map (no copy).

        F32, F16, F64, I8, I16, I32 and I64 tensors have their own dtype and shape
        ``reversed(info.shape)`` (numpy row-major order: the last axis is ne[0]). Every other
        (block-quantized, BF16) type is ``uint8`` of shape ``(n_rows, row_bytes)``.

        Raises:
            KeyError: no tensor of that name.
            StrataValueError: the file has been closed.
        """
        t = self.tensors[name]
        dtype = _PLAIN_DTYPES.get(t.type_name)
        if dtype is not None:
            arr = np.frombuffer(self.mmap, dtype=dtype, count=t.n_elements, offset=t.offset)
            return arr.reshape(tuple(reversed(t.shape)))
        arr = np.frombuffer(self.mmap, dtype=np.uint8, count=t.nbytes, offset=t.offset)
        return arr.reshape(t.n_rows, t.row_bytes)


def _close_quietly(mm: mmap.mmap) -> None:
    # BufferError: views into the map are still alive; it is unmapped when the last one goes.
    with contextlib.suppress(BufferError):
        mm.close()

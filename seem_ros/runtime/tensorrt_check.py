"""Static TensorRT readiness of ONNX graphs, checked without TensorRT.

Every exported graph is checked against the onnx-tensorrt ONNX-parser operator support matrix
(``docs/operators.md``), recorded per TensorRT version in ``tensorrt_ops.json`` (sources, commits
and the derivation of the 10.3 profile are in that file). For each targeted version
(:data:`TARGETS`: 10.3, JetPack 6, and 10.15, the newest list; no 11.x list has been published in
onnx-tensorrt, so 11.x is not checked):

* every node is an ONNX (default-domain) operator marked supported; custom domains and local
  functions (which would need plugins) are refused;
* the restrictions column in checkable form (``rules``): attribute values and modes (e.g. Resize
  ``mode``, ``coordinate_transformation_mode``, ``antialias``), inputs that must be build-time
  constants (Reduce ``axes``, Squeeze/Unsqueeze ``axes``, CumSum ``axis``), pooling rank and
  dilations, extra outputs, the model opset range;
* static shapes: every graph input, output and inferred intermediate dimension is a number, except
  for graphs whose interface declares symbolic dims (``dynamic_ok``: the ``text`` graph);
* types TensorRT narrows silently: DOUBLE (cast to FLOAT, clamped to +-FLT_MAX, per the 10.x
  lists). INT64 is native since TensorRT 9.0 ("The ONNX parser no longer automatically casts INT64
  to INT32", onnx-tensorrt ``docs/Changelog.md``), so INT64 graph I/O is kept; TensorRT 8.x clamped
  INT64 to +-INT_MAX. As project policy, INT64 constants outside the int32 range are refused
  anyway, except Slice ``starts``/``ends`` (ONNX clamps them to the dimension, so ``INT64_MAX``
  means "to the end" whatever the integer width).

Warnings (recorded, not fatal): an op's data type (the tensors bound to its first input's type
variable; the output for ``Constant``/``ConstantOfShape``) missing from the list's Supported Types
column, e.g. INT64 into CumSum or BOOL into ScatterND (the column documents tested types; a TensorRT
run decides, ``strict_types=True`` makes them errors); restrictions that cannot be judged statically
(e.g. RNN activations); changelog notes for 10.3 (ScatterND at opset >= 18 fixed in 10.9). What this
does not replace: parsing and building with TensorRT itself (kernels, precision, memory), which has
not run here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

if TYPE_CHECKING:                   # onnx is imported where it is needed
    from onnx import NodeProto

from .export import ExportParityError

DATA_FILE = Path(__file__).with_name('tensorrt_ops.json')
DEFAULT_DOMAINS = ('', 'ai.onnx')
INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1
FLOAT_TYPES = ('FLOAT', 'FLOAT16', 'BFLOAT16')


@dataclass(frozen=True)
class Problem:
    """One unsupported construct: the node's op type and name, why, and for which TensorRT versions."""

    op_type: str
    node: str
    reason: str
    versions: Tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f' (TensorRT {", ".join(self.versions)})' if self.versions else ''
        return f'{self.op_type} node {self.node!r}: {self.reason}{where}'


class TensorRTSupportError(ExportParityError):
    """A graph uses constructs the TensorRT ONNX parser does not support (nothing was written)."""

    def __init__(self, problems: Sequence[Problem], graph: str = ''):
        self.problems = list(problems)
        head = f'{graph}: ' if graph else ''
        super().__init__(f'{head}{len(self.problems)} construct(s) not supported by the TensorRT ONNX parser: '
                         + '; '.join(str(p) for p in self.problems))


@dataclass
class Report:
    """Outcome of :func:`analyze`: ``errors`` fail a graph, ``warnings`` are restrictions not judged statically."""

    versions: Tuple[str, ...]
    errors: List[Problem] = field(default_factory=list)
    warnings: List[Problem] = field(default_factory=list)


# ---------------------------------------------------------------------------------- the recorded lists
@dataclass(frozen=True)
class Profile:
    """The operator support of one TensorRT version (see ``tensorrt_ops.json``)."""

    version: str
    source: str
    opset: Tuple[int, int]
    ops: Dict[str, FrozenSet[str]]          # supported op -> ONNX type names (empty: not listed)
    unsupported: Dict[str, str]             # op -> why
    rules: Dict[str, dict]
    data_types: FrozenSet[str]
    narrowed: Dict[str, str]
    io_only: FrozenSet[str]


@lru_cache(maxsize=None)
def _data() -> dict:
    return json.loads(DATA_FILE.read_text())


TARGETS: Tuple[str, ...] = tuple(_data()['targets'])


@lru_cache(maxsize=None)
def profile(version: str) -> Profile:
    """The :class:`Profile` of TensorRT ``version`` (a key of ``profiles`` in ``tensorrt_ops.json``)."""
    data = _data()
    raw = data['profiles'][version]
    names = data['type_names']
    if 'base' in raw:
        base = profile(raw['base'])
        removed = raw.get('remove_ops', {})
        rules = {op: dict(rule) for op, rule in base.rules.items()}
        for op, rule in raw.get('rules', {}).items():
            merged = rules.setdefault(op, {})
            for key, value in rule.items():
                if key == 'const_inputs':
                    merged[key] = sorted(set(merged.get(key, [])) | set(value))
                elif key != 'why':
                    merged[key] = value
        unsupported = dict(base.unsupported)
        unsupported.update({op: f'not supported before TensorRT {why.split(":")[0]} (onnx-tensorrt changelog)'
                            for op, why in removed.items()})
        return Profile(version, raw['source'], tuple(raw['opset']),
                       {op: t for op, t in base.ops.items() if op not in removed}, unsupported, rules,
                       base.data_types, base.narrowed, base.io_only)
    ops = {op: frozenset(names[t] for t in entry['types']) for op, entry in raw['ops'].items()}
    unsupported = {op: 'marked unsupported (N) in the operator list' for op in raw['unsupported']}
    return Profile(version, raw['source'], tuple(raw['opset']), ops, unsupported, raw.get('rules', {}),
                   frozenset(names.get(t, t) for t in raw['data_types']),
                   {names.get(t, t): why for t, why in raw.get('narrowed_types', {}).items()},
                   frozenset(names[t] for t in raw.get('io_only_types', [])))


def sources(versions: Iterable[str] = TARGETS) -> Dict[str, str]:
    """``version -> 'repository path@commit'`` of the list each version was checked against."""
    data = _data()
    out = {}
    for version in versions:
        raw = data['profiles'][version]
        chain = [raw['source']] + ([data['profiles'][raw['base']]['source']] if 'base' in raw else [])
        out[version] = ' + '.join(f'{data["sources"][s]["path"]}@{data["sources"][s].get("commit", "?")[:12]}'
                                  for s in chain)
    return out


# ---------------------------------------------------------------------------------- graph facts
class _Graphs:
    """Version-independent facts of a model: its (nested) graphs, types, shapes, constants."""

    def __init__(self, model):
        import onnx
        from onnx import TensorProto

        self.onnx = onnx
        self.model = model
        try:
            inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
        except Exception:          # a model shape inference cannot handle is still checked by op
            inferred = model
        self.opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)
        self.type_name = {v: k for k, v in TensorProto.DataType.items()}
        self.types: Dict[str, str] = {}
        self.shapes: Dict[str, Optional[List[Optional[int]]]] = {}
        self.const: Dict[str, Any] = {}              # name -> TensorProto or python value (Constant attrs)
        self.producer: Dict[str, NodeProto] = {}
        self.consumers: Dict[str, List[Tuple[NodeProto, int]]] = {}
        self.graphs = list(_walk(inferred.graph))
        self.nodes = [node for graph in self.graphs for node in graph.node]
        for graph in self.graphs:
            inputs = {v.name for v in graph.input}
            for value in list(graph.input) + list(graph.output) + list(graph.value_info):
                self._value(value)
            for tensor in graph.initializer:
                self.types[tensor.name] = self.type_name.get(tensor.data_type, str(tensor.data_type))
                self.shapes[tensor.name] = list(tensor.dims)
                if tensor.name not in inputs:
                    self.const[tensor.name] = tensor
            for node in graph.node:
                for out in node.output:
                    if out:
                        self.producer[out] = node
                for i, name in enumerate(node.input):
                    if name:
                        self.consumers.setdefault(name, []).append((node, i))
                if node.op_type == 'Constant' and node.domain in DEFAULT_DOMAINS and node.output:
                    self.const[node.output[0]] = _constant_value(node)
        self.io = [(v, 'graph input') for v in inferred.graph.input] + [(v, 'graph output')
                                                                          for v in inferred.graph.output]

    def _value(self, value) -> None:
        kind = value.type.WhichOneof('value')
        if kind != 'tensor_type':
            self.types[value.name] = kind or 'unknown'
            return
        t = value.type.tensor_type
        if t.elem_type:
            self.types[value.name] = self.type_name.get(t.elem_type, str(t.elem_type))
        if t.HasField('shape'):
            self.shapes[value.name] = [d.dim_value if d.HasField('dim_value') else None for d in t.shape.dim]

    def array(self, name: str) -> Optional[np.ndarray]:
        """The value of constant ``name`` (None when it is not a constant)."""
        value = self.const.get(name)
        if value is None:
            return None
        if hasattr(value, 'data_type'):
            from onnx import numpy_helper
            return numpy_helper.to_array(value)
        return np.asarray(value)

    def where(self, name: str) -> Tuple[str, str]:
        """(op type, node name) that produces ``name``, for messages."""
        node = self.producer.get(name)
        if node is None:
            return ('initializer' if name in self.const else 'graph input'), name
        return node.op_type, node.name or name


def _walk(graph) -> Iterator:
    """``graph`` and every graph nested in node attributes (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField('g'):
                yield from _walk(attr.g)
            for sub in attr.graphs:
                yield from _walk(sub)


def _constant_value(node):
    for attr in node.attribute:
        if attr.name == 'value':
            return attr.t
        if attr.name in ('value_int', 'value_float'):
            return attr.i if attr.name == 'value_int' else attr.f
        if attr.name in ('value_ints', 'value_floats'):
            return list(attr.ints) if attr.name == 'value_ints' else list(attr.floats)
    return None


def _attr(node, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            if attr.type == attr.STRING:
                return attr.s.decode()
            if attr.type == attr.INT:
                return attr.i
            if attr.type == attr.FLOAT:
                return attr.f
            if attr.type == attr.INTS:
                return list(attr.ints)
            if attr.type == attr.STRINGS:
                return [s.decode() for s in attr.strings]
            return attr
    return default


def _has_attr(node, name: str) -> bool:
    return any(a.name == name for a in node.attribute)


@lru_cache(maxsize=None)
def _formal_types(op_type: str, opset: int) -> Optional[Tuple[Tuple[str, ...], Tuple[str, ...], bool]]:
    """(input type strings, output type strings, last input variadic) of an ONNX op, or None."""
    from onnx import defs
    try:
        schema = defs.get_schema(op_type, opset, '')
    except Exception:
        return None
    variadic = bool(schema.inputs) and schema.inputs[-1].option == defs.OpSchema.FormalParameterOption.Variadic
    return tuple(p.type_str for p in schema.inputs), tuple(p.type_str for p in schema.outputs), variadic


def _data_tensors(node, opset: int) -> List[str]:
    """Names of the tensors holding the op's data type (what the Supported Types column lists)."""
    formal = _formal_types(node.op_type, opset)
    if formal is None:
        return []
    inputs, outputs, variadic = formal
    if node.op_type in ('Constant', 'ConstantOfShape') or not inputs:
        return [o for o in node.output[:1] if o]
    main = inputs[1] if node.op_type == 'Where' else inputs[0]
    if main.startswith('tensor('):
        return []
    names = []
    for i, name in enumerate(node.input):
        formal_type = inputs[min(i, len(inputs) - 1)] if (variadic or i < len(inputs)) else None
        if name and formal_type == main:
            names.append(name)
    names += [o for o, t in zip(node.output, outputs) if o and t == main]
    if node.op_type in ('Cast', 'CastLike'):
        names += [o for o in node.output[:1] if o]
    return names


# ---------------------------------------------------------------------------------- the checks
def analyze(model_or_path: Union[str, Path, object], *, dynamic_ok: bool = False,
            versions: Optional[Sequence[str]] = None, strict_types: bool = False) -> Report:
    """Errors and warnings of a model (ModelProto or path) for TensorRT ``versions`` (default :data:`TARGETS`).

    ``dynamic_ok``: symbolic dims allowed (graphs whose interface declares them). ``strict_types``: a data
    type missing from an op's Supported Types column is an error (default: a warning, see the module
    docstring).
    """
    import onnx

    model = model_or_path if hasattr(model_or_path, 'graph') else onnx.load(str(model_or_path))
    versions = tuple(versions or TARGETS)
    facts = _Graphs(model)
    errors: Dict[Tuple[str, str, str], List[str]] = {}
    warnings: Dict[Tuple[str, str, str], List[str]] = {}
    for version in versions:
        found: list = []
        typed: Optional[list] = [] if strict_types else None
        for key in _check_profile(facts, profile(version), found, typed):
            errors.setdefault(key, []).append(version)
        for key in typed or ():
            errors.setdefault(key, []).append(version)
        for key in found:
            warnings.setdefault(key, []).append(version)
    for key in _check_common(facts, dynamic_ok):
        errors.setdefault(key, []).extend(versions)

    def problems(found):
        return [Problem(op, node, reason, tuple(dict.fromkeys(vs))) for (op, node, reason), vs in found.items()]
    return Report(versions, problems(errors), problems(warnings))


def check_graph(model_or_path, *, dynamic_ok: bool = False, versions: Optional[Sequence[str]] = None,
                strict_types: bool = False) -> List[Problem]:
    """The unsupported constructs of a model (ModelProto or path); empty when TensorRT-ready."""
    return analyze(model_or_path, dynamic_ok=dynamic_ok, versions=versions, strict_types=strict_types).errors


def require_supported(model_or_path, *, dynamic_ok: bool = False, versions: Optional[Sequence[str]] = None,
                      strict_types: bool = False, graph: str = '') -> dict:
    """Raise :class:`TensorRTSupportError` listing every unsupported node (op type, node name, reason);
    otherwise return the manifest record: versions and lists checked against, warnings."""
    report = analyze(model_or_path, dynamic_ok=dynamic_ok, versions=versions, strict_types=strict_types)
    if report.errors:
        raise TensorRTSupportError(report.errors, graph)
    return {'versions': list(report.versions), 'lists': sources(report.versions), 'static_shapes': not dynamic_ok,
            'warnings': [str(w) for w in report.warnings]}


def _check_common(facts: _Graphs, dynamic_ok: bool) -> Iterator[Tuple[str, str, str]]:
    """Version-independent checks: custom domains, static shapes, the INT64 range policy."""
    for node in facts.nodes:
        if node.domain not in DEFAULT_DOMAINS:
            yield (node.op_type, node.name, f'custom domain {node.domain!r}: not an ONNX operator of the '
                   'operator list (a local function or plugin op)')
    if not dynamic_ok:
        seen = set()
        for value, kind in facts.io:
            dims = facts.shapes.get(value.name)
            if dims is None or any(d is None for d in dims):
                seen.add(value.name)
                yield (kind, value.name, f'dynamic or unknown shape {_dims(value)} (static shapes expected)')
        for graph in facts.graphs:
            for value in graph.value_info:
                dims = facts.shapes.get(value.name)
                if value.name not in seen and dims is not None and any(d is None for d in dims):
                    op, node = facts.where(value.name)
                    yield (op, node, f'output {value.name!r} has a dynamic shape {_dims(value)} '
                           '(static shapes expected)')
    for name in facts.const:
        if facts.types.get(name) != 'INT64':
            continue
        values = facts.array(name)
        if values is None or values.size == 0:
            continue
        low, high = int(values.min()), int(values.max())
        if low >= INT32_MIN and high <= INT32_MAX:
            continue
        uses = facts.consumers.get(name, [])
        if uses and all(n.op_type == 'Slice' and i in (1, 2) for n, i in uses):
            continue                   # Slice starts/ends: clamped to the dimension by ONNX semantics
        bad = high if high > INT32_MAX else low
        reason = (f'INT64 constant {name!r} holds {bad}, outside the int32 range (project policy; TensorRT 8 '
                  'clamped INT64 to +-INT_MAX)')
        producer = facts.producer.get(name)
        if producer is not None:
            users = ', '.join(f'{n.op_type} {n.name!r}' for n, _ in uses)
            yield (producer.op_type, producer.name or name, reason + (f', used by {users}' if users else ''))
        for node, _ in uses:
            if producer is None:
                yield (node.op_type, node.name, reason)


def _doc_types(onnx_names: Iterable[str]) -> str:
    """``FP32, FP16, ...``: ONNX type names as the operator list spells them, in its order."""
    order = _data()['type_names']
    return ', '.join(doc for doc, onnx_name in order.items() if onnx_name in set(onnx_names))


def _dims(value) -> str:
    dims = value.type.tensor_type.shape.dim
    return '[' + ', '.join(str(d.dim_value) if d.HasField('dim_value') else (d.dim_param or '?') for d in dims) + ']'


def _check_profile(facts: _Graphs, prof: Profile, warnings: list,
                   types_out: Optional[list] = None) -> Iterator[Tuple[str, str, str]]:
    low, high = prof.opset
    if not low <= facts.opset <= high:
        yield ('opset', 'ai.onnx', f'model opset {facts.opset} outside the supported range {low}..{high}')
    for name, type_name in facts.types.items():
        if type_name in prof.narrowed:
            op, node = facts.where(name)
            yield (op, node, f'{type_name} tensor {name!r} is narrowed by TensorRT ({prof.narrowed[type_name]})')
        elif type_name not in prof.data_types:
            op, node = facts.where(name)
            yield (op, node, f'tensor {name!r} has type {type_name}, not a TensorRT ONNX data type')
    io_names = {v.name for v, _ in facts.io}
    for name, type_name in facts.types.items():
        if type_name in prof.io_only and name not in io_names:
            op, node = facts.where(name)
            yield (op, node, f'{type_name} tensor {name!r}: {type_name} only as a network input or output')
    for node in facts.nodes:
        if node.domain not in DEFAULT_DOMAINS:
            continue
        op = node.op_type
        if op in prof.unsupported:
            yield (op, node.name, prof.unsupported[op])
            continue
        if op not in prof.ops:
            yield (op, node.name, 'not in the operator list')
            continue
        allowed = prof.ops[op]
        if allowed:
            bad: Dict[str, List[str]] = {}
            for name in _data_tensors(node, facts.opset):
                data_type = facts.types.get(name)
                if data_type is not None and data_type not in allowed and data_type not in prof.narrowed:
                    bad.setdefault(data_type, []).append(repr(name))
            for type_name, names in bad.items():
                (types_out if types_out is not None else warnings).append(
                    (op, node.name, f'{type_name} data ({", ".join(dict.fromkeys(names))}) is not in its Supported '
                     f'Types column ({_doc_types(allowed)})'))
        rule = prof.rules.get(op)
        if rule:
            yield from _check_rule(facts, node, rule, warnings)


def _check_rule(facts: _Graphs, node, rule: dict, warnings: list) -> Iterator[Tuple[str, str, str]]:
    op, name = node.op_type, node.name
    for attr, spec in rule.get('attrs', {}).items():
        value = _attr(node, attr, spec.get('default'))
        if value not in spec['allowed']:
            yield (op, name, f'{attr}={value!r} unsupported (supported: {", ".join(map(str, spec["allowed"]))})')
    for attr in rule.get('forbidden_attrs', ()):
        if _has_attr(node, attr):
            yield (op, name, f'attribute {attr!r} unsupported')
    for i in rule.get('const_inputs', ()):
        if i < len(node.input) and node.input[i] and node.input[i] not in facts.const:
            yield (op, name, f'input {i} ({node.input[i]!r}) must be a build-time constant (initializer)')
    if rule.get('first_output_only'):
        for i, out in enumerate(node.output[1:], 1):
            if out:
                yield (op, name, f'output {i} ({out!r}) unsupported: only the first output')
    if 'kernel_rank' in rule:
        kernel = _attr(node, 'kernel_shape', [])
        if len(kernel) not in rule['kernel_rank']:
            yield (op, name, f'{len(kernel)}D pooling unsupported (2D or 3D only)')
    if rule.get('unit_dilations') and any(d != 1 for d in _attr(node, 'dilations', [])):
        yield (op, name, f'dilations {_attr(node, "dilations")} unsupported (empty or all ones)')
    for i, rank in rule.get('input_rank', {}).items():
        i = int(i)
        dims = facts.shapes.get(node.input[i]) if i < len(node.input) else None
        if dims is not None and len(dims) != rank:
            yield (op, name, f'input {i} has rank {len(dims)}, must be {rank}D')
    for i in rule.get('zero_inputs', ()):
        if i < len(node.input) and node.input[i]:
            values = facts.array(node.input[i])
            if values is None or np.any(values != 0):
                yield (op, name, f'input {i} ({node.input[i]!r}) must be a constant zero')
    for i in rule.get('false_inputs', ()):
        if i < len(node.input) and node.input[i]:
            values = facts.array(node.input[i])
            if values is None or np.any(values):
                yield (op, name, f'input {i} ({node.input[i]!r}) must be a constant False')
    for i, most in rule.get('input_max', {}).items():
        i = int(i)
        if i < len(node.input) and node.input[i]:
            values = facts.array(node.input[i])
            if values is None:
                warnings.append((op, name, f'input {i} is not a constant; it must be <= {most}'))
            elif np.any(values > most):
                yield (op, name, f'input {i} = {values.tolist()} exceeds {most}')
    if rule.get('scales_axes_iota') and len(node.input) > 2 and node.input[2] and _has_attr(node, 'axes'):
        axes = _attr(node, 'axes')
        rank = len(facts.shapes.get(node.input[0]) or axes)
        if [a % rank for a in axes] != list(range(rank)):
            yield (op, name, f'axes {axes} with a scales input must be 0..rank-1')
    if rule.get('branch_outputs_distinct'):
        then_b, else_b = _attr(node, 'then_branch'), _attr(node, 'else_branch')
        if then_b is not None and else_b is not None:
            shared = {o.name for o in then_b.g.output} & {o.name for o in else_b.g.output}
            if shared:
                yield (op, name, f'branch outputs share names {sorted(shared)}')
            for a, b in zip(then_b.g.output, else_b.g.output):
                ra, rb = facts.shapes.get(a.name), facts.shapes.get(b.name)
                if ra is not None and rb is not None and len(ra) != len(rb):
                    yield (op, name, f'branch outputs {a.name!r} and {b.name!r} differ in rank')
    for i in rule.get('float_inputs', ()):
        if i < len(node.input) and node.input[i]:
            type_name = facts.types.get(node.input[i])
            if type_name is not None and type_name not in FLOAT_TYPES:
                yield (op, name, f'input {i} ({node.input[i]!r}) is {type_name}; must be floating point')
    if rule.get('simple_einsum'):
        yield from ((op, name, why) for why in _einsum_problems(facts, node))
    if 'max_opset' in rule and facts.opset > rule['max_opset']:
        yield (op, name, f'opset {facts.opset} version unsupported (up to {rule["max_opset"]})')
    if 'warn_from_opset' in rule and facts.opset >= rule['warn_from_opset']:
        warnings.append((op, name, f'opset >= {rule["warn_from_opset"]} form only fixed in a later release '
                         '(onnx-tensorrt changelog)'))
    if 'unchecked' in rule:
        warnings.append((op, name, f'restriction not checked statically: {rule["unchecked"]}'))


def _einsum_problems(facts: _Graphs, node) -> Iterator[str]:
    equation = str(_attr(node, 'equation', '')).replace(' ', '')
    terms = equation.split('->')[0].split(',')
    if '...' in equation:
        yield f'equation {equation!r}: ellipsis unsupported'
    for term in terms:
        if len(set(term)) != len(term):
            yield f'equation {equation!r}: diagonal (repeated index) unsupported'
    sizes: Dict[str, set] = {}
    for term, name in zip(terms, node.input):
        dims = facts.shapes.get(name)
        if dims is not None and len(dims) == len(term):
            for letter, d in zip(term, dims):
                if d is not None:
                    sizes.setdefault(letter, set()).add(d)
    if any(len(s) > 1 for s in sizes.values()):
        yield f'equation {equation!r}: broadcasting between inputs unsupported'


__all__ = ['DATA_FILE', 'Problem', 'Profile', 'Report', 'TARGETS', 'TensorRTSupportError', 'analyze', 'check_graph',
           'profile', 'require_supported', 'sources']

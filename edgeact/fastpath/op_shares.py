"""Per-op-type time shares of one model: the records `inspect --op-times`, convert and profile report.

`edgeact.fastpath.op_time` measures them (ONNX Runtime's profiler, or TFLite's one-op models);
this module holds the records and their rendering, which need neither runtime.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


class OpKind:
    """How an op type runs; plain strings so the report's JSON reads as it prints."""

    INTEGER = "integer"  # ORT's QLinear*/ConvInteger kernels
    QDQ = "quantize"  # QuantizeLinear / DequantizeLinear left in the executed graph
    OTHER = "other"  # float compute and layout ops: outside the integer kernels
    DELEGATED = "delegated"  # TFLite: inside a delegate partition
    LEFT = "left"  # TFLite: left on the reference kernels


@dataclass
class OpTime:
    """One op type's time per inference."""

    type: str
    kind: str
    count: int  # nodes/ops of this type (per inference)
    ms: float  # their summed time per inference
    share: float  # ms over the whole model's time per inference


@dataclass
class OpTimes:
    """Per-op-type times of one model, and what share the ops outside the fast path take."""

    format: str
    method: str
    total_ms: float  # the whole model per inference, measured the same way as the ops
    ops: list[OpTime] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def share_of(self, *kinds: str) -> float:
        return float(sum(op.share for op in self.ops if op.kind in kinds))

    @property
    def slow_kinds(self) -> tuple[str, ...]:
        return (OpKind.LEFT,) if self.format == "tflite" else (OpKind.QDQ, OpKind.OTHER)

    @property
    def slow_share(self) -> float:
        """The share of time spent outside the fast path (left ops; ORT: outside integer kernels)."""
        return self.share_of(*self.slow_kinds)

    def summary(self, top: int = 4) -> str:
        if self.format == "onnx" and not any(op.kind in (OpKind.INTEGER, OpKind.QDQ) for op in self.ops):
            # A float model has no fast path to fall off; say where its time goes instead.
            return f"{self.total_ms:.3f} ms, no integer kernels (a float model): " + ", ".join(
                f"{op.type} {op.share:.0%}" for op in self.ops[:top])
        slow = [op for op in self.ops if op.kind in self.slow_kinds]
        where = "off the delegate" if self.format == "tflite" else "outside integer kernels"
        text = f"{self.slow_share:.0%} of {self.total_ms:.3f} ms {where}"
        shown = [op for op in slow if op.share >= 0.01][:top]
        if shown:
            text += ": " + ", ".join(f"{op.type} {op.share:.0%}" for op in shown)
        hidden = len(slow) - len(shown)
        if hidden:
            small = all(op.share < 0.01 for op in slow if op not in shown)
            text += ("; " if shown else ": ") + f"{hidden} {'more ' if shown else ''}op type{'s' * (hidden > 1)}" \
                + (" under 1% each" if small else "")
        rest = [op for op in self.ops if op.kind == OpKind.DELEGATED]
        if rest and slow:  # the partitions' share holds the hand-overs between them
            text += f"; the delegate's partitions {rest[0].share:.0%}"
        return text

    def to_dict(self) -> dict:
        return {**asdict(self), "slow_share": self.slow_share, "summary": self.summary()}


def render_op_times(data: dict, top: int = 8) -> str:
    """The per-op-type table shown by inspect (`data` is `OpTimes.to_dict()` or {"unavailable": why})."""
    if "unavailable" in data:
        return f"time shares: not measured ({data['unavailable']})"
    lines = [f"time shares ({data['method']}): {data['summary']}"]
    for op in data["ops"][:top]:
        lines.append(f"  {op['type']:<24} {op['kind']:<9} x{op['count']:<4} {op['ms']:8.3f} ms  {op['share']:6.1%}")
    if len(data["ops"]) > top:
        lines.append(f"  ... {len(data['ops']) - top} more op types")
    lines.extend(f"  note: {n}" for n in data.get("notes", []))
    return "\n".join(lines)

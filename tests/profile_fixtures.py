"""Profile reports for the renderer tests, built from the report's own types (never a hand-written
copy of the JSON schema): a row as the profiler and the scoring make it, a report around rows,
and the three rows `make demo` profiles."""
from __future__ import annotations

from edgeact.metrics import Agreement
from edgeact.profile.report import (
    DataSummary,
    DeviceRecord,
    HostInfo,
    ProfileReport,
    ProfileSettings,
    ReferenceInfo,
    TargetInfo,
)
from edgeact.profile.row import Accuracy, DeviceInfo, Latency, Memory, ProfileRow, TensorSpec


def make_row(name: str, p50: float, top1: float | None = None, agree: float | None = None, runtime="litert",
             delegate="xnnpack", int8_io: bool = False, device: str | None = None) -> ProfileRow:
    """A row as the profiler and the scoring would make it: built from the report's own types."""
    dtype = "int8" if int8_io else "float32"
    return ProfileRow(
        model=f"/models/{name}", name=name, format=name.rsplit(".", 1)[1], runtime=runtime, runtime_version="2.3.0",
        delegate=delegate, threads=2, size_bytes=62656,
        inputs=[TensorSpec("x", [1, 28, 28, 1], dtype)], outputs=[TensorSpec("y", [1, 10], dtype)],
        init_ms=4.07, cold_ms=0.0626, warmup=5,
        latency_ms=Latency(runs=50, mean=p50 * 1.01, std=p50 / 50, min=p50 * 0.95, p50=p50, p90=p50 * 1.1,
                           p99=p50 * 1.3, max=p50 * 1.4),
        throughput_ips=1000 / p50, streams={"streams": 1}, memory=Memory(peak_rss_mb=88.0, growth_mb=3.5),
        samples_evaluated=500 if top1 is not None else 0,
        accuracy=Accuracy(top1=top1, top5=1.0, samples=500) if top1 is not None else None,
        reference=Agreement(samples=500, top1_agreement=agree, cosine=0.9998, max_abs_diff=0.13,
                            mean_abs_diff=0.0008, sqnr_db=36.7) if agree is not None else None,
        device=DeviceInfo(name=device, arch="aarch64") if device else None,
    )


def make_report(rows: list[ProfileRow], reference_top1: float | None = None,
                devices: list[DeviceRecord] | None = None) -> ProfileReport:
    labelled = any(r.accuracy for r in rows)
    reference = None
    if any(r.reference for r in rows):
        reference = ReferenceInfo("examples/mnist/mnist_cnn.keras", "keras",
                                  Accuracy(reference_top1, 1.0, 500) if reference_top1 is not None else None)
    data = DataSummary("folder examples/mnist/test_images", 500, True, classes=[str(i) for i in range(10)],
                       values="pixels, preprocessed") if labelled else DataSummary("random", 64, False)
    return ProfileReport(
        edgeact_version="0.2.0", created="2026-12-07T00:00:00+00:00", target=TargetInfo("desktop", "this desktop"),
        host=HostInfo(machine="x86_64", processor="AMD EPYC", cpus=2),
        settings=ProfileSettings(runs=50, warmup=5, threads=2, streams=1, isolate=False),
        data=data, reference=reference, models=rows, devices=devices or [])


def demo_rows() -> list[dict]:
    """The three rows `make demo` profiles, with round numbers."""
    return [make_row("mnist_cnn_int8.tflite", 0.0161, 0.996, 0.994, int8_io=True),
            make_row("mnist_cnn_int8.onnx", 0.0335, 0.992, 0.990, runtime="onnxruntime",
                     delegate="CPUExecutionProvider"),
            make_row("mnist_cnn_fp32.tflite", 0.0211, 0.994, 1.0)]

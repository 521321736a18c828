"""A job's metrics in the Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

_TASK_FAMILIES = (
    # (metric name, type, help, key in the task's metrics)
    ("sage_task_records_in_total", "counter", "Records the task instance took from its input.", "records_in"),
    ("sage_task_records_out_total", "counter", "Records the task instance emitted.", "records_out"),
    ("sage_task_errors_total", "counter", "Records skipped after an error in the function (on_error='skip').",
     "errors"),
    ("sage_task_elapsed_seconds_total", "counter", "Seconds the task instance has run.", "elapsed_seconds"),
    ("sage_task_busy_seconds_total", "counter",
     "Seconds in the function and the task's own code (neither idle nor backpressured).", "busy_seconds"),
    ("sage_task_idle_seconds_total", "counter", "Seconds spent waiting for input.", "idle_seconds"),
    ("sage_task_backpressure_seconds_total", "counter", "Seconds spent waiting for room in a downstream queue.",
     "backpressure_seconds"),
    ("sage_task_records_in_per_second", "gauge", "Records taken per second over the last seconds.",
     "records_in_per_second"),
    ("sage_task_records_out_per_second", "gauge", "Records emitted per second over the last seconds.",
     "records_out_per_second"),
    ("sage_task_busy_ratio", "gauge", "Share of each second spent busy, over the last seconds (0 to 1).",
     "busy_share"),
    ("sage_task_idle_ratio", "gauge", "Share of each second spent idle, over the last seconds (0 to 1).",
     "idle_share"),
    ("sage_task_backpressure_ratio", "gauge",
     "Share of each second spent backpressured, over the last seconds (0 to 1).", "backpressure_share"),
    ("sage_task_input_queue_size", "gauge", "Packets waiting in the task's input queue.", "input_queue_size"),
    ("sage_task_input_queue_capacity", "gauge", "Capacity of the task's input queue (0: unbounded).",
     "input_queue_maxsize"),
    ("sage_task_input_queue_load", "gauge", "Input queue fill, size / capacity (0 to 1).", "input_queue_load"),
    ("sage_task_checkpoint_alignment_seconds_total", "counter",
     "Seconds the task held input channels to align checkpoint barriers.", "alignment_seconds"),
    ("sage_task_fed_back_total", "counter", "Records the task instance sent back round a feedback loop.",
     "fed_back"),
)

_ASYNC_FAMILIES = (
    # (metric name, type, help, key in the task's "async" metrics)
    ("sage_async_capacity", "gauge", "Most records the async operator instance holds at once.", "capacity"),
    ("sage_async_calls_in_flight", "gauge",
     "Calls started and not finished (running, or waiting for the rate limit or a retry).", "in_flight"),
    ("sage_async_calls_completed_total", "counter", "Calls that succeeded.", "completed"),
    ("sage_async_calls_failed_total", "counter", "Calls that failed after their retries.", "failed"),
    ("sage_async_call_retries_total", "counter", "Attempts after the first one of a call.", "retried"),
    ("sage_async_call_timeouts_total", "counter", "Attempts that ran out of time.", "timed_out"),
    ("sage_async_rate_limited_waits_total", "counter", "Attempts that waited for the rate limit.",
     "rate_limited_waits"),
)

_CHECKPOINT_FAMILIES = (
    ("sage_job_checkpoints_completed_total", "counter", "Checkpoints completed.", "completed"),
    ("sage_job_last_checkpoint_id", "gauge", "Id of the last completed checkpoint.", "last_id"),
    ("sage_job_last_checkpoint_timestamp_seconds", "gauge", "When the last checkpoint completed (Unix time).",
     "last_completed_at"),
    ("sage_job_last_checkpoint_duration_seconds", "gauge", "Seconds from trigger to completion of the last checkpoint.",
     "last_duration_seconds"),
    ("sage_job_last_checkpoint_bytes", "gauge", "Bytes of state stored by the last checkpoint.", "last_bytes"),
)

_SERVICE_FAMILIES = (
    ("sage_service_calls_total", "counter", "Requests the service answered.", "calls"),
    ("sage_service_errors_total", "counter", "Requests whose method raised.", "errors"),
    ("sage_service_expired_total", "counter", "Requests skipped because their caller had stopped waiting.",
     "expired"),
    ("sage_service_calls_per_second", "gauge", "Requests answered per second over the last seconds.",
     "calls_per_second"),
    ("sage_service_request_queue_size", "gauge", "Requests waiting in the service's queue.", "request_queue_size"),
    ("sage_service_request_queue_capacity", "gauge", "Capacity of the service's request queue.",
     "request_queue_maxsize"),
)


def to_prometheus(job_id: str, status: str, metrics: dict[str, dict[str, Any]]) -> str:
    """The text exposition of one job: its status, then every task and service family.

    Labels: `job` (the job id), with `task` (instance name) and `operator`
    (the operator's name) on task families and `service` on service ones.
    A value that is not known yet (None, e.g. a rate before any window) is
    left out rather than written as NaN.
    """
    tasks = [m for m in metrics.values() if m.get("kind") not in ("service", "job")]
    services = [m for m in metrics.values() if m.get("kind") == "service"]
    job = {"job": job_id}
    lines = _family("sage_job_running", "gauge", "1 while the job runs, 0 once it has ended.",
                    [(job, int(status == "running"))])
    own = metrics.get("job", {})
    lines += _family("sage_job_restarts_total", "counter", "Automatic restarts after a failure.",
                     [(job, own.get("restarts"))])
    checkpoints = own.get("checkpoints") or {}
    for name, kind, help_text, key in _CHECKPOINT_FAMILIES:
        lines += _family(name, kind, help_text, [(job, checkpoints.get(key))])
    lines += _family("sage_task_running", "gauge", "1 while the task instance runs, else 0.",
                     [(_task_labels(job_id, m), int(m.get("status") == "running")) for m in tasks])
    for name, kind, help_text, key in _TASK_FAMILIES:
        lines += _family(name, kind, help_text, [(_task_labels(job_id, m), m.get(key)) for m in tasks])
    for name, kind, help_text, key in _SERVICE_FAMILIES:
        lines += _family(name, kind, help_text, [(_service_labels(job_id, m), m.get(key)) for m in services])
    lines += _family("sage_service_latency_seconds", "summary",
                     "Time to answer a request (quantiles over the most recent calls).",
                     list(_latency_samples(job_id, services)))
    lines += _family("sage_service_caller_calls_total", "counter", "Requests answered, per calling instance.",
                     [({**_service_labels(job_id, m), "caller": caller}, count)
                      for m in services for caller, count in sorted((m.get("callers") or {}).items())])
    lines += _async_lines(job_id, [m for m in tasks if m.get("async")])
    lines += _batch_lines(job_id, services)
    return "".join(lines)


def _async_lines(job_id: str, tasks: list[dict[str, Any]]) -> list[str]:
    """The families of async operators (`map_async`, `flatmap_async`): calls, retries, limits, latency."""
    lines: list[str] = []
    for name, kind, help_text, key in _ASYNC_FAMILIES:
        lines += _family(name, kind, help_text, [(_task_labels(job_id, m), m["async"].get(key)) for m in tasks])
    samples: list[tuple[Any, ...]] = []
    for m in tasks:
        labels, calls = _task_labels(job_id, m), m["async"]
        samples += [({**labels, "quantile": "0.5"}, calls.get("latency_p50"), ""),
                    ({**labels, "quantile": "0.99"}, calls.get("latency_p99"), ""),
                    (labels, calls.get("latency_sum"), "_sum"), (labels, calls.get("completed"), "_count")]
    return lines + _family("sage_async_call_latency_seconds", "summary",
                           "Seconds from a call's first attempt to its result (quantiles over recent calls).", samples)


def _batch_lines(job_id: str, services: list[dict[str, Any]]) -> list[str]:
    """Per batched method of a service: a histogram of batch sizes and a summary of the queueing delay."""
    sizes: list[tuple[Any, ...]] = []
    delays: list[tuple[Any, ...]] = []
    for m in services:
        for method, batches in sorted((m.get("batches") or {}).items()):
            labels = {**_service_labels(job_id, m), "method": method}
            counts = batches["sizes"]
            bounds = sorted({2 ** i for i in range(batches["max_batch_size"].bit_length())}
                            | {batches["max_batch_size"]})
            sizes += [({**labels, "le": str(bound)}, sum(n for size, n in counts.items() if size <= bound), "_bucket")
                      for bound in bounds]
            sizes += [({**labels, "le": "+Inf"}, batches["batches"], "_bucket"),
                      (labels, batches["requests"], "_sum"), (labels, batches["batches"], "_count")]
            delays += [({**labels, "quantile": "0.5"}, batches["queue_delay_p50"], ""),
                       ({**labels, "quantile": "0.99"}, batches["queue_delay_p99"], ""),
                       (labels, batches["queue_delay_sum"], "_sum"), (labels, batches["requests"], "_count")]
    lines = _family("sage_service_batch_size", "histogram", "Requests per call of a batched method.", sizes)
    return lines + _family("sage_service_batch_queue_delay_seconds", "summary",
                           "Seconds a request waited for its batch to start (quantiles over recent requests).",
                           delays)


def _task_labels(job_id: str, m: dict[str, Any]) -> dict[str, str]:
    return {"job": job_id, "task": m["name"], "operator": m.get("operator") or m["name"]}


def _service_labels(job_id: str, m: dict[str, Any]) -> dict[str, str]:
    return {"job": job_id, "service": m.get("service") or m["name"].removeprefix("service:")}


def _latency_samples(job_id: str, services: list[dict[str, Any]]) -> Iterator[tuple[dict[str, str], Any, str]]:
    for m in services:
        labels = _service_labels(job_id, m)
        for quantile, key in (("0.5", "latency_p50"), ("0.99", "latency_p99")):
            yield {**labels, "quantile": quantile}, m.get(key), ""
        yield labels, m.get("latency_sum"), "_sum"
        yield labels, m.get("calls"), "_count"


def _family(name: str, kind: str, help_text: str, samples: list[tuple[Any, ...]]) -> list[str]:
    """HELP and TYPE lines, then one line per sample `(labels, value[, name suffix])` whose value is known."""
    lines = [f"# HELP {name} {help_text}\n", f"# TYPE {name} {kind}\n"]
    for labels, value, *suffix in samples:
        if value is None:
            continue
        label_text = ",".join(f'{key}="{_escape(str(v))}"' for key, v in labels.items())
        lines.append(f"{name}{suffix[0] if suffix else ''}{{{label_text}}} {_number(value)}\n")
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))

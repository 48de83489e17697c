"""What the daemon reports about itself: Prometheus metrics (metrics.py), OpenTelemetry traces
(tracing.py; runs.py and calls.py observe agent runs and tool calls), JSON logs (logs.py) and the
audit log (audit.py), all knowing whom the work is for from context variables (context.py).

A runtime subsystem that imports no other: every layer and subsystem above may report through it.
"""

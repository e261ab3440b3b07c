"""Compute per routed path: exact MAC / FLOP counts (``flops``) and measured latency (``latency``)."""

"""Bag replay: offline through the pipeline, or live through a running node (``seem-ros replay``)."""

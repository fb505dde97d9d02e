"""Simulated users for off-policy recommendation.

Batched TorchRL environments (CPU or CUDA) and their Gymnasium faces.
"""

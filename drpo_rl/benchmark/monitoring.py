"""Phantom-gradient monitoring of the learners whose repulsion the paper studies."""

from __future__ import annotations


def monitor_for(algorithm: str):
    return None

"""Differential sweeps: random problems from each kernel family's claimed range, checked against float64
PyTorch. Used by tests/test_sweeps.py (a fixed-seed subset; `--deep` for thousands of cases) and runnable on
any device:  python -m tests.sweeps --device cuda --cases 100 --out results.jsonl
"""

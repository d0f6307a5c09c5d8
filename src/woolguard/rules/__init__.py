"""Operator rules: CEL policies, block / allow / review lists, and backtesting."""

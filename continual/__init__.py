"""The continual-learning loop over tasks, its methods (baseline, HLOP, ...), metrics and outputs."""

"""Pretraining the ANN encoders with fusion, and extracting their frozen fused features."""

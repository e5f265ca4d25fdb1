"""HLOP: lateral Hebbian layers that learn the principal subspace of past inputs, and gradient projection."""

"""Numba CPU backend: weights, the matrix-free operator, the multigrid preconditioner."""

"""Numba CPU backend: weights, the matrix-free operator, the multigrid preconditioner."""

import os

# GNU OpenMP (Numba's "omp" threading layer) spin-waits at every barrier for a long
# time by default.  A V-cycle has hundreds of short parallel loops, so when the
# cores are shared (a training job, other workers, a busy CI box) the spinning
# threads starve each other and a solve gets 10-40x slower.  A short spin keeps
# the idle-machine speed and makes the loaded case degrade gracefully.  Set
# before Numba loads libgomp; a value the user exported wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

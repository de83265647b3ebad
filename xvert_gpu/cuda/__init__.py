"""CUDA backend: RawModule kernels (``kernels/``) driven from CuPy.

Importing this package never imports CuPy; :mod:`xvert_gpu.cuda.loader` compiles the
kernels on first use and :mod:`xvert_gpu.cuda.system` holds the solver.
"""

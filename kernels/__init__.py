"""CUDA C++ sources of the CUDA backend (``*.cu``, ``*.cuh``), read by ``xvert_gpu.cuda.loader``."""

from setuptools import setup

setup(
    name="xvert_gpu",
    version="0.1.0",
    description="GPU-accelerated XVertNet preprocessing and unsupervised spine contrast enhancement "
                "for chest X-rays",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["xvert_gpu", "xvert_gpu.batch", "xvert_gpu.commands", "xvert_gpu.cpu", "xvert_gpu.cuda",
              "xvert_gpu.io", "xvert_gpu.kernels"],
    package_dir={"xvert_gpu.kernels": "kernels"},
    package_data={
        "xvert_gpu": ["data/*.png", "data/*.md", "weights/*.pt", "weights/*.json", "weights/*.csv", "weights/*.md"],
        "xvert_gpu.kernels": ["*.cu", "*.cuh"],
    },
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "numba>=0.59",
        "pillow>=10",
        "tifffile>=2023.1",
        "tqdm>=4.60",
        "scikit-image>=0.22",
        "torch>=2.1",
    ],
    extras_require={
        "cuda12": ["cupy-cuda12x>=13"],
        "cuda13": ["cupy-cuda13x>=13.6"],
        "dicom": ["pydicom>=2.4", "pylibjpeg>=2", "pylibjpeg-libjpeg>=2", "pylibjpeg-openjpeg>=2"],
        "dist": ["dask[distributed]>=2024.1"],
        "tiff": ["imagecodecs>=2023.1"],  # LZW/JPEG/... TIFF codecs for tifffile (Pillow otherwise)
        "test": ["pytest>=7", "pytest-benchmark>=4", "pyamg>=5", "matplotlib>=3.7"],
    },
    entry_points={"console_scripts": ["xvert-gpu=xvert_gpu.cli:main"]},
)

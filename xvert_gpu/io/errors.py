"""The errors that every read and write failure becomes, each naming the file and the reason."""

from __future__ import annotations


class ImageReadError(ValueError):
    """A file could not be read as a radiograph. ``path`` and ``reason`` say which and why."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across processes (Dask, multiprocessing)
        return (type(self), (self.path, self.reason))


class ImageWriteError(ValueError):
    """An image could not be written. ``path`` and ``reason`` say which and why."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))

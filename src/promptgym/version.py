"""The package version, in a module of its own so that low modules (the downloader's User-Agent)
can name it without importing the package's top, which brings in the whole API."""

__version__ = "0.1.0"

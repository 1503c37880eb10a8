"""The version of dmv-fast (a leaf: the record, the exporter and the CLI read it here)."""

__version__ = "0.1.0"

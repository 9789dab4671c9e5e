"""Wire types, names and settings used by more than one multitune service."""

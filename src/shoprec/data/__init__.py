"""The canonical data model, the source adapters, the lake and the synthetic shop."""

"""Fuzz targets for every decoder that takes bytes from outside (radio, wire formats)."""

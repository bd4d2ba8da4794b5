"""Standalone scripts copied into target bundles.

They import only the device's runtime, numpy and the standard library (evaluate_tensorrt.py also
Pillow, to read images), so they run on a device without edgeresnet installed, on Python 3.8 and
newer, and they write results.json in the same schema as a build.
"""

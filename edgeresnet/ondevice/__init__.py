"""Standalone scripts copied into target bundles.

They import only the device's runtime, numpy and the standard library, so they run on a device
without edgeresnet installed, and they write results.json in the same schema as a build.
"""

"""edgeresnet: ResNets to verified, benchmarked INT8 and pruned artifacts for edge targets."""

__version__ = "0.1.0"

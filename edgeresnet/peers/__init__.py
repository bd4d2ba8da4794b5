"""Peers: what a user would build by hand (PyTorch eager, ONNX Runtime, OpenVINO, default INT8).

``run.compare_peers`` measures them side by side with the same timing as edgeresnet's artifacts;
``byhand`` says how each peer is made; ``torch_bench`` times PyTorch eager in a fresh process;
``against`` re-times edgeresnet bundles in the same run.
"""

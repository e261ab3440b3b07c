"""The synthetic visual world's pieces: drawing primitives, scene and fact generators, and the per-benchmark
document builders behind ``scopebench.demo.world``."""

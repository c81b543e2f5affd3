"""The course's own material: hand-derived computations and the three ways to
differentiate, checked against PyTorch."""

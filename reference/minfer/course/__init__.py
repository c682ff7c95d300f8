"""Course tooling: which reference files each lab owns, skeleton generation, the implementation switch."""

"""Course tooling: which reference files each lab owns, skeleton generation, the implementation switch,
grading, slides. A package beside the engine (reference/minfer), shipped in the same distribution:
the engine stays small enough to read, and the course's machinery is not part of it."""

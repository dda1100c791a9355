"""Running a search elsewhere: manifests for a cluster (no TensorFlow, no engine)."""

"""What the everyday commands around a finished run do (the Click wrappers live in ``automtl.cli``)."""

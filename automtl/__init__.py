"""automtl: AutoML search for multi-task neural networks (TensorFlow/Keras 3).

Importing this package stays light: TensorFlow is loaded only by the parts
that train or export, so the CLI answers `--help` instantly.
"""

__version__ = "0.1.0"

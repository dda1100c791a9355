"""Text for automtl: the ``text`` input type and the ``text`` (token tagging) task type.

Both use only :mod:`automtl.api`, like a third-party plugin, and one
tokeniser (:mod:`automtl_text.tokens`) for training data and serving.
Importing this package does not import TensorFlow; the Keras layers in
:mod:`automtl_text.layers` load when a model is built.
"""

from automtl_text.inputs import TextInput
from automtl_text.task import TextTask

__all__ = ["TextInput", "TextTask"]

"""The Keras Tuner backend: random, Bayesian or Hyperband search, alone or as chief and workers."""

"""Training: strategies (joint, alternating), the compiled trainer, the trial runner."""

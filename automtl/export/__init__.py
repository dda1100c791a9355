"""What leaves a run: the SavedModel and its signatures, ensembles as one model, predictions, other formats."""

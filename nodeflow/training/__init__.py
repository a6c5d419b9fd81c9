"""Training inside graphs: paired datasets, losses, and the training loop the trainer nodes share."""

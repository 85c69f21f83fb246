"""Model building blocks (attentions, WN, flows, pitch helpers, spectrograms, f0 predictors)."""

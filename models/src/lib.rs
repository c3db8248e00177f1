//! candle models with functional parameters, losses, optimisers and the meta-gradient step.

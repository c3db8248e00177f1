//! Shared runner, results writer, plots and CLI helpers for the candle-zoo experiment binaries.

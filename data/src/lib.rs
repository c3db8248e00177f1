//! Datasets for candle-zoo: hub parquet files, exact pixels, corruptions, samplers, batches.

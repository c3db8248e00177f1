//! Datasets for candle-zoo: hub parquet files, exact pixels, corruptions, samplers, batches.
//!
//! Images are kept as u8 (C,H,W per image, RGB) and normalised per batch; all randomness comes from
//! seeded [`rand::rngs::StdRng`]s so the same seed gives the same numbers on the same machine.

pub mod augment;
pub mod batch;
pub mod corrupt;
pub mod dataset;
pub mod lt_list;
pub mod parquet_io;
pub mod preview;
pub mod registry;
pub mod sampler;
pub mod source;
pub mod split;

pub use augment::Augment;
pub use batch::{make_batch, Batch, Loader, Normalize};
pub use dataset::{class_counts, load, ImageDataset};
pub use registry::{spec, DatasetSpec, Split, DATASETS};
pub use source::{DataSource, SourceInfo};

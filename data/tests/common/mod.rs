//! Helpers shared by the data tests: tiny parquet files in the hub's image schema, test images.
#![allow(dead_code)]

use arrow_array::{ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `../shared` beside the checkout; panics with a clear message when it is missing.
pub fn shared() -> PathBuf {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared"));
    assert!(
        p.join("hf/hub").is_dir() && p.join("data/cifar10-jpeg").is_dir(),
        "test data missing: expected the shared data folder at {} (see DATA.md)",
        p.display()
    );
    p
}

/// Writes a SNAPPY parquet file `{image_col: struct{bytes, path}, <label cols>: int64}`; `None` bytes
/// make a null image.
pub fn write_image_parquet(
    path: &Path,
    image_col: &str,
    images: &[Option<Vec<u8>>],
    labels: &[(&str, Vec<i64>)],
) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let bytes: BinaryArray = images.iter().map(|b| b.as_deref()).collect();
    let paths: StringArray = (0..images.len())
        .map(|i| Some(format!("{i}.png")))
        .collect();
    let fields = Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ]);
    let st = StructArray::new(
        fields.clone(),
        vec![Arc::new(bytes) as ArrayRef, Arc::new(paths) as ArrayRef],
        None,
    );
    let mut schema_fields = vec![Field::new(image_col, DataType::Struct(fields), true)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(st)];
    for (name, vals) in labels {
        schema_fields.push(Field::new(*name, DataType::Int64, true));
        cols.push(Arc::new(Int64Array::from(vals.clone())));
    }
    let schema = Arc::new(Schema::new(schema_fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// A 32×32 RGB test image with no symmetry: R = 8x (varies along width), G = 8y (along height),
/// B = 200 on the top-left quadrant only. Returned as HWC (image's layout).
pub fn test_rgb(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 8) as u8,
            (y * 8) as u8,
            if x < w / 2 && y < h / 2 { 200 } else { 0 },
        ])
    })
}

pub fn png_bytes(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

pub fn jpeg_bytes(img: &image::RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .unwrap();
    out
}

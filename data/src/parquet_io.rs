//! Reading `{image: {bytes, path}, label}` parquet files into u8 CHW arrays, decoding in parallel.

use anyhow::{anyhow, bail, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, StructArray};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;
use std::path::Path;

/// What to read from an image parquet file and what every image must look like.
#[derive(Clone, Debug)]
pub struct ImageSchema<'a> {
    /// Struct column with a binary `bytes` field (the hub's `Image` feature).
    pub image_column: &'a str,
    pub label_column: &'a str,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Labels must lie in `0..num_classes`.
    pub num_classes: usize,
}

/// Decodes one encoded image (PNG, JPEG, whatever `image` recognises) into `out` as C,H,W u8, RGB
/// channel order. Grey images asked for as 3 channels are replicated; colour asked for as 1 channel
/// is converted to luma.
pub fn decode_image_chw(
    bytes: &[u8],
    channels: usize,
    height: usize,
    width: usize,
    out: &mut [u8],
) -> Result<()> {
    if channels == 3
        && bytes.starts_with(&[0xFF, 0xD8])
        && decode_jpeg_rgb_fast(bytes, height, width, out)
    {
        return Ok(());
    }
    decode_image_chw_generic(bytes, channels, height, width, out)
}

/// JPEG straight through zune-jpeg (the decoder `image` itself uses, same options) into a
/// thread-local HWC buffer; false means "let the generic path decode it and report any error".
fn decode_jpeg_rgb_fast(bytes: &[u8], height: usize, width: usize, out: &mut [u8]) -> bool {
    use zune_jpeg::zune_core::{
        bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions,
    };
    thread_local! { static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) }; }
    let opts = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_strict_mode(false);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), opts);
    if dec.decode_headers().is_err() || dec.dimensions() != Some((width, height)) {
        return false;
    }
    BUF.with_borrow_mut(|buf| {
        buf.resize(height * width * 3, 0);
        if dec.decode_into(buf).is_err() {
            return false;
        }
        hwc_to_chw(buf, out, height * width);
        true
    })
}

fn hwc_to_chw(raw: &[u8], out: &mut [u8], plane: usize) {
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in raw.chunks_exact(3).enumerate() {
        r[i] = px[0];
        g[i] = px[1];
        b[i] = px[2];
    }
}

/// The reference path through `image::load_from_memory` (any format); tests check the fast JPEG path
/// against it.
pub fn decode_image_chw_generic(
    bytes: &[u8],
    channels: usize,
    height: usize,
    width: usize,
    out: &mut [u8],
) -> Result<()> {
    let img = image::load_from_memory(bytes).map_err(|e| anyhow!("cannot decode image: {e}"))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if (h, w) != (height, width) {
        bail!("image is {h}x{w} (HxW), expected {height}x{width}");
    }
    let plane = height * width;
    debug_assert_eq!(out.len(), channels * plane);
    match channels {
        1 => {
            let g = img.into_luma8();
            out.copy_from_slice(g.as_raw());
        }
        3 => {
            let rgb = img.into_rgb8();
            hwc_to_chw(rgb.as_raw(), out, plane);
        }
        c => bail!("unsupported channel count {c}"),
    }
    Ok(())
}

fn label_at(col: &ArrayRef, row: usize) -> Result<i64> {
    if col.is_null(row) {
        bail!("label is null");
    }
    // Every integer type, widened to i64 (`as`, as before: u64 labels above i64::MAX wrap).
    macro_rules! widen {
        ($($dt:ident => $arrow:ident),+ $(,)?) => {
            match col.data_type() {
                $(DataType::$dt => col.as_primitive::<arrow_array::types::$arrow>().value(row) as i64,)+
                t => bail!("label column has type {t}, expected an integer"),
            }
        };
    }
    Ok(widen!(
        Int64 => Int64Type,
        Int32 => Int32Type,
        Int16 => Int16Type,
        Int8 => Int8Type,
        UInt8 => UInt8Type,
        UInt16 => UInt16Type,
        UInt32 => UInt32Type,
        UInt64 => UInt64Type,
    ))
}

/// Reads all rows of one parquet file: images (N·C·H·W u8) and labels. Errors name the file, and
/// for a bad image or label the row (0-based, within the file).
pub fn read_image_parquet(path: &Path, schema: &ImageSchema) -> Result<(Vec<u8>, Vec<u32>)> {
    let ctx = || format!("reading parquet file {}", path.display());
    let file = std::fs::File::open(path).with_context(ctx)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).with_context(ctx)?;
    let total = builder.metadata().file_metadata().num_rows() as usize;
    // Project to the image bytes and the label only: the `path` strings are never needed.
    let descr = builder.parquet_schema();
    let want_img = format!("{}.bytes", schema.image_column);
    let mut leaves = Vec::new();
    for (want, what) in [(want_img.as_str(), "image"), (schema.label_column, "label")] {
        match descr
            .columns()
            .iter()
            .position(|c| c.path().string() == want)
        {
            Some(i) => leaves.push(i),
            None => {
                let have: Vec<String> = descr.columns().iter().map(|c| c.path().string()).collect();
                bail!(
                    "parquet file {} has no {what} column '{want}' (columns: {})",
                    path.display(),
                    have.join(", ")
                );
            }
        }
    }
    let mask = ProjectionMask::leaves(descr, leaves);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(4096)
        .build()
        .with_context(ctx)?;

    let sz = schema.channels * schema.height * schema.width;
    let mut images = vec![0u8; total * sz];
    let mut labels = Vec::with_capacity(total);
    let mut offset = 0usize;
    for batch in reader {
        let batch = batch.with_context(ctx)?;
        let n = batch.num_rows();
        if offset + n > total {
            bail!(
                "parquet file {} holds more rows than its metadata says ({total})",
                path.display()
            );
        }
        let img_col = batch.column_by_name(schema.image_column).ok_or_else(|| {
            anyhow!(
                "parquet file {}: no column '{}'",
                path.display(),
                schema.image_column
            )
        })?;
        let st: &StructArray = img_col.as_struct_opt().ok_or_else(|| {
            anyhow!(
                "parquet file {}: column '{}' is {}, expected struct{{bytes, path}}",
                path.display(),
                schema.image_column,
                img_col.data_type()
            )
        })?;
        let bytes_col = st.column_by_name("bytes").ok_or_else(|| {
            anyhow!(
                "parquet file {}: '{}' has no 'bytes' field",
                path.display(),
                schema.image_column
            )
        })?;
        let get = |i: usize| -> Option<&[u8]> {
            if st.is_null(i) || bytes_col.is_null(i) {
                return None;
            }
            match bytes_col.data_type() {
                DataType::Binary => Some(bytes_col.as_binary::<i32>().value(i)),
                DataType::LargeBinary => Some(bytes_col.as_binary::<i64>().value(i)),
                DataType::BinaryView => Some(bytes_col.as_binary_view().value(i)),
                _ => None,
            }
        };
        let lab_col = batch.column_by_name(schema.label_column).ok_or_else(|| {
            anyhow!(
                "parquet file {}: no column '{}'",
                path.display(),
                schema.label_column
            )
        })?;
        for i in 0..n {
            let row = offset + i;
            let l =
                label_at(lab_col, i).with_context(|| format!("{}: row {row}", path.display()))?;
            if l < 0 || l as usize >= schema.num_classes {
                bail!(
                    "{}: row {row}: label {l} outside 0..{} (column '{}')",
                    path.display(),
                    schema.num_classes,
                    schema.label_column
                );
            }
            labels.push(l as u32);
        }
        images[offset * sz..(offset + n) * sz]
            .par_chunks_mut(sz)
            .enumerate()
            .try_for_each(|(i, out)| {
                let b = get(i).ok_or_else(|| anyhow!("image bytes are null or not binary"))?;
                decode_image_chw(b, schema.channels, schema.height, schema.width, out)
            })
            .map_err(|_| {
                // Report the first bad row in file order, not whichever thread failed first.
                let mut tmp = vec![0u8; sz];
                for i in 0..n {
                    let res = match get(i) {
                        None => Err(anyhow!("image bytes are null or not binary")),
                        Some(b) => decode_image_chw(
                            b,
                            schema.channels,
                            schema.height,
                            schema.width,
                            &mut tmp,
                        ),
                    };
                    if let Err(e) = res {
                        return anyhow!("{}: row {}: {e}", path.display(), offset + i);
                    }
                }
                anyhow!(
                    "{}: rows {offset}..{}: decoding failed",
                    path.display(),
                    offset + n
                )
            })?;
        offset += n;
    }
    if offset != total {
        bail!(
            "parquet file {}: read {offset} rows, metadata says {total}",
            path.display()
        );
    }
    Ok((images, labels))
}

//! SVG charts with plotters' SVG backend.
//!
//! plotters is built without its `ttf`/`ab_glyph` features, so it uses its "naive" font: text is
//! emitted as SVG `<text>` elements (rendered by the viewer's sans-serif font) and only its width
//! is estimated for layout. No system font is read and no font crate is linked. Charts are
//! rendered into a string and written atomically.

use std::path::Path;

use anyhow::{bail, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::results::atomic_write;

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (800, 500);

/// A named line: `(x, y)` points and optional symmetric error bars (same length as `points`).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Half-heights of error bars, one per point.
    pub errors: Option<Vec<f64>>,
}

impl Series {
    /// A series without error bars.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            errors: None,
        }
    }
    /// Attach ±`errors` bars.
    pub fn with_errors(mut self, errors: Vec<f64>) -> Self {
        self.errors = Some(errors);
        self
    }

    /// The mean over runs (seeds) of `(epoch, value)` curves, with ±1 sample-std error bars;
    /// epochs that not every run has are dropped.
    pub fn mean_of<C: AsRef<[(f64, f64)]>>(
        name: impl Into<String>,
        curves: impl IntoIterator<Item = C>,
    ) -> Self {
        let mut by_epoch: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
        let mut n = 0;
        for c in curves {
            n += 1;
            for &(e, v) in c.as_ref() {
                by_epoch.entry(e as u64).or_default().push(v);
            }
        }
        let (points, errors): (Vec<(f64, f64)>, Vec<f64>) = by_epoch
            .into_iter()
            .filter(|(_, v)| v.len() == n)
            .map(|(e, v)| {
                let (m, sd) = crate::stats::mean_std(&v);
                ((e as f64, m), sd)
            })
            .unzip();
        Self::new(name, points).with_errors(errors)
    }
}

/// Titles of a chart.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// Caption above the chart.
    pub title: String,
    /// x-axis description.
    pub x: String,
    /// y-axis description.
    pub y: String,
}

impl Labels {
    /// All three labels.
    pub fn new(title: impl Into<String>, x: impl Into<String>, y: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            x: x.into(),
            y: y.into(),
        }
    }
}

/// One bin of a reliability diagram, as `zoo_models::metrics` computes it.
pub use zoo_models::metrics::ReliabilityBin;

fn color(i: usize) -> RGBColor {
    // Tableau-10: distinguishable, colour-blind friendlier than plotters' default palette.
    const C: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting: {e:?}")
}

/// Range covering `vals` with 5% padding (a unit range around a constant).
fn padded(vals: impl Iterator<Item = f64>) -> Result<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        bail!("nothing finite to plot");
    }
    if hi - lo < 1e-12 {
        return Ok((lo - 0.5, hi + 0.5));
    }
    let pad = 0.05 * (hi - lo);
    Ok((lo - pad, hi + pad))
}

fn render(
    path: &Path,
    draw: impl FnOnce(DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(root.clone())?;
        root.present().map_err(err)?;
    }
    atomic_write(path, svg.as_bytes())
}

/// The chart type every plot here draws on: `f64` × `f64` coordinates.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart on `root` over `x` × `y` with the shared caption font, margin and label areas.
fn chart_on<'a, DB: DrawingBackend + 'a>(
    root: &'a DrawingArea<DB, Shift>,
    caption: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, DB>> {
    ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(err)
}

/// The mesh with axis descriptions `x` and `y`.
fn mesh<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>, x: &str, y: &str) -> Result<()> {
    chart
        .configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .draw()
        .map_err(err)
}

/// The legend of the labelled series, in a white box at `position`.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(err)
}

/// Lines (one per series) with optional ±error bars and a legend.
pub fn line_chart(path: &Path, labels: &Labels, series: &[Series]) -> Result<()> {
    if series.iter().all(|s| s.points.is_empty()) {
        bail!("line chart {}: no points", path.display());
    }
    for s in series {
        if let Some(e) = &s.errors {
            if e.len() != s.points.len() {
                bail!(
                    "series {:?}: {} error bars for {} points",
                    s.name,
                    e.len(),
                    s.points.len()
                );
            }
        }
    }
    let xr = padded(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)))?;
    let yr = padded(series.iter().flat_map(|s| {
        let e = s
            .errors
            .clone()
            .unwrap_or_else(|| vec![0.0; s.points.len()]);
        s.points
            .iter()
            .zip(e)
            .flat_map(|(p, e)| [p.1 - e, p.1 + e])
            .collect::<Vec<_>>()
    }))?;
    render(path, |root| {
        let mut chart = chart_on(&root, &labels.title, xr.0..xr.1, yr.0..yr.1)?;
        mesh(&mut chart, &labels.x, &labels.y)?;
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
                .map_err(err)?
                .label(&s.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            if let Some(errors) = &s.errors {
                let w = (xr.1 - xr.0) * 0.005;
                chart
                    .draw_series(s.points.iter().zip(errors).flat_map(|(&(x, y), &e)| {
                        [
                            PathElement::new(vec![(x, y - e), (x, y + e)], c),
                            PathElement::new(vec![(x - w, y - e), (x + w, y - e)], c),
                            PathElement::new(vec![(x - w, y + e), (x + w, y + e)], c),
                        ]
                    }))
                    .map_err(err)?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// Overlaid histograms (semi-transparent) of several samples over a common binning of `bins`
/// bins over `range` (default: the data's range). Heights are fractions of each sample, so
/// samples of different sizes compare.
pub fn histogram(
    path: &Path,
    labels: &Labels,
    samples: &[(&str, &[f64])],
    bins: usize,
    range: Option<(f64, f64)>,
) -> Result<()> {
    if bins == 0 {
        bail!("histogram needs at least one bin");
    }
    let (lo, hi) = match range {
        Some(r) if r.1 > r.0 => r,
        Some(r) => bail!("histogram range {r:?} is empty"),
        None => {
            let r = padded(samples.iter().flat_map(|(_, v)| v.iter().copied()))?;
            (r.0, r.1)
        }
    };
    let width = (hi - lo) / bins as f64;
    let counts: Vec<Vec<f64>> = samples
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0.0; bins];
            let n = v.iter().filter(|x| x.is_finite()).count().max(1) as f64;
            for &x in v.iter().filter(|x| x.is_finite() && **x >= lo && **x <= hi) {
                let b = (((x - lo) / width) as usize).min(bins - 1);
                c[b] += 1.0 / n;
            }
            c
        })
        .collect();
    let ymax = counts
        .iter()
        .flatten()
        .fold(0.0f64, |a, &b| a.max(b))
        .max(1e-9)
        * 1.08;
    render(path, |root| {
        let mut chart = chart_on(&root, &labels.title, lo..hi, 0.0..ymax)?;
        let y = if labels.y.is_empty() {
            "fraction"
        } else {
            &labels.y
        };
        mesh(&mut chart, &labels.x, y)?;
        for (i, ((name, _), c)) in samples.iter().zip(&counts).enumerate() {
            let col = color(i);
            chart
                .draw_series(c.iter().enumerate().map(|(b, &h)| {
                    let x0 = lo + b as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, h)], col.mix(0.45).filled())
                }))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], col.mix(0.45).filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::MiddleRight)
    })
}

/// Grouped bar chart: one group of bars per category, one bar per series in each group.
/// `series[i].1[j]` is the height of series i in category j.
pub fn bar_chart(
    path: &Path,
    labels: &Labels,
    categories: &[String],
    series: &[(&str, &[f64])],
) -> Result<()> {
    if categories.is_empty() || series.is_empty() {
        bail!("bar chart {}: no data", path.display());
    }
    for (name, v) in series {
        if v.len() != categories.len() {
            bail!(
                "bar series {name:?}: {} values for {} categories",
                v.len(),
                categories.len()
            );
        }
    }
    let (ylo, yhi) = {
        let all = series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .chain([0.0]);
        let (lo, hi) = padded(all)?;
        (lo.min(0.0), hi)
    };
    let n = categories.len();
    let k = series.len() as f64;
    let cats = categories.to_vec();
    render(path, |root| {
        let mut chart = chart_on(&root, &labels.title, -0.5..(n as f64 - 0.5), ylo..yhi)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < cats.len() {
                    cats[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .x_desc(&labels.x)
            .y_desc(&labels.y)
            .draw()
            .map_err(err)?;
        let group = 0.8;
        let w = group / k;
        for (i, (name, v)) in series.iter().enumerate() {
            let col = color(i);
            chart
                .draw_series(v.iter().enumerate().map(|(j, &h)| {
                    let x0 = j as f64 - group / 2.0 + i as f64 * w;
                    Rectangle::new([(x0, 0.0), (x0 + w * 0.95, h)], col.filled())
                }))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], col.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::MiddleRight)
    })
}

/// Reliability diagram: accuracy per confidence bin (bars), mean confidence (markers), the
/// diagonal of perfect calibration, and the ECE in the title.
pub fn reliability_diagram(
    path: &Path,
    title: &str,
    bins: &[ReliabilityBin],
    ece: f64,
) -> Result<()> {
    if bins.is_empty() {
        bail!("reliability diagram {}: no bins", path.display());
    }
    render(path, |root| {
        let caption = format!("{title} (ECE {:.2}%)", 100.0 * ece);
        let mut chart = chart_on(&root, &caption, 0.0..1.0, 0.0..1.0)?;
        mesh(&mut chart, "confidence", "accuracy")?;
        chart
            .draw_series(bins.iter().filter(|b| b.count > 0).map(|b| {
                Rectangle::new(
                    [(b.lower, 0.0), (b.upper, b.accuracy)],
                    color(0).mix(0.7).filled(),
                )
            }))
            .map_err(err)?
            .label("accuracy")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 15, y + 5)], color(0).mix(0.7).filled())
            });
        chart
            .draw_series(bins.iter().filter(|b| b.count > 0).map(|b| {
                Circle::new(
                    ((b.lower + b.upper) / 2.0, b.confidence),
                    4,
                    color(3).filled(),
                )
            }))
            .map_err(err)?
            .label("mean confidence")
            .legend(|(x, y)| Circle::new((x + 7, y), 4, color(3).filled()));
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.6)))
            .map_err(err)?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.6)));
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// Scatter plot of several point sets.
pub fn scatter(path: &Path, labels: &Labels, sets: &[(&str, &[(f64, f64)])]) -> Result<()> {
    let xr = padded(sets.iter().flat_map(|(_, p)| p.iter().map(|p| p.0)))?;
    let yr = padded(sets.iter().flat_map(|(_, p)| p.iter().map(|p| p.1)))?;
    render(path, |root| {
        let mut chart = chart_on(&root, &labels.title, xr.0..xr.1, yr.0..yr.1)?;
        mesh(&mut chart, &labels.x, &labels.y)?;
        for (i, (name, pts)) in sets.iter().enumerate() {
            let col = color(i);
            chart
                .draw_series(
                    pts.iter()
                        .map(|&p| Circle::new(p, 3, col.mix(0.7).filled())),
                )
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| Circle::new((x + 7, y), 3, col.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::MiddleRight)
    })
}

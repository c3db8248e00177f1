//! Data for the bagging experiments: the simulated problems Breiman (1996) used (waveform,
//! Friedman #1–#3) and four small embedded public tables (see `data/README.md` beside this file).

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Targets of a [`Table`].
#[derive(Debug, Clone)]
pub enum Target {
    /// Class indices in `0..num_classes`.
    Classes {
        labels: Vec<u32>,
        num_classes: usize,
    },
    /// Real responses.
    Values(Vec<f64>),
}

/// A dense row-major design matrix and its targets.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// `n * p` inputs, row-major.
    pub x: Vec<f64>,
    /// Number of inputs.
    pub p: usize,
    pub target: Target,
}

impl Table {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match &self.target {
            Target::Classes { labels, .. } => labels.len(),
            Target::Values(y) => y.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inputs of row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.p..(i + 1) * self.p]
    }

    /// Number of classes (0 for regression).
    pub fn num_classes(&self) -> usize {
        match &self.target {
            Target::Classes { num_classes, .. } => *num_classes,
            Target::Values(_) => 0,
        }
    }

    pub fn is_classification(&self) -> bool {
        matches!(self.target, Target::Classes { .. })
    }

    /// Class labels (panics for a regression table).
    pub fn labels(&self) -> &[u32] {
        match &self.target {
            Target::Classes { labels, .. } => labels,
            Target::Values(_) => panic!("{} is a regression table", self.name),
        }
    }

    /// Responses (panics for a classification table).
    pub fn values(&self) -> &[f64] {
        match &self.target {
            Target::Values(y) => y,
            Target::Classes { .. } => panic!("{} is a classification table", self.name),
        }
    }

    /// Rows `a` followed by rows `b`, as one table (used to put a generated training and test set
    /// side by side so both can be addressed by row index).
    pub fn concat(a: &Table, b: &Table) -> Table {
        assert_eq!(a.p, b.p);
        let mut x = a.x.clone();
        x.extend_from_slice(&b.x);
        let target = match (&a.target, &b.target) {
            (
                Target::Classes {
                    labels: la,
                    num_classes: ka,
                },
                Target::Classes {
                    labels: lb,
                    num_classes: kb,
                },
            ) => Target::Classes {
                labels: la.iter().chain(lb).copied().collect(),
                num_classes: (*ka).max(*kb),
            },
            (Target::Values(ya), Target::Values(yb)) => {
                Target::Values(ya.iter().chain(yb).copied().collect())
            }
            _ => panic!("cannot concatenate a classification and a regression table"),
        };
        Table {
            name: a.name.clone(),
            x,
            p: a.p,
            target,
        }
    }
}

/// Triangular base wave h_k(i), k ∈ {1,2,3}, i ∈ {1..21} (Breiman et al. 1984, §2.6.2):
/// h1(i) = max(6 − |i − 11|, 0), h2(i) = h1(i − 4), h3(i) = h1(i + 4).
pub fn base_wave(k: usize, i: usize) -> f64 {
    let i = i as f64;
    let centre = match k {
        1 => 11.0,
        2 => 15.0,
        3 => 7.0,
        _ => panic!("base wave index must be 1, 2 or 3, got {k}"),
    };
    (6.0 - (i - centre).abs()).max(0.0)
}

/// The pair of base waves mixed for each waveform class (class 0: h1/h2, 1: h1/h3, 2: h2/h3).
pub const WAVEFORM_PAIRS: [(usize, usize); 3] = [(1, 2), (1, 3), (2, 3)];

/// `n` draws of the waveform problem: equiprobable class c with pair (a, b), u ~ U(0,1),
/// x_i = u·h_a(i) + (1−u)·h_b(i) + ε_i, ε_i ~ N(0,1), i = 1..21. Bayes error ≈ 14 %.
pub fn waveform(n: usize, rng: &mut StdRng) -> Table {
    let normal = Normal::new(0.0, 1.0).expect("valid normal");
    let mut x = Vec::with_capacity(n * 21);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.random_range(0..3usize);
        let (a, b) = WAVEFORM_PAIRS[c];
        let u: f64 = rng.random();
        for i in 1..=21 {
            x.push(u * base_wave(a, i) + (1.0 - u) * base_wave(b, i) + normal.sample(rng));
        }
        labels.push(c as u32);
    }
    Table {
        name: "waveform".into(),
        x,
        p: 21,
        target: Target::Classes {
            labels,
            num_classes: 3,
        },
    }
}

/// Friedman #1 (Friedman 1991): x ~ U(0,1)^10 (five inputs are noise),
/// y = 10 sin(π x1 x2) + 20 (x3 − ½)² + 10 x4 + 5 x5 + ε, ε ~ N(0, `noise_sd`²).
pub fn friedman1(n: usize, noise_sd: f64, rng: &mut StdRng) -> Table {
    let noise = Normal::new(0.0, noise_sd).expect("valid noise sd");
    let mut x = Vec::with_capacity(n * 10);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let r: Vec<f64> = (0..10).map(|_| rng.random::<f64>()).collect();
        let f = 10.0 * (std::f64::consts::PI * r[0] * r[1]).sin()
            + 20.0 * (r[2] - 0.5).powi(2)
            + 10.0 * r[3]
            + 5.0 * r[4];
        y.push(f + noise.sample(rng));
        x.extend(r);
    }
    Table {
        name: "friedman1".into(),
        x,
        p: 10,
        target: Target::Values(y),
    }
}

fn friedman_234(n: usize, rng: &mut StdRng) -> Vec<[f64; 4]> {
    use std::f64::consts::PI;
    (0..n)
        .map(|_| {
            [
                rng.random_range(0.0..100.0),
                rng.random_range(40.0 * PI..560.0 * PI),
                rng.random::<f64>(),
                rng.random_range(1.0..11.0),
            ]
        })
        .collect()
}

/// Friedman #2: y = (x1² + (x2 x3 − 1/(x2 x4))²)^½ + ε, with x1 ~ U(0,100), x2 ~ U(40π,560π),
/// x3 ~ U(0,1), x4 ~ U(1,11). Breiman used noise giving a 3:1 signal-to-noise ratio; the
/// conventional value for that (R `mlbench.friedman2`) is sd 125.
pub fn friedman2(n: usize, noise_sd: f64, rng: &mut StdRng) -> Table {
    let noise = Normal::new(0.0, noise_sd).expect("valid noise sd");
    let rows = friedman_234(n, rng);
    let mut x = Vec::with_capacity(n * 4);
    let mut y = Vec::with_capacity(n);
    for r in rows {
        let f = (r[0] * r[0] + (r[1] * r[2] - 1.0 / (r[1] * r[3])).powi(2)).sqrt();
        y.push(f + noise.sample(rng));
        x.extend(r);
    }
    Table {
        name: "friedman2".into(),
        x,
        p: 4,
        target: Target::Values(y),
    }
}

/// Friedman #3: y = atan((x2 x3 − 1/(x2 x4)) / x1) + ε, inputs as in #2; 3:1 signal-to-noise is
/// conventionally sd 0.1 (R `mlbench.friedman3`).
pub fn friedman3(n: usize, noise_sd: f64, rng: &mut StdRng) -> Table {
    let noise = Normal::new(0.0, noise_sd).expect("valid noise sd");
    let rows = friedman_234(n, rng);
    let mut x = Vec::with_capacity(n * 4);
    let mut y = Vec::with_capacity(n);
    for r in rows {
        let f = ((r[1] * r[2] - 1.0 / (r[1] * r[3])) / r[0]).atan();
        y.push(f + noise.sample(rng));
        x.extend(r);
    }
    Table {
        name: "friedman3".into(),
        x,
        p: 4,
        target: Target::Values(y),
    }
}

/// Parses an embedded CSV: header line, numeric columns, target last.
fn parse_csv(name: &str, text: &str, classes: Option<usize>) -> Result<Table> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .with_context(|| format!("{name}: empty table"))?;
    let cols = header.split(',').count();
    if cols < 2 {
        bail!("{name}: need at least one input and a target column");
    }
    let p = cols - 1;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (i, line) in lines.enumerate() {
        let vals: Vec<f64> = line
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("{name}: row {} is not numeric", i + 1))?;
        if vals.len() != cols {
            bail!(
                "{name}: row {} has {} columns, expected {cols}",
                i + 1,
                vals.len()
            );
        }
        x.extend_from_slice(&vals[..p]);
        y.push(vals[p]);
    }
    let target = match classes {
        Some(k) => {
            let labels = y
                .iter()
                .map(|&v| {
                    if v >= 0.0 && v.fract() == 0.0 && (v as usize) < k {
                        Ok(v as u32)
                    } else {
                        bail!("{name}: label {v} is not a class index below {k}")
                    }
                })
                .collect::<Result<Vec<u32>>>()?;
            Target::Classes {
                labels,
                num_classes: k,
            }
        }
        None => Target::Values(y),
    };
    Ok(Table {
        name: name.into(),
        x,
        p,
        target,
    })
}

/// Fisher's iris (150 × 4, 3 classes).
pub fn iris() -> Result<Table> {
    parse_csv("iris", include_str!("data/iris.csv"), Some(3))
}

/// Breast Cancer Wisconsin (Diagnostic) (569 × 30, 2 classes: 0 malignant, 1 benign).
pub fn breast_cancer() -> Result<Table> {
    parse_csv(
        "breast_cancer",
        include_str!("data/breast_cancer_wdbc.csv"),
        Some(2),
    )
}

/// Boston housing (506 × 12; the `B` column is omitted, see `data/README.md`).
pub fn boston() -> Result<Table> {
    parse_csv("boston", include_str!("data/boston_housing.csv"), None)
}

/// Efron et al.'s diabetes regression table (442 × 10).
pub fn diabetes() -> Result<Table> {
    parse_csv("diabetes", include_str!("data/diabetes.csv"), None)
}

//! Experiment set-up (validation before any file), summaries, plots and the `report` binary.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};
use zoo::plot::{self, Labels, ReliabilityBin, Series};
use zoo::results::{Row, Summary, TEMP_PREFIX};
use zoo::runner::{EpochTask, Metrics, Runner, StepMonitor, TaskState};
use zoo::{CommonArgs, Experiment, ExperimentConfig, Preset};

fn temp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("results_report_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Config {
    epochs: usize,
    lr: f64,
}

impl ExperimentConfig for Config {
    fn preset(p: Preset) -> Self {
        match p {
            Preset::Paper => Config {
                epochs: 100,
                lr: 0.1,
            },
            Preset::Cpu => Config {
                epochs: 10,
                lr: 0.1,
            },
            Preset::Smoke => Config { epochs: 2, lr: 0.1 },
        }
    }
    fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            bail!("epochs must be at least 1");
        }
        if self.lr.is_nan() || self.lr <= 0.0 {
            bail!("lr must be positive, got {}", self.lr);
        }
        Ok(())
    }
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
}

/// `argv` parsed as the binary would, with `--allow-dirty` (tests run from dirty trees).
fn parse(argv: &[&str]) -> (CommonArgs, Config) {
    let args = Args::try_parse_from(argv.iter().copied().chain(["--allow-dirty"])).unwrap();
    let mut cfg = Config::preset(args.common.preset);
    zoo::apply_overrides!(cfg, args; epochs, lr);
    (args.common, cfg)
}

#[test]
fn invalid_config_is_rejected_before_any_file_is_written() {
    let root = temp_dir("invalid");
    let out = root.join("out");
    let o = out.to_str().unwrap();
    for argv in [
        vec!["x", "--preset", "smoke", "--out", o, "--lr=-1"],
        vec!["x", "--out", o, "--epochs", "0"],
        vec!["x", "--out", o, "--data-dir", "/nonexistent/zoo-data"],
    ] {
        let (common, cfg) = parse(&argv);
        let e = Experiment::setup("toy", &common, cfg).unwrap_err();
        assert!(!out.exists(), "{argv:?} created {}: {e:#}", out.display());
    }
    let (common, cfg) = parse(&["x", "--out", o, "--lr=-1"]);
    let msg = format!("{:#}", Experiment::setup("toy", &common, cfg).unwrap_err());
    assert!(
        msg.contains("invalid configuration for toy") && msg.contains("lr must be positive"),
        "{msg}"
    );
}

#[test]
fn resume_refuses_a_different_config() {
    let out = temp_dir("resume_cfg");
    let o = out.to_str().unwrap();
    let (common, cfg) = parse(&["x", "--preset", "smoke", "--out", o]);
    Experiment::setup("toy", &common, cfg).unwrap();
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    // The config's own fields, and the backend the run resolved (recorded so that a resume cannot
    // switch backends).
    assert_eq!(
        saved,
        serde_json::json!({ "epochs": 2, "lr": 0.1, "backend": "fast" })
    );
    let (common, cfg) = parse(&[
        "x", "--preset", "smoke", "--out", o, "--resume", "--lr", "0.2",
    ]);
    let msg = format!("{:#}", Experiment::setup("toy", &common, cfg).unwrap_err());
    assert!(msg.contains("differs"), "{msg}");
    let (common, cfg) = parse(&["x", "--preset", "smoke", "--out", o, "--resume"]);
    Experiment::setup("toy", &common, cfg).unwrap();
}

/// Deterministic fake task: loss decays with the epoch, error depends on the seed.
struct Fake {
    seed: u64,
    epoch: usize,
}

impl EpochTask for Fake {
    fn train_epoch(
        &mut self,
        epoch: usize,
        _rng: &mut rand::rngs::StdRng,
        m: &mut StepMonitor,
    ) -> Result<Metrics> {
        self.epoch = epoch;
        let loss = 1.0 / (epoch + 1) as f64;
        for _ in 0..3 {
            m.step(loss)?;
        }
        Ok(Metrics::new().with("loss", loss))
    }
    fn evaluate(&mut self, epoch: usize) -> Result<Metrics> {
        Ok(Metrics::new().with(
            "test_error",
            0.5 / (epoch + 1) as f64 + 0.01 * self.seed as f64,
        ))
    }
    fn state(&self) -> Result<TaskState> {
        Ok(TaskState {
            tensors: Default::default(),
            json: serde_json::json!({ "epoch": self.epoch }),
        })
    }
    fn restore(&mut self, s: TaskState) -> Result<()> {
        self.epoch = s.json["epoch"].as_u64().unwrap() as usize;
        Ok(())
    }
}

fn no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            no_temp_files(&p);
        } else {
            assert!(
                !p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(TEMP_PREFIX),
                "{}",
                p.display()
            );
        }
    }
}

#[test]
fn experiment_writes_config_logs_summary_and_plots() {
    let out = temp_dir("exp").join("toy").join("smoke");
    let (common, cfg) = parse(&[
        "x",
        "--preset",
        "smoke",
        "--seeds",
        "0,1,2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let exp = Experiment::setup("toy", &common, cfg).unwrap();
    let outcome = Runner::new(&exp, exp.config.epochs)
        .run(|seed| Ok(Fake { seed, epoch: 0 }))
        .unwrap();
    let errs = outcome.final_values("test_error").unwrap();
    assert_eq!(errs, vec![0.25, 0.26, 0.27]);
    plot::line_chart(
        &exp.results.path("test_error.svg"),
        &Labels::new("Test error", "epoch", "error"),
        &[outcome.mean_curve("test_error", "ours (mean ± std)")],
    )
    .unwrap();
    let mut s = Summary::new(&exp, "Toy et al. 2024, A toy paper", "Table 1: test error").unwrap();
    s.row(
        Row::new("Toy net", "error", errs)
            .paper(0.3, "Table 1, row 1")
            .decimals(3),
    )
    .row(Row::new("Accuracy", "%", vec![75.0, 74.0, 73.0]).higher_is_better())
    .plot("test_error.svg")
    .note("CPU-sized");
    s.add_outcome("", &outcome).unwrap();
    exp.results.write_summary(&s).unwrap();

    for f in [
        "config.json",
        "summary.json",
        "summary.md",
        "test_error.svg",
        "seed_0/log.csv",
        "seed_2/log.csv",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let back: Summary =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    // (serde_json's float parsing may differ in the last bit, so compare values, not structs.)
    assert_eq!(
        (back.rows.len(), back.plots.clone(), back.notes.clone()),
        (2, s.plots.clone(), s.notes.clone())
    );
    assert_eq!(back.config, serde_json::json!({ "epochs": 2, "lr": 0.1 }));
    let row = &back.rows[0];
    assert_eq!(row.paper.as_ref().unwrap().source, "Table 1, row 1");
    assert!((row.ours.mean - 0.26).abs() < 1e-12 && (row.ours.std - 0.01).abs() < 1e-12);
    assert_eq!(back.metrics["train_loss"].per_seed, vec![0.5, 0.5, 0.5]);
    assert_eq!(back.seeds, vec![0, 1, 2]);
    assert!(!back.run.git_revision.is_empty() && back.run.cores >= 1);
    assert!(back.run.candle_version.starts_with("0."));
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("| Toy net | 0.300 | 0.260 ± 0.010 | -0.040 | error ↓ | Table 1, row 1 |"),
        "{md}"
    );
    assert!(
        md.contains("| Accuracy | — | 74.00 ± 1.00 | — | % ↑ | — |"),
        "{md}"
    );
    assert!(md.contains("![test_error.svg](test_error.svg)"));
    no_temp_files(&out);
}

fn count(s: &str, pat: &str) -> usize {
    s.matches(pat).count()
}

#[test]
fn svg_charts_are_written_with_their_series() {
    let d = temp_dir("plots");
    let labels = Labels::new("A title", "epoch", "value");
    let a = Series::new("alpha-series", vec![(0.0, 1.0), (1.0, 0.5), (2.0, 0.25)]);
    let b = Series::new("beta-series", vec![(0.0, 0.9), (1.0, 0.6), (2.0, 0.4)])
        .with_errors(vec![0.1, 0.05, 0.02]);
    plot::line_chart(&d.join("line.svg"), &labels, &[a.clone(), b]).unwrap();
    let svg = std::fs::read_to_string(d.join("line.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("alpha-series") && svg.contains("beta-series"));
    assert!(svg.contains("A title") && svg.contains("epoch"));
    // Two data lines + two legend samples + 3×3 error-bar strokes.
    assert!(
        count(&svg, "<polyline") >= 2 + 2 + 9,
        "{}",
        count(&svg, "<polyline")
    );
    assert!(plot::line_chart(
        &d.join("bad.svg"),
        &labels,
        &[a.clone().with_errors(vec![0.1])]
    )
    .is_err());
    assert!(!d.join("bad.svg").exists());

    let x: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
    let y: Vec<f64> = (0..50).map(|i| 0.5 + i as f64 / 100.0).collect();
    plot::histogram(
        &d.join("hist.svg"),
        &labels,
        &[("clean", &x), ("noisy", &y)],
        10,
        Some((0.0, 1.0)),
    )
    .unwrap();
    let svg = std::fs::read_to_string(d.join("hist.svg")).unwrap();
    assert!(svg.contains("clean") && svg.contains("noisy"));
    assert!(count(&svg, "<rect") >= 10 + 5, "{}", count(&svg, "<rect"));

    let cats = vec!["many".to_string(), "medium".to_string(), "few".to_string()];
    plot::bar_chart(
        &d.join("bar.svg"),
        &labels,
        &cats,
        &[("joint", &[60.0, 40.0, 10.0]), ("cRT", &[58.0, 45.0, 25.0])],
    )
    .unwrap();
    let svg = std::fs::read_to_string(d.join("bar.svg")).unwrap();
    assert!(svg.contains("joint") && svg.contains("cRT") && svg.contains("\nmedium\n"));
    assert!(plot::bar_chart(&d.join("bar2.svg"), &labels, &cats, &[("short", &[1.0])]).is_err());

    let bins: Vec<ReliabilityBin> = (0..15)
        .map(|i| {
            let lo = i as f64 / 15.0;
            ReliabilityBin {
                lower: lo,
                upper: lo + 1.0 / 15.0,
                confidence: lo + 0.03,
                accuracy: lo,
                count: 10,
            }
        })
        .collect();
    plot::reliability_diagram(&d.join("rel.svg"), "ResNet", &bins, 0.0321).unwrap();
    let svg = std::fs::read_to_string(d.join("rel.svg")).unwrap();
    assert!(svg.contains("ECE 3.21%") && svg.contains("perfect calibration"));

    let pts = [(0.1, 0.2), (0.3, 0.1), (0.5, 0.9)];
    plot::scatter(&d.join("sc.svg"), &labels, &[("weights", &pts)]).unwrap();
    let svg = std::fs::read_to_string(d.join("sc.svg")).unwrap();
    assert!(svg.contains("weights") && count(&svg, "<circle") >= 3);
    no_temp_files(&d);
}

fn fake_summary(binary: &str, preset: &str, paper: f64, ours: Vec<f64>) -> Summary {
    Summary {
        binary: binary.into(),
        preset: preset.into(),
        title: format!("{binary} table"),
        paper: format!("Paper of {binary}"),
        seeds: (0..ours.len() as u64).collect(),
        rows: vec![Row::new("Setting A", "% error", ours).paper(paper, "Table 2")],
        metrics: Default::default(),
        plots: vec!["curves.svg".into()],
        notes: vec![],
        config: serde_json::json!({}),
        run: zoo::results::RunInfo::collect(1.0, &candle_core::Device::Cpu),
    }
}

#[test]
fn report_gathers_every_summary_into_the_readme() {
    let root = temp_dir("report");
    let write = |s: &Summary| {
        let d = root.join(&s.binary).join(&s.preset);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("summary.json"), serde_json::to_vec(s).unwrap()).unwrap();
    };
    write(&fake_summary("mwn", "smoke", 36.5, vec![50.0, 52.0]));
    write(&fake_summary("mwn", "cpu", 36.5, vec![40.0, 42.0]));
    write(&fake_summary("distill", "cpu", 74.0, vec![80.0]));
    std::fs::create_dir_all(root.join("empty/cpu")).unwrap();

    let (path, n) = zoo::report::write_readme(&root).unwrap();
    assert_eq!(n, 3);
    let md = std::fs::read_to_string(&path).unwrap();
    let d = md.find("## distill").unwrap();
    let m = md.find("## mwn").unwrap();
    let cpu = md.find("### preset `cpu`: mwn table").unwrap();
    let smoke = md.find("### preset `smoke`: mwn table").unwrap();
    assert!(d < m && m < cpu && cpu < smoke, "{md}");
    assert!(
        md.contains("| Setting A | 36.50 | 41.00 ± 1.41 | +4.50 | % error ↓ | Table 2 |"),
        "{md}"
    );
    assert!(
        md.contains("[curves.svg](mwn/cpu/curves.svg)") && md.contains("(distill/cpu/summary.md)")
    );

    // The binary does the same, and a corrupt summary is an error naming the file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["--results", root.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        md,
        "the binary writes the same README"
    );
    std::fs::write(root.join("mwn/cpu/summary.json"), b"{ not json").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["--results", root.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mwn/cpu/summary.json"));
}

/// HEAD's short revision: what a run from this checkout, clean, records.
fn head_revision() -> String {
    let o = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .expect("git runs");
    assert!(o.status.success(), "the tests run in a git checkout");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A folder as a protocol run writes it: per-seed logs, config.json, a plot and the summary
/// (at HEAD, clean). Rows: A (seed logs, as %), B, their paired difference, a single teacher.
fn protocol_folder(root: &Path, name: &str) -> PathBuf {
    let dir = root.join("toy").join(name);
    let results = zoo::results::ResultsDir::create(&dir).unwrap();
    let log = |rel: &str, err: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            p,
            format!("epoch,epoch_s,test_error\n1,2.125,0.7\n2,2.250,{err}\n"),
        )
        .unwrap();
    };
    log("seed_0/a/log.csv", "0.4");
    log("seed_1/a/log.csv", "0.42");
    log("seed_0/b/log.csv", "0.3875");
    log("seed_1/b/log.csv", "0.405");
    log("seed_0/teacher/log.csv", "0.125");
    std::fs::write(dir.join("config.json"), "{}\n").unwrap();
    std::fs::write(dir.join("curves.svg"), "<svg></svg>\n").unwrap();
    let mut s = fake_summary("toy", name, 36.5, vec![40.0, 42.0]);
    s.rows
        .push(Row::new("Setting B", "% error", vec![38.75, 40.5]));
    s.rows
        .push(Row::paired_difference("A − B", "points", &[40.0, 42.0], &[38.75, 40.5]).unwrap());
    s.rows.push(Row::new(
        "Teacher (one, shared by the seeds)",
        "% error",
        vec![12.5],
    ));
    s.run.git_revision = head_revision();
    results.write_summary(&s).unwrap();
    dir
}

fn edit_summary(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("summary.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn verdict_of(checks: &[zoo::report::FolderCheck], name: &str) -> zoo::report::Verdict {
    checks
        .iter()
        .find(|c| c.folder.ends_with(name))
        .unwrap_or_else(|| panic!("{name} not checked: {checks:?}"))
        .verdict
        .clone()
}

fn failures(v: zoo::report::Verdict) -> String {
    match v {
        zoo::report::Verdict::Failed(w) => w.join("\n"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn verify_passes_a_protocol_folder_and_fails_tampered_missing_and_dirty_ones() {
    use zoo::report::{render_verification, verify, Verdict};
    let root = temp_dir("verify");
    let good = protocol_folder(&root, "good");
    let md = std::fs::read_to_string(good.join("summary.md")).unwrap();
    assert!(
        md.contains("| Teacher (one, shared by the seeds) | — | 12.50 (n = 1) |")
            && !md.contains("± 0.00"),
        "{md}"
    );
    assert!(
        md.contains("(p = 0.058, not resolved)")
            && md.contains("A − B: paired t = 11.00, p = 0.058: not resolved (p > 0.05)"),
        "{md}"
    );
    assert!(
        md.starts_with("# toy"),
        "a clean run's summary starts with its title: {md}"
    );

    // A value changed in summary.json: its statistics and the table no longer agree.
    let tampered = protocol_folder(&root, "tampered");
    edit_summary(&tampered, |v| {
        v["rows"][0]["ours"]["per_seed"][1] = 43.0.into()
    });
    // A per-seed log changed: the summary's value is in no per-seed file any more.
    let relogged = protocol_folder(&root, "relogged");
    std::fs::write(
        relogged.join("seed_1/a/log.csv"),
        "epoch,epoch_s,test_error\n1,2.125,0.7\n2,2.250,0.43\n",
    )
    .unwrap();
    let missing = protocol_folder(&root, "missing");
    std::fs::remove_file(missing.join("curves.svg")).unwrap();
    let dirty = protocol_folder(&root, "dirty");
    edit_summary(&dirty, |v| {
        v["run"]["git_revision"] = format!("{}-dirty", head_revision()).into()
    });
    let unknown = protocol_folder(&root, "unknown-commit");
    edit_summary(&unknown, |v| v["run"]["git_revision"] = "0000000".into());
    let legacy = protocol_folder(&root, "legacy");
    edit_summary(&legacy, |v| {
        v["run"].as_object_mut().unwrap().remove("protocol");
    });
    std::fs::create_dir_all(root.join("toy/no-summary/seed_0")).unwrap();

    let checks = verify(&root).unwrap();
    assert_eq!(checks.len(), 8, "{checks:?}");
    match verdict_of(&checks, "good") {
        Verdict::Verified(what) => {
            let what = what.join("; ");
            assert!(
                what.contains("5 per-seed values found in the per-seed files, 2 as differences"),
                "{what}"
            );
        }
        other => panic!("the good folder: {other:?}"),
    }
    let t = failures(verdict_of(&checks, "tampered"));
    // (the table shows the stored mean, so only the recomputed statistics and the trace fail)
    assert!(
        t.contains("row \"Setting A\": mean ± std 41 ± ")
            && t.contains("row \"Setting A\", seed 1: 43 is in no per-seed file"),
        "{t}"
    );
    let r = failures(verdict_of(&checks, "relogged"));
    assert!(
        r.contains("row \"Setting A\", seed 1: 42 is in no per-seed file"),
        "{r}"
    );
    assert!(failures(verdict_of(&checks, "missing")).contains("missing: curves.svg"));
    assert!(failures(verdict_of(&checks, "dirty")).contains("dirty tree"));
    assert!(failures(verdict_of(&checks, "unknown-commit")).contains("not a commit"));
    assert!(failures(verdict_of(&checks, "no-summary")).contains("summary.json"));
    assert_eq!(verdict_of(&checks, "legacy"), Verdict::Legacy);
    let (text, ok) = render_verification(&checks);
    assert!(!ok);
    assert!(text.contains("legacy    toy/legacy (predates results/PROTOCOL.md): not verified"));
    assert!(
        text.contains("1 verified, 1 legacy (not verified), 6 failed, of 8 folders"),
        "{text}"
    );

    // The binary: status 1 while a folder fails, 0 once only good and legacy ones remain.
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_report"))
            .args(["--verify", "--results", root.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let o = run();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAILED    toy/tampered:"));
    for f in [
        "tampered",
        "relogged",
        "missing",
        "dirty",
        "unknown-commit",
        "no-summary",
    ] {
        std::fs::remove_dir_all(root.join("toy").join(f)).unwrap();
    }
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn a_dirty_summary_says_so_first_and_a_dirty_tree_needs_the_flag() {
    let mut s = fake_summary("toy", "cpu", 36.5, vec![40.0, 42.0]);
    s.run.git_revision = "abc1234-dirty".into();
    assert!(
        s.to_markdown().starts_with("**Dirty tree"),
        "{}",
        s.to_markdown()
    );
    let dirty = zoo::results::git_revision().ends_with("-dirty");
    let refused = zoo::results::check_clean_tree(false);
    assert_eq!(refused.is_err(), dirty);
    if let Err(e) = refused {
        assert!(format!("{e:#}").contains("--allow-dirty"), "{e:#}");
    }
    zoo::results::check_clean_tree(true).unwrap();
}

#[test]
fn a_resume_that_rewrites_the_summary_keeps_the_training_time() {
    use zoo::results::RunInfo;
    let cpu = candle_core::Device::Cpu;
    let mut first = RunInfo::collect(100.0, &cpu);
    first.command = "toy --preset cpu".into();
    first.finish(None, false, true);
    assert_eq!(first.training_wall_time_s, Some(100.0));
    assert_eq!(first.protocol, Some(1));
    assert!(first
        .rustc
        .as_deref()
        .is_some_and(|v| v.starts_with("rustc ")));
    let prev = serde_json::json!({ "run": first });
    let mut rewrite = RunInfo::collect(2.0, &cpu);
    rewrite.command = "toy --preset cpu --resume".into();
    rewrite.finish(Some(&prev), true, false);
    assert_eq!(rewrite.training_wall_time_s, Some(100.0));
    assert_eq!(rewrite.invocations.len(), 2);
    assert!(rewrite
        .to_markdown()
        .contains("- this invocation: 2.0 s, rebuilt the summary"));
    // A resume that trains adds its time.
    let prev = serde_json::json!({ "run": rewrite });
    let mut more = RunInfo::collect(50.0, &cpu);
    more.command = "toy --preset cpu --resume --seeds 0,1,2".into();
    more.finish(Some(&prev), true, true);
    assert_eq!(more.training_wall_time_s, Some(150.0));
    // A summary written before the history counts as one invocation, a rewrite as unknown.
    let legacy = serde_json::json!({ "run": { "wall_time_s": 1726.0, "command": "distill",
        "git_revision": "001a2f5", "finished_utc": "2026-12-02T04:14:53Z" } });
    let mut r = RunInfo::collect(1.0, &cpu);
    r.finish(Some(&legacy), true, false);
    assert_eq!(r.training_wall_time_s, Some(1726.0));
    let legacy_rewrite = serde_json::json!({ "run": { "wall_time_s": 0.85,
        "command": "mwn --resume" } });
    let mut r = RunInfo::collect(1.0, &cpu);
    r.finish(Some(&legacy_rewrite), true, false);
    assert_eq!(r.training_wall_time_s, None);
    assert!(r.to_markdown().contains("training wall time: not known"));
    // A resume with no earlier summary cannot know the training time either.
    let mut r = RunInfo::collect(1.0, &cpu);
    r.finish(None, true, true);
    assert_eq!(r.training_wall_time_s, None);
}

#[test]
fn the_readme_status_block_is_generated_from_the_summaries() {
    use zoo::report::{write_status_block, STATUS_BEGIN, STATUS_END};
    let root = temp_dir("status");
    let results = root.join("results");
    protocol_folder(&results, "cpu");
    let readme = root.join("README.md");
    std::fs::write(
        &readme,
        format!("# Zoo\n\nBefore.\n\n{STATUS_BEGIN}\nold, typed\n{STATUS_END}\n\nAfter.\n"),
    )
    .unwrap();
    write_status_block(&readme, &results).unwrap();
    let md = std::fs::read_to_string(&readme).unwrap();
    assert!(
        md.starts_with("# Zoo\n\nBefore.\n\n")
            && md.ends_with(&format!("{STATUS_END}\n\nAfter.\n"))
    );
    assert!(!md.contains("old, typed"), "{md}");
    let want = format!(
        "| `toy` | [toy/cpu]({}/toy/cpu/summary.md) | 0, 1 |",
        results.display()
    );
    assert!(
        md.contains(&want) && md.contains("| verified | Setting A: 41.00 ± 1.41;"),
        "{md}"
    );
    // Rewriting is idempotent; a stale block is found; a README without the block is an
    // error, left as it was.
    assert!(zoo::report::status_block_is_current(&readme, &results).unwrap());
    write_status_block(&readme, &results).unwrap();
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), md);
    std::fs::write(&readme, md.replace("| verified |", "| legacy |")).unwrap();
    assert!(!zoo::report::status_block_is_current(&readme, &results).unwrap());
    std::fs::write(&readme, "# Zoo\n").unwrap();
    let e = write_status_block(&readme, &results).unwrap_err();
    assert!(format!("{e:#}").contains(STATUS_BEGIN));
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), "# Zoo\n");
}

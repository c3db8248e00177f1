//! Addressable runs end to end on `distill --preset smoke` (students need the teacher): the plan
//! lists the teacher first; a shard whose dependency is neither present nor in it refuses to
//! start; `--summarise` names missing runs; the summary merged from two shards has the same
//! numbers as a single process's; a shard with another configuration is refused.

use std::path::Path;
use std::process::Output;

use zoo::sweep::compare::compare_files;

use crate::common::{run_with_out, scratch};

fn distill(args: &[&str], out: &Path) -> Output {
    let mut a = vec!["--preset", "smoke", "--threads", "1"];
    a.extend_from_slice(args);
    run_with_out(env!("CARGO_BIN_EXE_distill"), &a, out)
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output, what: &str) -> String {
    assert!(!o.status.success(), "{what} should have failed");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn shards_merge_into_the_single_process_summary() {
    let single = scratch("plan", "single");
    let sharded = scratch("plan", "sharded");
    let listing = ok(&distill(&["--list-runs"], &sharded), "--list-runs");
    assert!(listing.starts_with("teacher\t-\t"), "{listing}");
    assert!(listing.contains("s0.student_hard\t-\t"), "{listing}");
    assert!(listing.contains("\tteacher\t"), "{listing}");
    assert!(!sharded.exists(), "--list-runs wrote {}", sharded.display());

    // Shard 2/2 has students but not the teacher: refused before any work.
    let e = err(&distill(&["--shard", "2/2"], &sharded), "shard 2/2 first");
    assert!(e.contains("teacher (needed by"), "{e}");
    ok(&distill(&["--shard", "1/2"], &sharded), "shard 1/2");
    let e = err(
        &distill(&["--summarise"], &sharded),
        "--summarise of a partial sweep",
    );
    assert!(e.contains("missing") && e.contains("--only"), "{e}");
    assert!(!sharded.join("summary.json").exists());
    // Another configuration in the same folder is refused.
    let e = err(
        &distill(&["--shard", "2/2", "--set", "kd.alpha=0.25"], &sharded),
        "a shard with another config",
    );
    assert!(e.contains("differs"), "{e}");
    ok(&distill(&["--shard", "2/2"], &sharded), "shard 2/2");
    ok(&distill(&["--summarise"], &sharded), "--summarise");

    ok(&distill(&[], &single), "single process");
    let d = compare_files(&single.join("summary.json"), &sharded.join("summary.json")).unwrap();
    assert!(d.is_empty(), "merged summary differs: {d:?}");
    let e = err(&distill(&["--only", "nope"], &sharded), "--only nope");
    assert!(e.contains("no such run"), "{e}");
    let _ = std::fs::remove_dir_all(&single);
    let _ = std::fs::remove_dir_all(&sharded);
}

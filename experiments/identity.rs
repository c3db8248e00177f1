//! What makes two runs the same experiment: the resolved configuration minus the fields that may
//! legitimately differ between invocations of one run, and its fingerprint.
//!
//! Every checkpoint carries this identity (see [`crate::runner`]), so `--resume` can refuse a
//! checkpoint trained under another configuration even when `config.json` was rewritten since
//! (e.g. a rerun of one seed with another learning rate into the same `--out`).
//!
//! Excluded, top-level only:
//! - `seeds`: the list of seeds run by this invocation. A checkpoint belongs to one seed (checked
//!   on its own), and `--resume --seeds` may add seeds to a finished run.
//! - `jobs`: runs trained side by side; it changes wall times, never the numbers.
//!
//! The output directory, `--threads`, `--cpu`, `--resume` and the data location (`--data-dir`)
//! are flags, not configuration fields, so they are not part of the identity either: the same
//! run may be resumed from a moved folder or with the data at another path.

use serde_json::Value;

/// Top-level configuration fields left out of the identity (see the module doc).
pub const EXCLUDED_FIELDS: &[&str] = &["seeds", "jobs"];

/// A configuration's identity: the configuration without [`EXCLUDED_FIELDS`] and its fingerprint.
#[derive(Debug, Clone)]
pub struct ConfigIdentity {
    /// 16 hex digits (FNV-1a 64 of the canonical JSON of `config`).
    pub hash: String,
    /// The configuration without the excluded fields.
    pub config: Value,
    /// The excluded fields' current values (put back before `upgrade`, which reads whole configs).
    pub excluded: serde_json::Map<String, Value>,
    /// Reads an identity saved by older code through today's config type (fields added since
    /// take their serde defaults), so that a code update alone is not a mismatch.
    pub upgrade: fn(Value) -> Value,
}

impl ConfigIdentity {
    /// The identity of a resolved configuration's JSON form.
    pub fn of(config: &Value) -> Self {
        Self::with_upgrade(config, |v| v)
    }

    /// As [`ConfigIdentity::of`], with the reader of older saved identities.
    pub fn with_upgrade(config: &Value, upgrade: fn(Value) -> Value) -> Self {
        let excluded = match config {
            Value::Object(m) => m
                .iter()
                .filter(|(k, _)| EXCLUDED_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => serde_json::Map::new(),
        };
        let config = strip_excluded(config);
        Self {
            hash: fingerprint(&config),
            config,
            excluded,
            upgrade,
        }
    }

    /// `Ok` when `saved` (hash and configuration from a checkpoint) is this identity; otherwise
    /// the differing fields, as `path: saved → now` lines.
    pub fn check(&self, saved_hash: &str, saved: &Value) -> Result<(), Vec<String>> {
        if saved_hash == self.hash {
            return Ok(());
        }
        let mut whole = saved.clone();
        if let Value::Object(m) = &mut whole {
            for (k, v) in &self.excluded {
                m.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let upgraded = strip_excluded(&(self.upgrade)(whole));
        if fingerprint(&upgraded) == self.hash {
            return Ok(());
        }
        let mut diffs = Vec::new();
        diff(&upgraded, &self.config, "", &mut diffs);
        if diffs.is_empty() {
            diffs.push("(the configurations hash differently but compare equal)".into());
        }
        Err(diffs)
    }
}

/// `config` without the top-level [`EXCLUDED_FIELDS`].
pub fn strip_excluded(config: &Value) -> Value {
    let mut v = config.clone();
    if let Value::Object(m) = &mut v {
        for f in EXCLUDED_FIELDS {
            m.remove(*f);
        }
    }
    v
}

/// FNV-1a 64 of the canonical JSON (object keys sorted), as 16 hex digits. Stable across Rust
/// and serde versions, unlike `std`'s hasher; not cryptographic (it guards against mistakes).
pub fn fingerprint(v: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical(v).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// JSON text with object keys in sorted order at every level.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let body: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&m[*k])))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(a) => {
            let body: Vec<String> = a.iter().map(canonical).collect();
            format!("[{}]", body.join(","))
        }
        other => other.to_string(),
    }
}

/// Dotted paths where `a` and `b` differ, with both values (`a` first).
pub fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let none = Value::Null;
                let (va, vb) = (x.get(k), y.get(k));
                if va != vb {
                    match (va, vb) {
                        (Some(va), Some(vb)) => diff(va, vb, &join(k), out),
                        _ => out.push(format!(
                            "{}: {} → {}",
                            join(k),
                            show(va.unwrap_or(&none), va.is_some()),
                            show(vb.unwrap_or(&none), vb.is_some())
                        )),
                    }
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(va, vb, &join(&i.to_string()), out);
            }
        }
        _ if a != b => out.push(format!(
            "{}: {} → {}",
            if path.is_empty() { "(root)" } else { path },
            show(a, true),
            show(b, true)
        )),
        _ => {}
    }
}

fn show(v: &Value, present: bool) -> String {
    if !present {
        return "(absent)".into();
    }
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seeds_and_jobs_do_not_change_the_identity_other_fields_do() {
        let a = ConfigIdentity::of(&json!({"seeds": [0], "jobs": 1, "opt": {"lr": 0.1}}));
        let b = ConfigIdentity::of(&json!({"opt": {"lr": 0.1}, "seeds": [0, 1], "jobs": 2}));
        assert_eq!(a.hash, b.hash);
        let c = ConfigIdentity::of(&json!({"seeds": [0], "opt": {"lr": 0.2}}));
        assert_ne!(a.hash, c.hash);
        assert_eq!(a.hash.len(), 16);
    }

    #[test]
    fn key_order_does_not_change_the_fingerprint() {
        let a: Value = serde_json::from_str(r#"{"a": 1, "b": {"x": [1, 2], "y": "s"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b": {"y": "s", "x": [1, 2]}, "a": 1}"#).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&json!({"a": 1})));
    }

    #[test]
    fn a_mismatch_names_the_differing_fields() {
        let now = ConfigIdentity::of(&json!({"opt": {"lr": 0.2, "milestones": [5, 8]}, "n": 3}));
        let old = json!({"opt": {"lr": 0.1, "milestones": [5, 9]}, "n": 3, "gone": true});
        let old_hash = fingerprint(&old);
        let e = now.check(&old_hash, &old).unwrap_err();
        assert_eq!(
            e,
            vec![
                "gone: true → (absent)".to_string(),
                "opt.lr: 0.1 → 0.2".to_string(),
                "opt.milestones.1: 9 → 8".to_string()
            ]
        );
        assert!(now.check(&now.hash, &now.config).is_ok());
    }

    #[test]
    fn an_older_identity_read_with_todays_defaults_matches() {
        fn add_default(mut v: Value) -> Value {
            if let Value::Object(m) = &mut v {
                m.entry("warmup").or_insert(json!(0));
            }
            v
        }
        let now = ConfigIdentity::with_upgrade(&json!({"lr": 0.1, "warmup": 0}), add_default);
        let old = json!({"lr": 0.1});
        assert!(now.check(&fingerprint(&old), &old).is_ok());
        let other = json!({"lr": 0.1, "warmup": 5});
        assert!(now.check(&fingerprint(&other), &other).is_err());
    }
}

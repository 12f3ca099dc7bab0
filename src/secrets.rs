//! Secret masking: the values of secret variables shown as `***` wherever text leaves orch.
//!
//! Owns which variables are secret (a job's `secrets`, and `ANTHROPIC_API_KEY`, `*_TOKEN`,
//! `*_SECRET`, `*_PASSWORD` in a job's environment) and the one [`Mask`] that replaces their
//! values. The mask of the manifest being run is installed once ([`install`]) and applied by the
//! places text leaves orch: terminal text (`report::sanitize`), NDJSON events, the results file,
//! plan output and error reports. It must never touch what a child wrote to its own log: logs
//! keep the child's bytes.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use crate::manifest::Manifest;

/// What a masked value is shown as.
pub const MASKED: &str = "***";

/// Values shorter than this are not masked: masking "1" or "on" would garble every line
/// while hiding nothing.
pub const MIN_LEN: usize = 3;

/// Whether a variable is secret by its name alone: `ANTHROPIC_API_KEY`, or a name ending in
/// `_TOKEN`, `_SECRET` or `_PASSWORD` (any case).
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper == "ANTHROPIC_API_KEY"
        || ["_TOKEN", "_SECRET", "_PASSWORD"]
            .iter()
            .any(|s| upper.ends_with(s))
}

/// The secret values to hide, longest first (so a value that contains another is hidden whole).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mask {
    /// Each value as written and, where JSON would escape it, as JSON writes it.
    needles: Vec<String>,
}

impl Mask {
    /// A mask of `values`; empty values and those shorter than [`MIN_LEN`] are dropped.
    pub fn new(values: impl IntoIterator<Item = String>) -> Mask {
        let mut needles: Vec<String> = Vec::new();
        for value in values {
            if value.len() < MIN_LEN {
                continue;
            }
            let escaped = serde_json::to_string(&value).expect("a string serializes");
            let escaped = escaped[1..escaped.len() - 1].to_string();
            if escaped != value {
                needles.push(escaped);
            }
            needles.push(value);
        }
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Mask { needles }
    }

    /// The mask of a manifest's jobs: for each job, the values of its `secrets` and of the
    /// variables secret by name, in its environment (its `env` and `env_file` first, then
    /// `inherited`, orch's own environment).
    pub fn for_manifest(manifest: &Manifest, inherited: &[(String, String)]) -> Mask {
        let mut values = Vec::new();
        for job in &manifest.jobs {
            let lookup = |name: &str| {
                job.env
                    .iter()
                    .chain(inherited)
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            for name in &job.secrets {
                values.extend(lookup(name));
            }
            for (name, _) in job.env.iter().chain(inherited) {
                if is_secret_name(name) {
                    values.extend(lookup(name));
                }
            }
        }
        Mask::new(values)
    }

    /// Whether it hides nothing.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every secret value replaced by [`MASKED`]; borrows when none occurs.
    pub fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = Cow::Owned(out.replace(needle.as_str(), MASKED));
            }
        }
        out
    }
}

/// The mask in force for this process (empty until [`install`]).
static ACTIVE: RwLock<Option<Arc<Mask>>> = RwLock::new(None);

/// Makes `mask` the one every output of this process applies (the manifest's, once loaded).
pub fn install(mask: Mask) {
    let mut active = ACTIVE.write().unwrap_or_else(|e| e.into_inner());
    *active = (!mask.is_empty()).then(|| Arc::new(mask));
}

/// Adds values to the installed mask: a secret variable whose value a `${{ }}` template gave,
/// known only once the step that uses it renders.
pub fn extend(values: impl IntoIterator<Item = String>) {
    let added = Mask::new(values);
    if added.is_empty() {
        return;
    }
    let mut active = ACTIVE.write().unwrap_or_else(|e| e.into_inner());
    let mut needles = active
        .as_ref()
        .map(|m| m.needles.clone())
        .unwrap_or_default();
    needles.extend(added.needles);
    needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    needles.dedup();
    *active = Some(Arc::new(Mask { needles }));
}

/// `text` through the installed mask.
pub fn mask(text: &str) -> Cow<'_, str> {
    let active = ACTIVE.read().unwrap_or_else(|e| e.into_inner());
    match active.as_ref() {
        None => Cow::Borrowed(text),
        Some(m) => match m.apply(text) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(s) => Cow::Owned(s),
        },
    }
}

/// Like [`mask`], for text already owned.
pub fn mask_owned(text: String) -> String {
    match mask(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(s) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_secret_by_themselves() {
        for name in [
            "ANTHROPIC_API_KEY",
            "GITHUB_TOKEN",
            "db_password",
            "AWS_SECRET",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["PATH", "TOKEN_COUNT", "HOME", "SECRETS_DIR"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn a_manifests_mask_takes_each_jobs_secrets_from_its_env_then_orchs() {
        let text = r#"
            [jobs.a]
            run = ["true"]
            env = { MINE = "value-from-env", CI_TOKEN = "token-from-env", PLAIN = "shown" }
            secrets = ["MINE", "FROM_ORCH"]
            [jobs.b]
            run = ["true"]
        "#;
        let m = crate::manifest::load_str(std::path::Path::new("orch.toml"), text.into())
            .expect("loads");
        let inherited = [
            ("FROM_ORCH".to_string(), "value-from-orch".to_string()),
            ("ANTHROPIC_API_KEY".to_string(), "sk-inherited".to_string()),
            ("HOME".to_string(), "/home/me".to_string()),
        ];
        let mask = Mask::for_manifest(&m, &inherited);
        let line = "value-from-env token-from-env value-from-orch sk-inherited shown /home/me";
        assert_eq!(mask.apply(line), "*** *** *** *** shown /home/me");
    }

    #[test]
    fn values_are_hidden_whole_and_in_their_json_form() {
        let mask = Mask::new([
            "s3cr\"et".to_string(),
            "s3cr\"et-longer".into(),
            "no".into(),
        ]);
        assert_eq!(mask.apply("a s3cr\"et-longer b"), "a *** b");
        assert_eq!(mask.apply(r#"{"x":"s3cr\"et"}"#), r#"{"x":"***"}"#);
        // Too short to mask, and text without a secret is borrowed.
        assert!(matches!(mask.apply("no news"), Cow::Borrowed("no news")));
    }
}

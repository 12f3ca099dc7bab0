//! Manifests: load a TOML manifest or a legacy JSON config into one validated [`Manifest`].
//!
//! load (text → [`node::Node`]) → read (→ raw types, key and type checks) → resolve (→ [`Manifest`]).
//! Every mistake of a file is collected and reported at once, with its span. Nothing downstream of
//! this module sees TOML or JSON.

mod claude;
pub mod diagnostic;
pub mod legacy;
pub mod model;
pub mod node;
pub mod raw;
pub mod read;
pub mod refs;
pub mod resolve;
pub mod slurm;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use miette::{Diagnostic, NamedSource};
use thiserror::Error;

pub use diagnostic::{ManifestError, ManifestErrors};
pub use model::*;
use raw::RawManifest;
use read::{FromNode, Reader};

/// The longest job name, in characters. A name becomes part of its steps' log file names
/// ("NNN-name-i.stderr.log", at most 255 bytes on Linux and macOS) and a column of every table.
pub const MAX_JOB_NAME: usize = 128;

/// The file orch looks for when no manifest is named.
pub const DEFAULT_MANIFEST: &str = "orch.toml";

/// The two manifest formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Toml,
    /// zen's JSON config.
    LegacyJson,
}

impl Format {
    /// JSON for `.json` files and for text that opens with `{`; TOML otherwise.
    pub fn detect(path: &Path, text: &str) -> Format {
        let json_ext = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if json_ext || text.trim_start().starts_with('{') {
            Format::LegacyJson
        } else {
            Format::Toml
        }
    }
}

/// Why a manifest could not be loaded.
#[derive(Debug, Error, Diagnostic)]
pub enum LoadError {
    #[error("cannot read manifest {}", path.display())]
    #[diagnostic(code(orch::manifest::unreadable), help("{hint}"))]
    Unreadable {
        path: PathBuf,
        hint: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(#[from] Box<ManifestErrors>),
}

/// Loads and validates the manifest at `path`.
pub fn load(path: &Path) -> Result<Manifest, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Unreadable {
        path: path.to_path_buf(),
        hint: if source.kind() == std::io::ErrorKind::NotFound {
            format!(
                "pass a manifest path, or create {DEFAULT_MANIFEST} here (see `orch convert` for zen JSON configs)"
            )
        } else {
            "check the file's permissions and that it is UTF-8 text".to_string()
        },
        source,
    })?;
    load_str(path, text)
}

/// Loads and validates manifest text as if read from `path`.
pub fn load_str(path: &Path, text: String) -> Result<Manifest, LoadError> {
    let (raw, mut errors) = read_raw(path, &text);
    let resolved = raw.map(|raw| resolve::resolve(raw, path, &text));
    match resolved {
        Some(Ok(manifest)) if errors.is_empty() => Ok(manifest),
        Some(Err(more)) => {
            errors.extend(more);
            Err(invalid(path, text, errors))
        }
        _ => Err(invalid(path, text, errors)),
    }
}

/// Reads text into the raw TOML model (converting a legacy JSON config), without resolving it.
/// Returns what could be read (nothing after a syntax error) and every mistake found.
pub fn read_raw(path: &Path, text: &str) -> (Option<RawManifest>, Vec<ManifestError>) {
    let format = Format::detect(path, text);
    let parsed = match format {
        Format::Toml => node::parse_toml(text),
        Format::LegacyJson => node::parse_json(text),
    };
    let root = match parsed {
        Ok(root) => root,
        Err(errors) => {
            let name = if format == Format::Toml {
                "TOML"
            } else {
                "JSON"
            };
            return (None, syntax_errors(text, name, errors));
        }
    };
    let mut reader = Reader::new(format == Format::LegacyJson);
    let raw = match format {
        Format::Toml => RawManifest::from_node(&root, &mut reader),
        Format::LegacyJson => legacy::LegacyConfig::from_node(&root, &mut reader).map(|config| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "orch".into());
            legacy::to_manifest(config, &name)
        }),
    };
    (raw, reader.errors)
}

/// Turns parse errors into diagnostics. A repeated `[jobs.NAME]` table, which TOML reports as a
/// duplicate key (and then every key inside it again), becomes one `duplicate_job` pointing at
/// both tables.
fn syntax_errors(
    text: &str,
    format: &'static str,
    errors: Vec<node::SyntaxError>,
) -> Vec<ManifestError> {
    let mut out = Vec::new();
    // The byte range of a repeated job table, whose inner duplicate keys are consequences.
    let mut repeated: Vec<std::ops::Range<usize>> = Vec::new();
    for e in errors {
        if repeated.iter().any(|r| r.contains(&e.span.start)) {
            continue;
        }
        if e.message == "duplicate key" {
            if let Some(r) = repeated_job_table(text, e.span.start) {
                out.push(ManifestError::DuplicateJob {
                    name: r.name,
                    first: diagnostic::span(&r.first),
                    second: diagnostic::span(&r.second),
                });
                repeated.push(r.table);
                continue;
            }
        }
        out.push(ManifestError::Syntax {
            format,
            message: e.message,
            span: diagnostic::span(&e.span),
        });
    }
    out
}

/// A `[jobs.NAME]` table written twice.
struct RepeatedTable {
    name: String,
    /// The first header, the repeated header, and the repeated table up to the next header.
    first: std::ops::Range<usize>,
    second: std::ops::Range<usize>,
    table: std::ops::Range<usize>,
}

/// The repeated job table whose header holds byte `at`, if that header appeared before.
fn repeated_job_table(text: &str, at: usize) -> Option<RepeatedTable> {
    let line_start = text[..at.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let header = text[line_start..line_end].trim();
    let name = header
        .strip_prefix("[jobs.")?
        .strip_suffix(']')?
        .trim()
        .trim_matches('"');
    let mut offset = 0;
    let first = text.split('\n').find_map(|line| {
        let start = offset;
        offset += line.len() + 1;
        (line.trim() == header && start < line_start).then(|| start..start + line.len())
    })?;
    let table_end = text[line_end..]
        .find("\n[")
        .map_or(text.len(), |i| line_end + i);
    Some(RepeatedTable {
        name: name.to_string(),
        first,
        second: line_start..line_end,
        table: line_start..table_end,
    })
}

/// Bundles a file's mistakes, in file order (the first [`diagnostic::MAX_SHOWN`] of them), with
/// its source for rendering.
pub fn invalid(path: &Path, text: String, mut errors: Vec<ManifestError>) -> LoadError {
    errors.sort_by_key(ManifestError::offset);
    let total = errors.len();
    errors.truncate(diagnostic::MAX_SHOWN);
    let name = path.display().to_string();
    LoadError::Invalid(Box::new(ManifestErrors {
        source_code: NamedSource::new(&name, text),
        name,
        errors,
        total,
    }))
}

//! `orch convert`: a zen JSON config → the equivalent TOML manifest.

use std::path::Path;

use crate::errors::Error;
use crate::manifest;

/// The TOML text for the config at `path`; it loads into the same manifest as the JSON.
pub fn convert(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let (raw, errors) = manifest::read_raw(path, &text);
    let raw = match raw {
        Some(raw) if errors.is_empty() => raw,
        _ => return Err(manifest::invalid(path, text, errors).into()),
    };
    // Check the meaning too, so a converted file never fails where the JSON did not.
    if let Err(errors) = manifest::resolve::resolve(raw.clone(), path, &text) {
        return Err(manifest::invalid(path, text, errors).into());
    }
    let body = toml::to_string_pretty(&raw)
        .map_err(|e| Error::io("cannot write TOML", std::io::Error::other(e.to_string())))?;
    Ok(format!(
        "# Converted by `orch convert` from {}.\n\
         # For completion in editors, save `orch schema` beside it and add a `#:schema` line.\n\n{body}",
        path.display()
    ))
}

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
    let notes = system_message_notes(&raw);
    let body = toml::to_string_pretty(&raw)
        .map_err(|e| Error::io("cannot write TOML", std::io::Error::other(e.to_string())))?;
    Ok(format!(
        "# Converted by `orch convert` from {}.\n\
         # For completion in editors, save `orch schema` beside it and add a `#:schema` line.\n{notes}\n{body}",
        path.display()
    ))
}

/// A comment for each job whose "system message: ..." pre-command became
/// `append_system_prompt` (a JSON config has no such key of its own).
fn system_message_notes(raw: &manifest::raw::RawManifest) -> String {
    let mut notes = String::new();
    for (name, job) in raw.jobs.iter().flat_map(|j| &j.value.0) {
        if job.append_system_prompt.is_some() {
            notes.push_str(&format!(
                "#\n# Note: job {:?}: its \"system message: ...\" pre-command is now `append_system_prompt`,\n\
                 # passed to Claude Code as --append-system-prompt on every step: it is part of the system\n\
                 # prompt, no longer a turn of its own (see \"system message:\" in the migration chapter).\n",
                name.value
            ));
        }
    }
    notes
}

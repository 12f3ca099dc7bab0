//! `orch completions SHELL` and `orch man [SUBCOMMAND]`: generated from the clap definitions in
//! `cli.rs`, so they can never drift from the real flags.
//!
//! Renders to bytes; never prints and never installs anything.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::errors::Error;

/// The completion script for a shell.
pub fn completions(shell: clap_complete::Shell) -> String {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "orch", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The man page of orch, or of one of its subcommands (`orch-plan(1)`), in roff.
pub fn man(subcommand: Option<&str>) -> Result<String, Error> {
    let mut cmd = Cli::command();
    cmd.build();
    let page = match subcommand {
        None => cmd,
        Some(name) => {
            let known: Vec<String> = cmd
                .get_subcommands()
                .filter(|c| !c.is_hide_set())
                .map(|c| c.get_name().to_string())
                .collect();
            let sub = cmd
                .find_subcommand(name)
                .filter(|c| !c.is_hide_set())
                .ok_or_else(|| Error::BadFlag {
                    flag: "SUBCOMMAND",
                    value: name.into(),
                    reason: "orch has no such subcommand".into(),
                    help: format!("one of: {}", known.join(", ")),
                })?;
            // The page of `orch plan` is orch-plan(1), as git and cargo name theirs.
            let full = format!("orch-{}", sub.get_name());
            sub.clone()
                .name(full.clone())
                .bin_name(full.replace('-', " "))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .map_err(|e| Error::io("cannot render the man page", e))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

//! `scrubber check FILE`.

use anyhow::{bail, Result};
use clap::Args;
use scrubber::control::reload::{load_policy_with, LoadOptions, PolicyLoadError};
use std::path::PathBuf;

/// Check a rule file and show what it compiles to.
///
/// Reads FILE and everything it includes (and the list files it names), reports every error
/// and warning with file:line:column, the line and a caret, then prints what was compiled:
/// settings, sets with their prefix counts, port sets, services, rules in order, and memory.
/// Runs every check `scrubber run` and `replay` run on a rule file: the engine's limits (e.g. at
/// most 128 services) and the cookie-secret file it names must be readable.
/// Exit status 0 when the file is valid (warnings allowed), 1 otherwise.
///
/// Example:
///   scrubber check examples/web-frontend.rules
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CheckArgs {
    /// The rule file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Print only the diagnostics and the verdict line, not the compiled summary.
    #[arg(long, short)]
    quiet: bool,

    #[command(flatten)]
    limit: super::FileLimit,
}

/// Run `scrubber check`.
pub fn run(a: CheckArgs) -> Result<()> {
    let o = LoadOptions { max_file_bytes: a.limit.max_file_size, check_secret: true };
    match load_policy_with(&a.file, &o) {
        Ok(l) => {
            if l.warning_count > 0 {
                eprintln!("{}", l.warnings);
            }
            if !a.quiet {
                print!("{}", l.summary);
                println!("{}", l.compiled_line());
            }
            println!("{}: OK ({} warning(s))", a.file.display(), l.warning_count);
            Ok(())
        }
        Err(PolicyLoadError::Invalid { path, errors, warnings, rendered }) => {
            eprintln!("{rendered}");
            bail!("{path}: {errors} error(s), {warnings} warning(s): not valid, nothing compiled")
        }
        Err(e) => Err(e.into()),
    }
}

//! The `scrubber` binary: clap structs in [`cli`], each command a call into the library's
//! `control` and `tools` layers. Exit status: 0 on success, 1 on any error (including a bad
//! command line); errors are printed as `error: …` followed by their causes.
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

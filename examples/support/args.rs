//! The example servers' command-line plumbing: `--flag value` and `--flag=value`, `-h`/`--help`,
//! and `HOST:PORT` resolution with errors that name the flag.
//!
//! Included by `examples/sharded_kv` and `examples/dns` with `#[path]`. It owns the syntax of a
//! command line, never what a flag means: each example's `options.rs` does.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

/// An example's `main`: parses the command line with `parse` and runs `run`. `--help` (`parse`
/// gives `None`) prints `usage` and exits 0; bad arguments print `PROGRAM: MESSAGE (see --help)`
/// and exit 2; a failed run prints `PROGRAM: MESSAGE` and exits 1.
#[allow(dead_code)] // The examples' `main` calls it; the tests that include this file do not.
pub fn main_with<O>(
    program: &str,
    usage: &str,
    parse: impl FnOnce(std::iter::Skip<std::env::Args>) -> Result<Option<O>, String>,
    run: impl FnOnce(O) -> Result<(), String>,
) -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{program}: {message} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{program}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A command line, read flag by flag.
pub struct Args<I> {
    args: I,
}

/// One flag, with the value written after `=` if there was one.
pub struct Flag {
    pub name: String,
    inline: Option<String>,
}

impl Flag {
    /// `-h` or `--help`.
    pub fn is_help(&self) -> bool {
        self.name == "-h" || self.name == "--help"
    }
}

impl<I: Iterator<Item = String>> Args<I> {
    pub fn new(args: I) -> Args<I> {
        Args { args }
    }

    /// The next flag, `None` at the end.
    pub fn next_flag(&mut self) -> Option<Flag> {
        let arg = self.args.next()?;
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_string(), Some(value.into())),
            _ => (arg, None),
        };
        Some(Flag { name, inline })
    }

    /// The value of `flag`: after its `=`, or the next argument.
    pub fn value(&mut self, flag: &mut Flag) -> Result<String, String> {
        flag.inline
            .take()
            .or_else(|| self.args.next())
            .ok_or_else(|| format!("{} needs a value", flag.name))
    }

    /// The value of `flag` as a positive number.
    pub fn positive(&mut self, flag: &mut Flag) -> Result<usize, String> {
        let text = self.value(flag)?;
        match text.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{} takes a positive number, got {text:?}",
                flag.name
            )),
        }
    }
}

/// Resolves `HOST:PORT` given to `flag` to its first address.
pub fn resolve(flag: &str, addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|err| format!("{flag} {addr:?} is not a usable HOST:PORT: {err}"))?
        .next()
        .ok_or_else(|| format!("{flag} {addr:?} resolves to no address"))
}

//! The commands: what each one does, and on which core it runs.
//!
//! This module owns the command table (names, arity, Redis's error texts) and what each command
//! replies. Where a keyed command runs is [`route`]'s: the shard that owns a key
//! ([`shard::owner`](crate::shard::owner)) executes the command — at once when that shard is
//! this core's, otherwise through [`route::forward`], the one function that sends work to
//! another core. `MGET` and `DEL` group their keys by owner, send one request per core and
//! assemble the reply in the order the keys were given.
//!
//! It must never hold a shard borrowed across an `.await`, never panic on client input, and
//! never turn a failed cross-core request into anything but an error reply.
//!
//! Supported: `PING [msg]`, `ECHO msg`, `GET`, `SET key value` (no options: `EX`, `NX`, ... get
//! `-ERR syntax error`), `DEL key...`, `INCR`, `MGET key...`, `QUIT`, and for clients' start-up
//! `COMMAND ...` (an empty array) and `CONFIG GET pattern...` (only `save` = "" and
//! `appendonly` = "no", what `redis-benchmark` asks). Anything else, `HELLO` included, is an
//! unknown command, reported as Redis does. Commands over several shards are not atomic: an
//! `MGET` may see one shard before and another after a concurrent `SET`.

mod route;

use std::cell::Cell;

use crate::resp::{self, Request};

use route::KeyOp;
pub use route::Router;

/// What the connection does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Read the next request.
    Continue,
    /// Send the replies so far, then close (`QUIT`).
    Close,
}

/// Counters of one core, shared by its connections.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests executed (or answered with an error).
    pub commands: Cell<u64>,
    /// Requests (or groups of keys) sent to another core.
    pub forwarded: Cell<u64>,
}

impl Router {
    /// Executes one request (with at least one argument) and appends its reply to `out`.
    pub async fn execute(&self, request: Request<'_>, out: &mut Vec<u8>) -> Flow {
        self.stats.commands.set(self.stats.commands.get() + 1);
        let name = request.arg(0);
        let Some(command) = Command::lookup(name) else {
            unknown_command(&request, out);
            return Flow::Continue;
        };
        if !command.arity_ok(request.len()) {
            let message = format!(
                "ERR wrong number of arguments for '{}' command",
                command.name()
            );
            resp::push_error(out, message.as_bytes());
            return Flow::Continue;
        }
        match command {
            Command::Get => self.keyed(KeyOp::Get, request.arg(1), b"", out).await,
            Command::Set if request.len() == 3 => {
                self.keyed(KeyOp::Set, request.arg(1), request.arg(2), out)
                    .await
            }
            Command::Set => resp::push_error(out, b"ERR syntax error"),
            Command::Incr => self.keyed(KeyOp::Incr, request.arg(1), b"", out).await,
            Command::Mget => self.mget(&request, out).await,
            Command::Del => self.del(&request, out).await,
            Command::Ping if request.len() == 1 => resp::push_simple(out, b"PONG"),
            Command::Ping | Command::Echo => resp::push_bulk(out, request.arg(1)),
            Command::Introspect => resp::push_array_header(out, 0),
            Command::Config => config(&request, out),
            Command::Quit => {
                resp::push_ok(out);
                return Flow::Close;
            }
        }
        Flow::Continue
    }
}

/// The commands this server knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Ping,
    Echo,
    Get,
    Set,
    Del,
    Incr,
    Mget,
    /// `COMMAND ...`: what clients ask at start-up (redis-cli: `COMMAND DOCS`).
    Introspect,
    Config,
    Quit,
}

impl Command {
    /// The command named `name`, in any letter case; no allocation.
    fn lookup(name: &[u8]) -> Option<Command> {
        let mut lower = [0u8; 7];
        if name.len() > lower.len() {
            return None;
        }
        for (to, from) in lower.iter_mut().zip(name) {
            *to = from.to_ascii_lowercase();
        }
        Some(match &lower[..name.len()] {
            b"get" => Command::Get,
            b"set" => Command::Set,
            b"ping" => Command::Ping,
            b"echo" => Command::Echo,
            b"del" => Command::Del,
            b"incr" => Command::Incr,
            b"mget" => Command::Mget,
            b"command" => Command::Introspect,
            b"config" => Command::Config,
            b"quit" => Command::Quit,
            _ => return None,
        })
    }

    /// The name Redis uses in error messages.
    fn name(self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::Echo => "echo",
            Command::Get => "get",
            Command::Set => "set",
            Command::Del => "del",
            Command::Incr => "incr",
            Command::Mget => "mget",
            Command::Introspect => "command",
            Command::Config => "config",
            Command::Quit => "quit",
        }
    }

    /// Whether `args` arguments (the name included) are a valid count, as Redis's arity says
    /// (`PING` takes at most one message).
    fn arity_ok(self, args: usize) -> bool {
        match self {
            Command::Ping => args <= 2,
            Command::Echo | Command::Get | Command::Incr => args == 2,
            Command::Set => args >= 3,
            Command::Del | Command::Mget | Command::Config => args >= 2,
            Command::Introspect | Command::Quit => true,
        }
    }
}

/// `-ERR unknown command 'name', with args beginning with: 'a' 'b' `, cut at 128 bytes the way
/// Redis cuts it.
fn unknown_command(request: &Request<'_>, out: &mut Vec<u8>) {
    const LIMIT: usize = 128;
    let name = request.arg(0);
    let mut message = Vec::with_capacity(64 + LIMIT * 2);
    message.extend_from_slice(b"ERR unknown command '");
    message.extend_from_slice(&name[..name.len().min(LIMIT)]);
    message.extend_from_slice(b"', with args beginning with: ");
    let mut listed = 0;
    for arg in request.args_from(1) {
        if listed >= LIMIT {
            break;
        }
        let shown = &arg[..arg.len().min(LIMIT - listed)];
        message.push(b'\'');
        message.extend_from_slice(shown);
        message.extend_from_slice(b"' ");
        listed += shown.len() + 3;
    }
    resp::push_error(out, &message);
}

/// The configuration `CONFIG GET` reports: what `redis-benchmark` asks about persistence.
fn config_table() -> [(&'static str, &'static str); 2] {
    let appendonly = if crate::aof::enabled() { "yes" } else { "no" };
    [("save", ""), ("appendonly", appendonly)]
}

/// `CONFIG GET pattern...`: name/value pairs of the matching parameters, each once, in the
/// order the patterns ask for them (glob `*` and `?`, any letter case).
fn config(request: &Request<'_>, out: &mut Vec<u8>) {
    let sub = request.arg(1);
    if !sub.eq_ignore_ascii_case(b"get") {
        let mut message = b"ERR unknown subcommand '".to_vec();
        message.extend_from_slice(sub);
        message.extend_from_slice(b"'. Try CONFIG HELP.");
        return resp::push_error(out, &message);
    }
    if request.len() < 3 {
        return resp::push_error(
            out,
            b"ERR wrong number of arguments for 'config|get' command",
        );
    }
    let mut found: Vec<(&str, &str)> = Vec::new();
    for pattern in request.args_from(2) {
        for (name, value) in config_table() {
            if glob_match(pattern, name.as_bytes()) && !found.iter().any(|(n, _)| *n == name) {
                found.push((name, value));
            }
        }
    }
    resp::push_array_header(out, found.len() * 2);
    for (name, value) in found {
        resp::push_bulk(out, name.as_bytes());
        resp::push_bulk(out, value.as_bytes());
    }
}

/// Whether `text` matches the glob `pattern` (`*` any run, `?` any byte), ignoring ASCII case.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more byte and retry.
                Some((star_p, star_t)) => {
                    star = Some((star_p, star_t + 1));
                    p = star_p + 1;
                    t = star_t + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::Parser;

    /// Runs `f` on the request parsed from `input`.
    fn with_request<R>(input: &[u8], f: impl FnOnce(&Request<'_>) -> R) -> R {
        let mut parser = Parser::new();
        let (request, _) = parser.parse(input).unwrap().unwrap();
        f(&request)
    }

    #[test]
    fn commands_are_found_in_any_case() {
        assert_eq!(Command::lookup(b"GET"), Some(Command::Get));
        assert_eq!(Command::lookup(b"gEt"), Some(Command::Get));
        assert_eq!(Command::lookup(b"command"), Some(Command::Introspect));
        assert_eq!(Command::lookup(b"getx"), None);
        assert_eq!(Command::lookup(b"commands"), None);
        assert_eq!(Command::lookup(b""), None);
        assert_eq!(Command::lookup(b"HELLO"), None);
    }

    #[test]
    fn unknown_command_errors_are_cut_like_redis() {
        let mut out = Vec::new();
        with_request(b"foo\r\n", |r| unknown_command(r, &mut out));
        assert_eq!(
            out,
            b"-ERR unknown command 'foo', with args beginning with: \r\n"
        );
        out.clear();
        let long = format!("foo {} b\r\n", "x".repeat(200));
        with_request(long.as_bytes(), |r| unknown_command(r, &mut out));
        let expected = format!(
            "-ERR unknown command 'foo', with args beginning with: '{}' \r\n",
            "x".repeat(128)
        );
        assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
        out.clear();
        with_request(b"*2\r\n$3\r\nfoo\r\n$3\r\na\nb\r\n", |r| {
            unknown_command(r, &mut out)
        });
        assert_eq!(
            out,
            b"-ERR unknown command 'foo', with args beginning with: 'a b' \r\n"
        );
    }

    #[test]
    fn config_get_answers_what_redis_benchmark_asks() {
        let reply = |input: &[u8]| {
            let mut out = Vec::new();
            with_request(input, |r| config(r, &mut out));
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            reply(b"CONFIG GET save\r\n"),
            "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
        );
        assert_eq!(
            reply(b"config get appendonly\r\n"),
            "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
        );
        assert_eq!(
            reply(b"config get * save\r\n"),
            "*4\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
        );
        assert_eq!(reply(b"config get maxmemory\r\n"), "*0\r\n");
        assert_eq!(
            reply(b"config get\r\n"),
            "-ERR wrong number of arguments for 'config|get' command\r\n"
        );
        assert_eq!(
            reply(b"config rewrite\r\n"),
            "-ERR unknown subcommand 'rewrite'. Try CONFIG HELP.\r\n"
        );
    }

    #[test]
    fn glob_patterns() {
        for (pattern, text, matches) in [
            ("save", "save", true),
            ("SAVE", "save", true),
            ("sa*", "save", true),
            ("*only", "appendonly", true),
            ("*", "save", true),
            ("s?ve", "save", true),
            ("*a*e*", "save", true),
            ("sav", "save", false),
            ("saved", "save", false),
            ("?", "", false),
            ("", "save", false),
            ("**", "", true),
        ] {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                matches,
                "{pattern} ~ {text}"
            );
        }
    }
}

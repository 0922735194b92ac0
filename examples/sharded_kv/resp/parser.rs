//! [`Parser`]: finds one request at a time in a connection's read buffer, and resumes a partial
//! one where it stopped.

use std::ops::Range;

use super::inline::split_args;
use super::integer::parse_i64;
use super::{MAX_ARGS, MAX_INLINE_BYTES, MAX_REQUEST_BYTES, ProtocolError};

/// The longest `*N` / `$N` number: a sign and 20 digits. A header line longer than this cannot
/// be valid, so the parser need not wait for its end.
pub(super) const MAX_HEADER_DIGITS: usize = 21;

/// Where the parser stands in the current request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between requests: nothing of the next one has been parsed.
    Idle,
    /// Inside a multibulk request: `remaining` arguments are still to come and the next one's
    /// `$` is at offset `pos`; the arguments before it are in `Parser::args`.
    Multibulk { remaining: usize, pos: usize },
    /// Inside an inline request: its first `scanned` bytes hold no newline.
    Inline { scanned: usize },
}

/// An incremental request parser; one per connection, reused for every request.
#[derive(Debug)]
pub struct Parser {
    state: State,
    /// The current request's arguments: ranges of the caller's buffer (multibulk) or of
    /// `inline` (inline requests, whose quoting must be undone).
    args: Vec<Range<usize>>,
    /// The unquoted arguments of the last inline request.
    inline: Vec<u8>,
}

/// One parsed request: its arguments, the command name first. Valid until the next call to
/// [`Parser::parse`]. A request with no argument (`*0\r\n`, an empty line) is to be ignored.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    bytes: &'a [u8],
    args: &'a [Range<usize>],
}

impl<'a> Request<'a> {
    /// The number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether the request has no argument at all (nothing to execute).
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// Argument `i` (0 is the command name). Panics if `i >= len()`, like slice indexing.
    pub fn arg(&self, i: usize) -> &'a [u8] {
        &self.bytes[self.args[i].clone()]
    }

    /// The arguments from `from` on.
    pub fn args_from(&self, from: usize) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let bytes = self.bytes;
        self.args[from.min(self.args.len())..]
            .iter()
            .map(move |range| &bytes[range.clone()])
    }
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    /// A parser waiting for the first request.
    pub fn new() -> Parser {
        Parser {
            state: State::Idle,
            args: Vec::new(),
            inline: Vec::new(),
        }
    }

    /// Parses the request at the start of `input`.
    ///
    /// Returns the request and the number of bytes it took, or `Ok(None)` when `input` holds
    /// only part of it; call again with the same request start and more bytes after it (what
    /// came before may have moved in memory, not changed). After an error the parser starts
    /// afresh, but the connection should close: the error says the framing is lost.
    pub fn parse<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<Option<(Request<'a>, usize)>, ProtocolError> {
        let result = match self.state {
            State::Idle => {
                self.args.clear();
                match input.first() {
                    None => Ok(None),
                    Some(b'*') => self.start_multibulk(input),
                    Some(_) => self.inline(input, 0),
                }
            }
            State::Multibulk { remaining, pos } => self.multibulk(input, remaining, pos),
            State::Inline { scanned } => self.inline(input, scanned),
        };
        let (consumed, source) = match result {
            Ok(Some(done)) => done,
            Ok(None) => return Ok(None),
            Err(err) => {
                self.state = State::Idle;
                self.args.clear();
                return Err(err);
            }
        };
        self.state = State::Idle;
        let bytes = match source {
            Source::Input => &input[..consumed],
            Source::Inline => &self.inline[..],
        };
        Ok(Some((
            Request {
                bytes,
                args: &self.args,
            },
            consumed,
        )))
    }

    /// After `*`: the argument count, then the arguments.
    fn start_multibulk(&mut self, input: &[u8]) -> Parsed {
        let Some((count, pos)) = header(input, 1, ProtocolError::InvalidMultibulkLength)? else {
            return Ok(None);
        };
        if count <= 0 {
            // `*0` and `*-1`: an empty request, which Redis skips.
            return Ok(Some((pos, Source::Input)));
        }
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count > MAX_ARGS {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        // Room for a typical request; more only as arguments actually arrive.
        self.args.reserve(count.min(16));
        self.multibulk(input, count, pos)
    }

    /// Parses `$len\r\n<bytes>\r\n` arguments from `pos` until `remaining` reaches 0 or the
    /// input ends.
    fn multibulk(&mut self, input: &[u8], mut remaining: usize, mut pos: usize) -> Parsed {
        while remaining > 0 {
            let Some(&first) = input.get(pos) else {
                self.state = State::Multibulk { remaining, pos };
                return Ok(None);
            };
            if first != b'$' {
                return Err(ProtocolError::ExpectedBulk(first));
            }
            let Some((len, start)) = header(input, pos + 1, ProtocolError::InvalidBulkLength)?
            else {
                self.state = State::Multibulk { remaining, pos };
                return Ok(None);
            };
            let len = match usize::try_from(len) {
                Ok(len) if len <= MAX_REQUEST_BYTES => len,
                _ => return Err(ProtocolError::InvalidBulkLength),
            };
            // `start` is at most MAX_REQUEST_BYTES plus a header, so this cannot overflow.
            let end = start + len;
            if end + 2 > MAX_REQUEST_BYTES {
                return Err(ProtocolError::RequestTooLarge);
            }
            if input.len() < end + 2 {
                self.state = State::Multibulk { remaining, pos };
                return Ok(None);
            }
            if &input[end..end + 2] != b"\r\n" {
                return Err(ProtocolError::MissingCrlf);
            }
            self.args.push(start..end);
            pos = end + 2;
            remaining -= 1;
        }
        Ok(Some((pos, Source::Input)))
    }

    /// An inline request: one line, split like Redis's `sdssplitargs`. The first `scanned`
    /// bytes are known to hold no newline.
    fn inline(&mut self, input: &[u8], scanned: usize) -> Parsed {
        // (A caller that broke the contract and shrank the input gets a rescan, not a panic.)
        let scanned = if scanned <= input.len() { scanned } else { 0 };
        let Some(newline) = input[scanned..].iter().position(|&b| b == b'\n') else {
            if input.len() > MAX_INLINE_BYTES {
                return Err(ProtocolError::InlineTooLarge);
            }
            self.state = State::Inline {
                scanned: input.len(),
            };
            return Ok(None);
        };
        let newline = scanned + newline;
        if newline > MAX_INLINE_BYTES {
            return Err(ProtocolError::InlineTooLarge);
        }
        let line = &input[..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        split_args(line, &mut self.inline, &mut self.args)?;
        Ok(Some((newline + 1, Source::Inline)))
    }
}

/// Which buffer a finished request's argument ranges index.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// The caller's input (multibulk requests).
    Input,
    /// `Parser::inline` (inline requests).
    Inline,
}

/// `Ok(Some((bytes consumed, where the arguments are)))`, `Ok(None)` for "need more input".
type Parsed = Result<Option<(usize, Source)>, ProtocolError>;

/// Parses the number of a `*N\r\n` or `$N\r\n` line whose digits start at `from`: the number
/// and the offset just past the line, `Ok(None)` if the line is not complete yet, `Err(err)` if
/// it is not a number followed by CRLF.
fn header(
    input: &[u8],
    from: usize,
    err: ProtocolError,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let rest = input.get(from..).unwrap_or_default();
    let window = &rest[..rest.len().min(MAX_HEADER_DIGITS + 1)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return if rest.len() > MAX_HEADER_DIGITS {
            Err(err)
        } else {
            Ok(None)
        };
    };
    match rest.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => match parse_i64(&rest[..cr]) {
            Some(n) => Ok(Some((n, from + cr + 2))),
            None => Err(err),
        },
        Some(_) => Err(err),
    }
}

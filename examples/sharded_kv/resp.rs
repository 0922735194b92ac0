//! The RESP2 codec: requests in, replies out.
//!
//! This module owns the Redis wire format and nothing else: [`Parser`] finds one request at a
//! time in a connection's read buffer — a multibulk request (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`,
//! what every client library and `redis-cli` send) or an inline one (`GET k\n`, what a person
//! types into telnet) — and the `push_*` functions encode replies into an output buffer. It knows
//! nothing of commands, keys or cores.
//!
//! It must never panic, and never allocate more than a client has actually sent, whatever the
//! input: every length a client declares is checked against [`MAX_REQUEST_BYTES`] and
//! [`MAX_ARGS`] before it is trusted, the argument list grows only as arguments arrive, and a
//! malformed request is a [`ProtocolError`] (the connection then replies with it and closes, as
//! Redis does).
//!
//! Multibulk arguments are never copied: a [`Request`] holds ranges into the caller's buffer.
//! A partial request is parsed once: the parser remembers how far it got, and the next call,
//! given the same request start with more bytes after it, resumes there. So a request that
//! arrives in many reads costs one pass, not one pass per read.

use std::fmt;
use std::ops::Range;

/// The largest request accepted, counted in bytes on the wire (all arguments with their
/// framing). A larger one is refused as soon as its declared lengths say so, before its bytes
/// arrive. Redis allows 512 MiB per argument; this example keeps a connection's buffer smaller.
pub const MAX_REQUEST_BYTES: usize = 64 << 20;

/// The most arguments a multibulk request may declare (Redis's limit for the same header).
pub const MAX_ARGS: usize = 1024 * 1024;

/// The longest inline request (Redis's `PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE_BYTES: usize = 64 * 1024;

/// The longest `*N` / `$N` number: a sign and 20 digits. A header line longer than this cannot
/// be valid, so the parser need not wait for its end.
const MAX_HEADER_DIGITS: usize = 21;

/// Why a request cannot be parsed. The connection replies with it and closes: after a framing
/// error there is no telling where the next request starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// `*N` with N not a number or above [`MAX_ARGS`].
    InvalidMultibulkLength,
    /// `$N` with N not a number, negative, or above [`MAX_REQUEST_BYTES`].
    InvalidBulkLength,
    /// A multibulk argument that does not start with `$`: the byte found instead.
    ExpectedBulk(u8),
    /// A bulk string not followed by `\r\n`. (Redis skips those two bytes unchecked; a
    /// mismatch here means the client's framing is wrong, so it is refused.)
    MissingCrlf,
    /// The declared lengths add up to more than [`MAX_REQUEST_BYTES`].
    RequestTooLarge,
    /// An inline request longer than [`MAX_INLINE_BYTES`].
    InlineTooLarge,
    /// An inline request with an unterminated quote, or a closing quote followed by more text.
    UnbalancedQuotes,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match *self {
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::ExpectedBulk(byte) => {
                // Redis prints the byte as `%c`, with CR and LF replaced by spaces.
                let shown = match byte {
                    b'\r' | b'\n' => ' ',
                    b if b.is_ascii_graphic() || b == b' ' => b as char,
                    _ => '?',
                };
                write!(f, "expected '$', got '{shown}'")
            }
            ProtocolError::MissingCrlf => f.write_str("expected CRLF after a bulk string"),
            ProtocolError::RequestTooLarge => {
                write!(f, "request larger than {} MiB", MAX_REQUEST_BYTES >> 20)
            }
            ProtocolError::InlineTooLarge => f.write_str("too big inline request"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
        }
    }
}

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

/// Parses a decimal integer the way Redis's `string2ll` does: an optional `-`, then digits with
/// no leading zero (except `0` itself), no `+`, no spaces, within `i64`. Used for protocol
/// lengths and for the values `INCR` accepts.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut value: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(value)
    } else {
        i64::try_from(value).ok()
    }
}

/// The whitespace between inline arguments (C's `isspace`).
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// Splits an inline request line into arguments like Redis's `sdssplitargs`: whitespace
/// separates them; `"..."` quotes with the escapes `\n \r \t \b \a \xHH` and `\<any>`;
/// `'...'` quotes with only `\'`; a closing quote must end the argument. The unquoted bytes go
/// to `buf`, their ranges to `args`.
fn split_args(
    line: &[u8],
    buf: &mut Vec<u8>,
    args: &mut Vec<Range<usize>>,
) -> Result<(), ProtocolError> {
    buf.clear();
    args.clear();
    let at = |i: usize| line.get(i).copied();
    let mut i = 0;
    loop {
        while at(i).is_some_and(is_space) {
            i += 1;
        }
        if i >= line.len() {
            return Ok(());
        }
        let start = buf.len();
        let mut quote = None;
        loop {
            match (quote, at(i)) {
                (Some(_), None) => return Err(ProtocolError::UnbalancedQuotes),
                (None, None) => break,
                (Some(b'"'), Some(b'\\')) => {
                    let hex = at(i + 1) == Some(b'x');
                    match (
                        hex,
                        at(i + 2).and_then(hex_value),
                        at(i + 3).and_then(hex_value),
                    ) {
                        (true, Some(high), Some(low)) => {
                            buf.push(high << 4 | low);
                            i += 4;
                        }
                        _ => match at(i + 1) {
                            Some(escaped) => {
                                buf.push(match escaped {
                                    b'n' => b'\n',
                                    b'r' => b'\r',
                                    b't' => b'\t',
                                    b'b' => 0x08,
                                    b'a' => 0x07,
                                    other => other,
                                });
                                i += 2;
                            }
                            None => {
                                buf.push(b'\\');
                                i += 1;
                            }
                        },
                    }
                }
                (Some(b'\''), Some(b'\\')) if at(i + 1) == Some(b'\'') => {
                    buf.push(b'\'');
                    i += 2;
                }
                (Some(q), Some(byte)) if byte == q => {
                    // The closing quote must be followed by a space or the end of the line.
                    if at(i + 1).is_some_and(|next| !is_space(next)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                }
                (Some(_), Some(byte)) => {
                    buf.push(byte);
                    i += 1;
                }
                (None, Some(b' ' | b'\n' | b'\r' | b'\t' | 0)) => {
                    i += 1;
                    break;
                }
                (None, Some(q @ (b'"' | b'\''))) => {
                    quote = Some(q);
                    i += 1;
                }
                (None, Some(byte)) => {
                    buf.push(byte);
                    i += 1;
                }
            }
        }
        args.push(start..buf.len());
    }
}

/// Appends `\r\n`.
fn push_crlf(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// Appends the decimal digits of `n` (also how `INCR` stores its result).
pub fn push_decimal(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    let mut value = n.unsigned_abs();
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends a length, as the decimal number RESP headers use.
fn push_len(out: &mut Vec<u8>, len: usize) {
    push_decimal(out, i64::try_from(len).unwrap_or(i64::MAX));
}

/// Appends `+OK`.
pub fn push_ok(out: &mut Vec<u8>) {
    out.extend_from_slice(b"+OK\r\n");
}

/// Appends a simple string, `+text`. `text` must hold no CR or LF.
pub fn push_simple(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'+');
    out.extend_from_slice(text);
    push_crlf(out);
}

/// Appends an error reply, `-message`; CR and LF in `message` become spaces (as Redis does), so
/// a client-supplied name quoted in an error cannot break the framing.
pub fn push_error(out: &mut Vec<u8>, message: &[u8]) {
    out.push(b'-');
    out.extend(
        message
            .iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    push_crlf(out);
}

/// Appends an integer reply, `:n`.
pub fn push_integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    push_decimal(out, n);
    push_crlf(out);
}

/// Appends a bulk string, `$len\r\ndata`: binary-safe.
pub fn push_bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    push_len(out, data.len());
    push_crlf(out);
    out.extend_from_slice(data);
    push_crlf(out);
}

/// Appends the nil bulk string, `$-1`.
pub fn push_nil(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// Appends a bulk string or nil.
pub fn push_bulk_or_nil(out: &mut Vec<u8>, data: Option<&[u8]>) {
    match data {
        Some(data) => push_bulk(out, data),
        None => push_nil(out),
    }
}

/// Appends an array header, `*len`; the caller then appends `len` replies.
pub fn push_array_header(out: &mut Vec<u8>, len: usize) {
    out.push(b'*');
    push_len(out, len);
    push_crlf(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` to a parser the way a connection does — appending each chunk to a buffer,
    /// parsing every complete request, then moving the unparsed rest to the front — and returns
    /// every request's arguments, empty requests left out.
    fn parse_chunks(chunks: &[&[u8]]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut parser = Parser::new();
        let mut buf = Vec::new();
        let mut requests = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            let mut parsed = 0;
            while let Some((request, used)) = parser.parse(&buf[parsed..])? {
                parsed += used;
                if !request.is_empty() {
                    requests.push(request.args_from(0).map(<[u8]>::to_vec).collect());
                }
            }
            // A fresh allocation each time: the parser must not depend on where bytes live.
            buf = buf[parsed..].to_vec();
        }
        assert!(buf.is_empty(), "unparsed bytes left: {buf:?}");
        Ok(requests)
    }

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|arg| arg.as_bytes().to_vec()).collect()
    }

    fn error_of(input: &[u8]) -> ProtocolError {
        let mut parser = Parser::new();
        let mut at = 0;
        loop {
            match parser.parse(&input[at..]) {
                Ok(Some((_, used))) => at += used,
                Ok(None) => panic!("{input:?} parsed without error"),
                Err(err) => return err,
            }
        }
    }

    fn is_incomplete(input: &[u8]) -> bool {
        matches!(Parser::new().parse(input), Ok(None))
    }

    const PIPELINE: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nk\0y\r\n$4\r\nv\r\nw\r\n\
        PING\r\n\
        *2\r\n$3\r\nGET\r\n$3\r\nk\0y\r\n\
        \r\n\
        *0\r\n\
        echo \"a b\" 'c'\n\
        *1\r\n$4\r\nPING\r\n";

    fn pipeline_requests() -> Vec<Vec<Vec<u8>>> {
        vec![
            vec![b"SET".to_vec(), b"k\0y".to_vec(), b"v\r\nw".to_vec()],
            args(&["PING"]),
            vec![b"GET".to_vec(), b"k\0y".to_vec()],
            args(&["echo", "a b", "c"]),
            args(&["PING"]),
        ]
    }

    #[test]
    fn a_multibulk_request_and_its_length() {
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nextra";
        let mut parser = Parser::new();
        let (request, used) = parser.parse(input).unwrap().unwrap();
        assert_eq!(used, input.len() - b"extra".len());
        assert_eq!(request.len(), 2);
        assert_eq!(request.arg(0), b"GET");
        assert_eq!(request.arg(1), b"k");
    }

    #[test]
    fn pipelined_requests_come_out_in_order() {
        assert_eq!(parse_chunks(&[PIPELINE]).unwrap(), pipeline_requests());
    }

    #[test]
    fn every_split_point_gives_the_same_requests() {
        for split in 0..=PIPELINE.len() {
            let (a, b) = PIPELINE.split_at(split);
            assert_eq!(
                parse_chunks(&[a, b]).unwrap(),
                pipeline_requests(),
                "split at {split}"
            );
        }
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_requests() {
        let chunks: Vec<&[u8]> = PIPELINE.chunks(1).collect();
        assert_eq!(parse_chunks(&chunks).unwrap(), pipeline_requests());
    }

    #[test]
    fn a_partial_request_is_incomplete_not_an_error() {
        for input in [
            &b"*"[..],
            b"*2",
            b"*2\r",
            b"*2\r\n$3",
            b"*2\r\n$3\r\nGE",
            b"*2\r\n$3\r\nGET\r",
            b"*2\r\n$3\r\nGET\r\n",
            b"GET k",
            b"GET k\r",
        ] {
            assert!(is_incomplete(input), "{input:?}");
        }
    }

    #[test]
    fn inline_requests_split_like_redis() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"set  a\t b \r\n", &[b"set", b"a", b"b"]),
            (b"set \"a b\" 'c\\'d'\n", &[b"set", b"a b", b"c'd"]),
            (b"x \"\\x41\\n\\r\\t\\q\\\\\"\n", &[b"x", b"A\n\r\tq\\"]),
            (b"x \"\\x4\"\n", &[b"x", b"x4"]),
            (b"x \"\" ''\n", &[b"x", b"", b""]),
            (b"x a\"b c\" d\n", &[b"x", b"ab c", b"d"]),
        ];
        for (input, expected) in cases {
            let expected: Vec<Vec<u8>> = expected.iter().map(|a| a.to_vec()).collect();
            assert_eq!(
                parse_chunks(&[input]).unwrap(),
                vec![expected],
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn blank_lines_and_empty_multibulks_are_skipped() {
        assert_eq!(
            parse_chunks(&[b"\r\n\n   \r\n*0\r\n*-1\r\nPING\n"]).unwrap(),
            vec![args(&["PING"])]
        );
    }

    #[test]
    fn unbalanced_quotes_are_an_error() {
        for input in [
            &b"get \"a\r\n"[..],
            b"get 'a\n",
            b"get \"a\"b\n",
            b"get 'a'b\n",
        ] {
            assert_eq!(
                error_of(input),
                ProtocolError::UnbalancedQuotes,
                "{input:?}"
            );
        }
    }

    #[test]
    fn bad_types_and_lengths_are_errors() {
        let cases: &[(&[u8], ProtocolError)] = &[
            (b"*x\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*+1\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*01\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*1 \r\n", ProtocolError::InvalidMultibulkLength),
            (b"*1\rx", ProtocolError::InvalidMultibulkLength),
            (b"*1048577\r\n", ProtocolError::InvalidMultibulkLength),
            (
                b"*99999999999999999999\r\n",
                ProtocolError::InvalidMultibulkLength,
            ),
            (
                b"*2\r\n$3\r\nGET\r\n:1\r\n",
                ProtocolError::ExpectedBulk(b':'),
            ),
            (b"*1\r\n+PING\r\n", ProtocolError::ExpectedBulk(b'+')),
            (b"*1\r\n$-1\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$x\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$4\r\nPINGxx", ProtocolError::MissingCrlf),
            (b"*1\r\n$4\r\nPING\n\n", ProtocolError::MissingCrlf),
        ];
        for (input, expected) in cases {
            assert_eq!(
                error_of(input),
                *expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn a_header_line_without_end_is_an_error_once_too_long_to_be_a_number() {
        let mut input = b"*".to_vec();
        input.extend(std::iter::repeat_n(b'1', MAX_HEADER_DIGITS));
        assert!(is_incomplete(&input));
        input.push(b'1');
        assert_eq!(error_of(&input), ProtocolError::InvalidMultibulkLength);
        let mut input = b"*1\r\n$".to_vec();
        input.extend(std::iter::repeat_n(b'9', MAX_HEADER_DIGITS + 1));
        assert_eq!(error_of(&input), ProtocolError::InvalidBulkLength);
    }

    #[test]
    fn oversize_lengths_are_refused_before_their_bytes_arrive() {
        // One bulk over the limit: refused from its header alone.
        let over = format!("*1\r\n${}\r\n", MAX_REQUEST_BYTES + 1);
        assert_eq!(error_of(over.as_bytes()), ProtocolError::InvalidBulkLength);
        // Redis's own 512 MB limit is far above this server's.
        assert_eq!(
            error_of(b"*2\r\n$3\r\nSET\r\n$536870912\r\n"),
            ProtocolError::InvalidBulkLength
        );
        // Within the bulk limit, but the request with its framing would exceed it.
        let at = format!("*1\r\n${MAX_REQUEST_BYTES}\r\n");
        assert_eq!(error_of(at.as_bytes()), ProtocolError::RequestTooLarge);
        // Two bulks that fit alone but not together.
        let half = MAX_REQUEST_BYTES / 2;
        let mut two = format!("*2\r\n${half}\r\n").into_bytes();
        two.resize(two.len() + half, b'x');
        two.extend_from_slice(format!("\r\n${half}\r\n").as_bytes());
        assert_eq!(error_of(&two), ProtocolError::RequestTooLarge);
        // Just under the limit: waits for the bytes.
        let under = format!("*1\r\n${}\r\n", MAX_REQUEST_BYTES - 100);
        assert!(is_incomplete(under.as_bytes()));
    }

    #[test]
    fn an_inline_request_is_bounded() {
        let long = vec![b'a'; MAX_INLINE_BYTES];
        assert!(is_incomplete(&long));
        let mut longer = long.clone();
        longer.push(b'a');
        assert_eq!(error_of(&longer), ProtocolError::InlineTooLarge);
        longer.push(b'\n');
        assert_eq!(error_of(&longer), ProtocolError::InlineTooLarge);
        let mut fits = long;
        fits.push(b'\n');
        assert_eq!(parse_chunks(&[&fits]).unwrap().len(), 1);
    }

    #[test]
    fn the_parser_starts_afresh_after_an_error() {
        let mut parser = Parser::new();
        assert!(parser.parse(b"*1\r\n$4\r\nPINGxx").is_err());
        let (request, _) = parser.parse(b"PING\r\n").unwrap().unwrap();
        assert_eq!(request.arg(0), b"PING");
    }

    #[test]
    fn error_messages_are_redis_s() {
        let text = |err: ProtocolError| err.to_string();
        assert_eq!(
            text(ProtocolError::InvalidMultibulkLength),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            text(ProtocolError::InvalidBulkLength),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            text(ProtocolError::ExpectedBulk(b':')),
            "Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            text(ProtocolError::ExpectedBulk(b'\n')),
            "Protocol error: expected '$', got ' '"
        );
        assert_eq!(
            text(ProtocolError::UnbalancedQuotes),
            "Protocol error: unbalanced quotes in request"
        );
        assert_eq!(
            text(ProtocolError::InlineTooLarge),
            "Protocol error: too big inline request"
        );
    }

    #[test]
    fn integers_parse_like_redis_string2ll() {
        let valid: &[(&[u8], i64)] = &[
            (b"0", 0),
            (b"7", 7),
            (b"-7", -7),
            (b"9223372036854775807", i64::MAX),
            (b"-9223372036854775808", i64::MIN),
        ];
        for &(text, value) in valid {
            assert_eq!(parse_i64(text), Some(value), "{text:?}");
        }
        for text in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1.5",
            b"1e3",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_i64(text), None, "{text:?}");
        }
    }

    #[test]
    fn replies_are_encoded_as_resp2() {
        let mut out = Vec::new();
        push_ok(&mut out);
        push_simple(&mut out, b"PONG");
        push_integer(&mut out, 0);
        push_integer(&mut out, i64::MIN);
        push_bulk(&mut out, b"a\r\nb");
        push_bulk(&mut out, b"");
        push_nil(&mut out);
        push_array_header(&mut out, 2);
        push_bulk_or_nil(&mut out, Some(b"x"));
        push_bulk_or_nil(&mut out, None);
        push_error(&mut out, b"ERR a\r\nb");
        assert_eq!(
            out,
            b"+OK\r\n+PONG\r\n:0\r\n:-9223372036854775808\r\n$4\r\na\r\nb\r\n$0\r\n\r\n\
              $-1\r\n*2\r\n$1\r\nx\r\n$-1\r\n-ERR a  b\r\n"
                .to_vec()
        );
    }
}

//! The parser's tests: requests parsed whole, split at every byte and one byte at a time, and
//! every malformed or oversize request refused with the error Redis gives.

use super::parser::MAX_HEADER_DIGITS;
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

//! The reply encoder: RESP2 replies appended to a connection's output buffer.

use super::push_decimal;

/// Appends `\r\n`.
fn push_crlf(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
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

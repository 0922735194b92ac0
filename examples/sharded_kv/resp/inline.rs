//! An inline request's line split into arguments, as Redis's `sdssplitargs` splits it.

use std::ops::Range;

use super::ProtocolError;

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
pub(super) fn split_args(
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

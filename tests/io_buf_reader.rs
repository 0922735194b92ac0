//! `io::BufReader` over owned-buffer streams: a chat-like line protocol over TCP and Unix
//! socket pairs, split halves and pipes, the line limit, invalid UTF-8, a partial last line,
//! and cancel safety; on both backends.

#[macro_use]
mod util;

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use coreio::io::{BufReader, LineTooLong};
use coreio::net::UnixStream;
use coreio::time::timeout;
use util::{block_on, pair};

const PATIENCE: Duration = Duration::from_secs(10);

both_backends! {
    fn chat_lines_over_tcp_with_replies_on_the_same_stream(backend: Backend) {
        block_on(backend, async {
            let (client, server) = pair().await;
            // The server reads lines through `&server` and answers on the same stream.
            let serve = coreio::spawn(async move {
                let mut reader = BufReader::with_capacity(7, &server);
                let mut line = String::new();
                let mut served = 0;
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await.unwrap() == 0 {
                        return served;
                    }
                    let reply = format!("echo {}", line.to_uppercase());
                    let (res, _) = reader.get_ref().write_all(reply.into_bytes()).await;
                    res.unwrap();
                    served += 1;
                }
            });
            let (read, write) = client.into_split();
            let mut replies = BufReader::new(read);
            for i in 0..50 {
                // Messages of varied length, often split across the server's 7-byte reads.
                let msg = format!("hello {i} {}\n", "x".repeat(i % 13));
                let (res, _) = write.write_all(msg.clone().into_bytes()).await;
                res.unwrap();
                let mut got = String::new();
                let n = timeout(PATIENCE, replies.read_line(&mut got)).await.unwrap().unwrap();
                assert_eq!(got, format!("echo {}", msg.to_uppercase()));
                assert_eq!(n, got.len());
            }
            drop(write);
            assert_eq!(timeout(PATIENCE, serve).await.unwrap().unwrap(), 50);
            let mut rest = String::new();
            assert_eq!(replies.read_line(&mut rest).await.unwrap(), 0, "end of stream");
        });
    }

    fn many_lines_in_one_read_and_a_partial_last_line(backend: Backend) {
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            let (res, _) = a.write_all(&b"one\ntwo\n\nthree;four;tail"[..]).await;
            res.unwrap();
            drop(a);
            let mut reader = BufReader::new(b);
            let mut line = String::new();
            for expected in ["one\n", "two\n", "\n"] {
                line.clear();
                assert_eq!(reader.read_line(&mut line).await.unwrap(), expected.len());
                assert_eq!(line, expected);
            }
            let mut record = Vec::new();
            assert_eq!(reader.read_until(b';', &mut record).await.unwrap(), 6);
            assert_eq!(record, b"three;");
            record.clear();
            reader.read_until(b';', &mut record).await.unwrap();
            assert_eq!(record, b"four;");
            record.clear();
            // End of stream in the middle of a record: the partial record, then 0 for good.
            assert_eq!(reader.read_until(b';', &mut record).await.unwrap(), 4);
            assert_eq!(record, b"tail");
            for _ in 0..2 {
                assert_eq!(reader.read_until(b';', &mut record).await.unwrap(), 0);
                assert!(reader.fill_buf().await.unwrap().is_empty());
            }
        });
    }

    fn a_line_over_the_limit_is_an_error_and_can_be_skipped(backend: Backend) {
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            let long = format!("{}\n", "y".repeat(100));
            // Exactly the limit (delimiter included) is fine; one more is not.
            let exact = format!("{}\n", "z".repeat(15));
            let input = format!("{exact}{long}after\n");
            let (res, _) = a.write_all(input.into_bytes()).await;
            res.unwrap();
            let mut reader = BufReader::with_capacity(8, b).max_line_len(16);
            let mut line = String::new();
            assert_eq!(reader.read_line(&mut line).await.unwrap(), 16);
            assert_eq!(line, exact);
            line.clear();
            let err = reader.read_line(&mut line).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            let too_long = err.get_ref().unwrap().downcast_ref::<LineTooLong>().unwrap();
            assert_eq!(too_long.limit(), 16);
            assert!(line.is_empty(), "nothing appended on error");
            // Memory stays bounded: at most the limit plus one read is buffered.
            assert!(reader.buffer().len() <= 16 + 8, "{} buffered", reader.buffer().len());
            // The error consumed nothing: skipping discards the whole long line.
            assert_eq!(reader.skip_until(b'\n').await.unwrap(), long.len());
            assert_eq!(reader.read_line(&mut line).await.unwrap(), 6);
            assert_eq!(line, "after\n");
        });
    }

    fn invalid_utf8_is_invalid_data_and_the_next_line_reads(backend: Backend) {
        block_on(backend, async {
            let (reader_end, writer_end) = coreio::io::pipe().unwrap();
            let (res, _) = writer_end.write_all(&b"ok\n\xff\xfe bad\nfine\n"[..]).await;
            res.unwrap();
            let mut reader = BufReader::new(reader_end);
            let mut line = String::from("kept:");
            reader.read_line(&mut line).await.unwrap();
            assert_eq!(line, "kept:ok\n");
            let err = reader.read_line(&mut line).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            assert_eq!(line, "kept:ok\n", "the String is left as it was");
            reader.read_line(&mut line).await.unwrap();
            assert_eq!(line, "kept:ok\nfine\n");
        });
    }

    fn a_dropped_read_line_loses_no_byte(backend: Backend) {
        block_on(backend, async {
            let (a, b) = UnixStream::pair().unwrap();
            let mut reader = BufReader::with_capacity(4, b);
            let mut line = String::new();
            let (res, _) = a.write_all(&b"hal"[..]).await;
            res.unwrap();
            // Poll until the partial line is buffered and a read is in flight, then drop it.
            {
                let mut read = pin!(reader.read_line(&mut line));
                let mut cx = Context::from_waker(Waker::noop());
                for _ in 0..20 {
                    assert!(matches!(read.as_mut().poll(&mut cx), Poll::Pending));
                    coreio::time::sleep(Duration::from_millis(1)).await;
                }
                let (res, _) = a.write_all(&b"f a line\nnext"[..]).await;
                res.unwrap();
                coreio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(line.is_empty(), "a dropped read_line appends nothing");
            let n = timeout(PATIENCE, reader.read_line(&mut line)).await.unwrap().unwrap();
            assert_eq!((n, line.as_str()), (12, "half a line\n"));
            drop(a);
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            assert_eq!(line, "next");
        });
    }
}

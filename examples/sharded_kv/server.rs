//! One core's server: its listener, its connections, and the loop that turns bytes into replies.
//!
//! This module owns the per-core root future ([`serve`]), the accept loop and the connection
//! loop: read into one reusable buffer, parse every complete request in it, execute them in
//! order, append all their replies to one output buffer and send it with one write. It must
//! never reorder replies, never block the core (all I/O goes through coreio), never let a
//! buffer grow past what the codec's limits allow, and never panic on client input: a protocol
//! error gets an error reply and the connection is closed, the server carries on.

use std::cell::Cell;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;

use coreio::buf::IoBuf;
use coreio::net::{TcpListener, TcpStream};
use coreio::sync::Event;

use crate::aof;
use crate::commands::{Flow, Router};
use crate::ready::Ready;
use crate::resp::{self, Parser};
use crate::shard;

/// Initial capacity of a connection's read and output buffers.
const BUF_CAPACITY: usize = 16 * 1024;

/// A read is offered at least this much free space; below it the read buffer grows (doubling),
/// which only happens while one request is bigger than the buffer.
const MIN_READ: usize = 4 * 1024;

/// Replies are sent as soon as this many are buffered, even in the middle of a batch, so a long
/// pipeline of `GET`s on big values does not pile up in memory.
const FLUSH_AT: usize = 1 << 20;

/// A buffer that one big request or reply grew past this is replaced by a fresh small one once
/// it is empty again, so an idle connection does not keep megabytes.
const SHRINK_ABOVE: usize = 1 << 20;

/// What one core served.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    /// Connections accepted.
    pub connections: u64,
    /// Requests executed.
    pub commands: u64,
    /// Requests (or groups of keys of an `MGET`/`DEL`) sent to another core's shard.
    pub forwarded: u64,
    /// Keys in this core's shard at the end.
    pub keys: usize,
}

/// One core's root future: bind `addr` (every core binds it, `SO_REUSEPORT` spreads the
/// connections), serve until `stop` is set, return what was served. Returning cancels the
/// core's accept loop and connections.
///
/// With `persist`, the core first replays its shard's append-only file (a failure stops the
/// whole server before any core listens), and at the end writes and syncs what is pending.
pub async fn serve(
    addr: SocketAddr,
    persist: Option<aof::Config>,
    stop: Event,
    ready: Arc<Ready>,
) -> Result<Served, String> {
    let router = match Router::new() {
        Ok(router) => Rc::new(router),
        Err(message) => {
            stop.set();
            return Err(message);
        }
    };
    if let Some(config) = &persist {
        match aof::open(config, router.me(), router.shards()).await {
            Ok(opened) => eprintln!(
                "sharded_kv: shard {} loaded {} records, {} keys{}",
                router.me(),
                opened.records,
                opened.keys,
                opened
                    .truncated
                    .map_or_else(String::new, |(at, dropped)| format!(
                        " (cut at byte {at}: {dropped} bytes dropped)"
                    ))
            ),
            Err(message) => {
                stop.set();
                return Err(message);
            }
        }
    }
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(err) => {
            // A server listening on some cores only is not wanted: stop the others too.
            stop.set();
            return Err(format!("cannot listen on {addr}: {err}"));
        }
    };
    ready.core_bound();
    let connections = Rc::new(Cell::new(0));
    let failure = Rc::new(Cell::new(None));
    let _accept = coreio::spawn(accept_loop(
        listener,
        Rc::clone(&router),
        Rc::clone(&connections),
        Rc::clone(&failure),
        stop.clone(),
    ));
    stop.wait().await;
    if let Some(message) = failure.take() {
        return Err(message);
    }
    if let Some(log) = aof::current() {
        log.flush_and_sync().await?;
    }
    Ok(Served {
        connections: connections.get(),
        commands: router.stats.commands.get(),
        forwarded: router.stats.forwarded.get(),
        keys: shard::with_local(|store| store.len()),
    })
}

async fn accept_loop(
    listener: TcpListener,
    router: Rc<Router>,
    connections: Rc<Cell<u64>>,
    failure: Rc<Cell<Option<String>>>,
    stop: Event,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                connections.set(connections.get() + 1);
                // Detached: the task ends when the peer closes, or when the core stops.
                drop(coreio::spawn(connection(stream, Rc::clone(&router))));
            }
            Err(err) => {
                // `accept` absorbs transient failures (aborted connections, fd exhaustion);
                // what reaches here is fatal for this listener, so stop the whole server.
                failure.set(Some(format!("accept failed: {err}")));
                stop.set();
                return;
            }
        }
    }
}

/// Serves one connection until the peer closes, sends `QUIT`, or breaks the protocol.
async fn connection(stream: TcpStream, router: Rc<Router>) {
    // Without it a reply may wait for the client's delayed ACK. A failure only costs latency.
    let _ = stream.set_nodelay(true);
    let mut input: Vec<u8> = Vec::with_capacity(BUF_CAPACITY);
    let mut out: Vec<u8> = Vec::with_capacity(BUF_CAPACITY);
    let mut parser = Parser::new();
    loop {
        // `input` holds the unparsed start of a request, if any; read after it.
        if input.capacity() - input.len() < MIN_READ {
            input.reserve(input.capacity().max(MIN_READ));
        }
        let filled = input.len();
        let (res, slice) = stream.read(input.slice(filled..)).await;
        input = slice.into_inner();
        match res {
            Ok(n) if n > 0 => {}
            _ => return, // the peer closed, or the connection failed
        }

        let mut parsed = 0;
        let mut close = false;
        loop {
            match parser.parse(&input[parsed..]) {
                Ok(Some((request, used))) => {
                    parsed += used;
                    if !request.is_empty() && router.execute(request, &mut out).await == Flow::Close
                    {
                        close = true;
                        break;
                    }
                    if out.len() >= FLUSH_AT {
                        let (res, sent) = stream.write_all(out).await;
                        out = sent;
                        if res.is_err() {
                            return;
                        }
                        out.clear();
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    resp::push_error(&mut out, format!("ERR {err}").as_bytes());
                    close = true;
                    break;
                }
            }
        }

        if !out.is_empty() {
            let (res, sent) = stream.write_all(out).await;
            out = sent;
            if res.is_err() {
                return;
            }
            out.clear();
            if out.capacity() > SHRINK_ABOVE {
                out = Vec::with_capacity(BUF_CAPACITY);
            }
        }
        if close {
            // The replies are sent; a FIN follows them before the socket closes.
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
        // Keep only the start of an incomplete request, moved to the front: the parser
        // resumes on it with offsets counted from its start.
        if parsed == input.len() {
            input.clear();
            if input.capacity() > SHRINK_ABOVE {
                input = Vec::with_capacity(BUF_CAPACITY);
            }
        } else if parsed > 0 {
            input.copy_within(parsed.., 0);
            input.truncate(input.len() - parsed);
        }
    }
}

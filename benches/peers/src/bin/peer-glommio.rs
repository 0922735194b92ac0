//! `peer-glommio`: the echo server on glommio, one `LocalExecutor` per core thread, each with
//! its own `SO_REUSEPORT` listener.
//!
//! The executors are built with `Placement::Unbound`: glommio normally pins each executor to a
//! CPU chosen from all online CPUs, which fails when the benchmark runner restricts the process
//! with `taskset`; unbound executors stay inside whatever mask the process was given, like every
//! other peer.
//!
//! glommio's own `TcpListener::bind` sets `SO_REUSEPORT` but neither `SO_REUSEADDR` nor a
//! backlog above 1024, so the listener is built like the other peers' and handed over by fd.

use std::os::fd::{FromRawFd, IntoRawFd};

use coreio_bench_peers::{BUF_CAPACITY, Listeners, Server, serve, short_name};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

const LABEL: &str = "peer-glommio";

fn main() {
    serve(LABEL, Listeners::PerCore, |server| {
        raise_memlock_limit();
        server.spawn_cores(core_main)
    })
}

/// glommio registers its I/O buffers (10 MiB per executor by default) with io_uring, which
/// locks them in memory: it refuses to start below a 512 KiB `RLIMIT_MEMLOCK`, and above the
/// limit it skips registering the buffers (used for file I/O only, so the echo is not affected).
/// The benchmarks run as root, so lift the limit here, before any executor exists. Without
/// CAP_SYS_RESOURCE (a container) the hard limit cannot be raised; the soft one is raised to it.
fn raise_memlock_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is a valid, initialised `rlimit` that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } == 0 {
        return;
    }
    // SAFETY: `limit` is valid, writable storage for an `rlimit`.
    let mut res = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if res == 0 {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above; raising the soft limit up to the hard one needs no privilege.
        res = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
    }
    if res != 0 {
        eprintln!(
            "{LABEL}: cannot raise RLIMIT_MEMLOCK ({}); glommio may fail to start",
            std::io::Error::last_os_error()
        );
    }
}

fn core_main(server: &Server, core: usize) -> Result<(), String> {
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .name(&format!("{}-{core}", short_name(LABEL)))
        .make()
        .map_err(|err| format!("cannot build the glommio executor: {err}"))?;
    ex.run(async {
        let listener = server.bind()?;
        // SAFETY: `into_raw_fd` hands over a bound, listening TCP socket that nothing else owns,
        // which is what `TcpListener::from_raw_fd` requires; the glommio listener now closes it.
        let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
        server.listening();
        accept_loop(server, listener).await;
        Ok(())
    })
}

async fn accept_loop(server: &Server, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                // Detached: the task ends when the peer closes.
                glommio::spawn_local(echo(stream)).detach();
            }
            Err(err) => {
                if let Some(pause) = server.accept_backoff(&err.into()) {
                    glommio::timer::sleep(pause).await;
                }
            }
        }
    }
}

/// Echoes everything until the peer closes or an error, reusing one buffer.
async fn echo(mut stream: TcpStream) {
    // Without it a small echo waits for the peer's delayed ACK. A failure only costs latency.
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0; BUF_CAPACITY];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

//! Compile-time contracts: cross-core handles are `Send + Sync`; per-core types are not `Send`
//! (checked by `compile_fail` doctests on `TcpStream` and `TcpListener`).

fn send_and_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[test]
fn cross_core_handles_are_send_and_sync() {
    send_and_sync::<coreio::Runtime>();
    send_and_sync::<coreio::Builder>();
    send_and_sync::<coreio::sync::Event>();
    send_and_sync::<coreio::CoreId>();
    send_and_sync::<coreio::Backend>();
    send_and_sync::<coreio::RingSetupError>();
    // The shutdown handle is triggered from any thread (a signal handler's, another core).
    send_and_sync::<coreio::shutdown::Shutdown>();
    send_and_sync::<coreio::shutdown::ShutdownReport>();
    // A core's error carries a panic payload, which is `Send` but not `Sync`.
    send::<coreio::CoreError>();
    // A handle to a task whose output is `Send` may be awaited from another core.
    send::<coreio::JoinHandle<u64>>();
}

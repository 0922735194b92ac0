//! The `dns` example's zone and answer modules, compiled into this test binary with `#[path]`
//! so their unit tests run (the example's server is driven by `dig` in `dns_dig.rs`).

// Some of their items serve only the example's server.
#[path = "../examples/dns/answer.rs"]
#[allow(dead_code)]
mod answer;
#[path = "../examples/dns/zone.rs"]
#[allow(dead_code)]
mod zone;

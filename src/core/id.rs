//! [`CoreId`]: which CPU a core runs on, the name by which users and other cores address it.

use std::fmt;

/// A CPU a core runs on, as the kernel numbers it (the id `taskset -c` takes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CoreId(pub usize);

impl fmt::Display for CoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "core {}", self.0)
    }
}

//! Cooperative scheduling: the budget of operations a task may complete in one poll.
//!
//! A task gives its core back only when something it awaits returns `Pending`. Some I/O never
//! does: on epoll an operation tries its syscall first, and on a busy socket that syscall
//! always succeeds; a channel with messages waiting hands one out at once; a read served from
//! bytes a dropped read left behind needs no syscall at all. A task looping over such I/O
//! would hold its core for as long as the data lasts, and every other task of the core, its
//! timers, its mailbox and its driver would wait. So each poll of a task starts with
//! [`TASK_BUDGET`] units ([`Budget::reset`], called by the executor before it runs a task);
//! each operation spends one before it starts ([`Budget::poll_proceed`], or
//! [`poll_proceed`] from code that does not hold the core's context yet), and once none is
//! left the operation wakes its task and returns `Pending`, as if it had to wait. The task is
//! polled again after the others had their turn, with a fresh budget.
//!
//! This is tokio's `runtime/coop.rs`, reduced to what a single-threaded core needs: the budget
//! is a `Cell` in the core's context, so spending a unit is one read and one write, with no
//! thread-local lookup beyond the one an operation makes anyway to reach its driver.

// This module owns the budget and the rule for spending it. It must never decide when a task runs
// (that is the executor's) and never make an operation fail: a spent budget only postpones it.

use std::cell::Cell;
use std::task::{Context, Poll};

use crate::context;

/// How many operations a task may complete in one poll before it is made to yield.
///
/// 128 is tokio's figure: high enough that the check costs nothing measurable, low enough that
/// a task yields within microseconds.
pub(crate) const TASK_BUDGET: u32 = 128;

/// The running task's budget: operations it may still complete before it must yield. One per
/// core, in its context; `!Send`, like everything else there.
pub(crate) struct Budget(Cell<u32>);

impl Budget {
    /// A full budget.
    pub(crate) fn new() -> Budget {
        Budget(Cell::new(TASK_BUDGET))
    }

    /// Refills the budget: called before each task poll.
    #[inline]
    pub(crate) fn reset(&self) {
        self.0.set(TASK_BUDGET);
    }

    /// Spends one unit. Returns `Pending` (after waking the task, so that it is polled again
    /// soon) once the budget is spent.
    #[inline]
    pub(crate) fn poll_proceed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let left = self.0.get();
        if left == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.0.set(left - 1);
        Poll::Ready(())
    }
}

/// Spends one unit of the current core's budget, as [`Budget::poll_proceed`]; always `Ready`
/// outside a runtime (there is no core to give back).
#[inline]
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    context::with(|ctx| ctx.budget.poll_proceed(cx)).unwrap_or(Poll::Ready(()))
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use super::{Budget, TASK_BUDGET};

    #[test]
    fn a_spent_budget_yields_until_reset() {
        let budget = Budget::new();
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..TASK_BUDGET {
            assert_eq!(budget.poll_proceed(&mut cx), Poll::Ready(()));
        }
        assert_eq!(budget.poll_proceed(&mut cx), Poll::Pending);
        assert_eq!(budget.poll_proceed(&mut cx), Poll::Pending);
        budget.reset();
        assert_eq!(budget.poll_proceed(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn outside_a_runtime_there_is_no_budget() {
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..2 * TASK_BUDGET {
            assert_eq!(super::poll_proceed(&mut cx), Poll::Ready(()));
        }
    }
}

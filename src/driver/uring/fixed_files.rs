//! The ring's registered file table (`IORING_REGISTER_FILES` in its sparse form, Linux 5.19):
//! which of its slots are taken, and by which socket.
//!
//! An operation on a registered socket names its slot (`types::Fixed`) instead of its
//! descriptor, so the kernel skips the descriptor lookup and the file reference count
//! (`fget`/`fput`, two atomic operations) that each operation on a plain descriptor costs.
//!
//! The lifecycle of one socket's slot:
//! - A socket is registered once it has started [`FileTableConfig::register_after`]
//!   operations, so that short-lived sockets never pay for the update. The update is an
//!   `IORING_OP_FILES_UPDATE` entry in the ring's next batch, not a system call of its own.
//! - Operations name the slot once that update's completion says it succeeded, and the plain
//!   descriptor until then (an operation never waits for its socket's registration). They use
//!   the plain descriptor for good when the table was full or the update failed.
//! - When the socket closes, or leaves the core (`into_std`, a handoff), another update empties
//!   the slot. A slot holds a reference to the file, so a socket left in the table would stay
//!   open after `close(2)`. The emptying update goes with the ring's next batch (at once when
//!   the socket leaves the core), so the kernel lets the connection go when the core next
//!   submits, as it does every other operation of that batch.
//! - The slot is free for another socket only after the emptying update completed. Updates run
//!   in submission order, but the table must never hand out a slot whose removal might not
//!   have run yet.
//!
//! The io-uring crate takes either a `types::Fixed` or a `types::Fd` through a sealed trait
//! whose target type is private, so [`uring_target!`] expands an entry's builder once for each.

// This module owns the slot accounting: every slot taken is emptied exactly once and freed only
// after its emptying update completed. It must never let an operation name a slot before its
// update succeeded, nor leave a closed socket's file in the table.

use std::cell::{Cell, OnceCell};
use std::fmt;
use std::os::fd::RawFd;
use std::rc::Rc;

/// Default size of each core's registered file table, before the cap by `RLIMIT_NOFILE` (the
/// kernel refuses a larger table): 16,384 slots cost the kernel about 256 KiB per ring.
pub const DEFAULT_REGISTERED_FILES: u32 = 16 * 1024;
/// Default number of operations a socket starts before it is registered: a registration and its
/// removal cost about as much as the descriptor lookups of a few operations.
pub const DEFAULT_REGISTER_AFTER: u32 = 8;

/// The table's shape (`Builder::registered_files`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileTableConfig {
    /// Slots in the table (capped by `RLIMIT_NOFILE` when the ring registers it).
    pub(crate) slots: u32,
    /// Operations a socket starts before it takes a slot.
    pub(crate) register_after: u32,
}

impl Default for FileTableConfig {
    fn default() -> Self {
        FileTableConfig {
            slots: DEFAULT_REGISTERED_FILES,
            register_after: DEFAULT_REGISTER_AFTER,
        }
    }
}

/// What a socket's registration with its driver (`driver::Registration`) knows of its slot.
#[derive(Default)]
pub(crate) struct FixedUse {
    /// Operations started on the socket before it asked for a slot.
    started: Cell<u32>,
    /// Its slot, once asked for: it stays for the socket's life, whatever the update's outcome.
    slot: OnceCell<Rc<FileSlot>>,
}

impl FixedUse {
    /// Whether the socket asked for a slot already (whatever became of it).
    pub(crate) fn has_slot(&self) -> bool {
        self.slot.get().is_some()
    }

    /// The slot operations may name: its update completed and succeeded, and the socket has not
    /// let it go.
    pub(crate) fn index(&self) -> Option<u32> {
        let slot = self.slot.get()?;
        (slot.state.get() == SlotState::Live).then_some(slot.index)
    }
}

impl fmt::Debug for FixedUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slot.get() {
            Some(slot) => f
                .debug_struct("FixedUse")
                .field("slot", &slot.index)
                .field("state", &slot.state.get())
                .finish(),
            None => f
                .debug_struct("FixedUse")
                .field("started", &self.started.get())
                .finish(),
        }
    }
}

/// One socket's slot in the table, shared by the socket and the driver's updates in flight.
pub(crate) struct FileSlot {
    index: u32,
    /// The registering update's one-entry array of descriptors; the kernel reads it when it
    /// runs the update, while the driver holds this slot.
    fd: RawFd,
    state: Cell<SlotState>,
}

impl FileSlot {
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// The registering update's array of one descriptor.
    pub(crate) fn fds(&self) -> *const RawFd {
        &self.fd
    }
}

/// Where a slot is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// The registering update is queued or running.
    Registering,
    /// Registered: operations name the slot.
    Live,
    /// The registering update failed; the slot went back to the table.
    Refused,
    /// The socket let the slot go; the emptying update is queued or running.
    Removing,
}

/// The descriptor array of an emptying update: `-1` clears a slot. A static, so the kernel may
/// read it whenever it runs the update.
pub(crate) static EMPTY_SLOT: RawFd = -1;

/// The table's bookkeeping: which slots are free to take.
pub(crate) struct FileTable {
    config: FileTableConfig,
    /// Slots below this have been handed out at least once; those from it up are unused.
    fresh: u32,
    /// Slots emptied by a completed update, reused first.
    free: Vec<u32>,
    /// Slots a socket holds, or whose emptying update has not completed.
    taken: u32,
}

impl FileTable {
    /// The bookkeeping of a table of `config.slots` slots the kernel registered.
    pub(crate) fn new(config: FileTableConfig) -> FileTable {
        FileTable {
            config,
            fresh: 0,
            free: Vec::new(),
            taken: 0,
        }
    }

    pub(crate) fn slots(&self) -> u32 {
        self.config.slots
    }

    pub(crate) fn taken(&self) -> u32 {
        self.taken
    }

    /// Counts an operation started on a socket; a slot for it (to register with the update
    /// the caller queues) when this operation reaches the threshold and the table has a free
    /// slot. A socket that found the table full asks again at its next operations.
    pub(crate) fn note_operation(&mut self, socket: &FixedUse, fd: RawFd) -> Option<Rc<FileSlot>> {
        if socket.slot.get().is_some() {
            return None;
        }
        let started = socket.started.get().saturating_add(1);
        socket.started.set(started);
        if started < self.config.register_after {
            return None;
        }
        let index = self.free.pop().or_else(|| {
            (self.fresh < self.config.slots).then(|| {
                self.fresh += 1;
                self.fresh - 1
            })
        })?;
        self.taken += 1;
        let slot = Rc::new(FileSlot {
            index,
            fd,
            state: Cell::new(SlotState::Registering),
        });
        // The caller checked the cell is empty.
        let _ = socket.slot.set(Rc::clone(&slot));
        Some(slot)
    }

    /// The registering update of `slot` completed with `result` (the count of slots updated,
    /// or `-errno`). A failed update gives the slot back unless the socket already let it go,
    /// when its emptying update does.
    pub(crate) fn registered(&mut self, slot: &FileSlot, result: i32) {
        match slot.state.get() {
            SlotState::Registering if result == 1 => slot.state.set(SlotState::Live),
            SlotState::Registering => {
                log::debug!(
                    "registering a socket in the ring's file table failed ({}); it keeps using \
                     its descriptor",
                    std::io::Error::from_raw_os_error(-result)
                );
                slot.state.set(SlotState::Refused);
                self.release(slot.index);
            }
            SlotState::Removing => {}
            SlotState::Live | SlotState::Refused => {
                debug_assert!(false, "slot {} registered twice", slot.index);
            }
        }
    }

    /// The socket of `socket` lets its slot go (it closes or leaves the core): the slot to empty
    /// with an update the caller queues, if it holds one.
    pub(crate) fn let_go(socket: &FixedUse) -> Option<u32> {
        let slot = socket.slot.get()?;
        match slot.state.get() {
            SlotState::Registering | SlotState::Live => {
                slot.state.set(SlotState::Removing);
                Some(slot.index)
            }
            SlotState::Refused | SlotState::Removing => None,
        }
    }

    /// The emptying update of slot `index` completed with `result`: the slot is free again.
    /// One that failed stays out of use, since it may still hold a file.
    pub(crate) fn emptied(&mut self, index: u32, result: i32) {
        if result == 1 {
            self.release(index);
        } else {
            log::warn!(
                "emptying slot {index} of the ring's file table failed ({}); the slot stays \
                 out of use",
                std::io::Error::from_raw_os_error(-result)
            );
        }
    }

    fn release(&mut self, index: u32) {
        self.taken -= 1;
        self.free.push(index);
    }
}

/// Builds an io_uring entry for socket `$socket` (a `SharedFd`): `$build` runs with `$target`
/// bound to the socket's registered slot (`types::Fixed`) when it has one, to its descriptor
/// (`types::Fd`) otherwise. The io-uring crate takes either through a sealed trait with a private
/// target type, so the builder is expanded once for each.
macro_rules! uring_target {
    ($socket:expr, |$target:ident| $build:expr) => {
        match $socket.fixed_slot() {
            Some(slot) => {
                let $target = ::io_uring::types::Fixed(slot);
                $build
            }
            None => {
                let $target = ::io_uring::types::Fd($socket.raw());
                $build
            }
        }
    };
}
pub(crate) use uring_target;

#[cfg(test)]
mod tests {
    use super::*;

    fn table(slots: u32, register_after: u32) -> FileTable {
        FileTable::new(FileTableConfig {
            slots,
            register_after,
        })
    }

    #[test]
    fn a_socket_takes_a_slot_at_its_threshold_and_names_it_only_once_registered() {
        let mut table = table(4, 3);
        let socket = FixedUse::default();
        assert!(table.note_operation(&socket, 7).is_none());
        assert!(table.note_operation(&socket, 7).is_none());
        let slot = table
            .note_operation(&socket, 7)
            .expect("the third operation registers");
        assert_eq!(socket.index(), None, "not before the update completed");
        table.registered(&slot, 1);
        assert_eq!(socket.index(), Some(slot.index()));
        assert!(
            table.note_operation(&socket, 7).is_none(),
            "registered once"
        );
        assert_eq!(table.taken(), 1);
    }

    #[test]
    fn a_failed_registration_frees_the_slot_and_leaves_the_descriptor_in_use() {
        let mut table = table(1, 1);
        let socket = FixedUse::default();
        let slot = table.note_operation(&socket, 7).unwrap();
        table.registered(&slot, -libc::EBADF);
        assert_eq!(socket.index(), None);
        assert_eq!(table.taken(), 0);
        assert_eq!(FileTable::let_go(&socket), None, "nothing to empty");
        let other = FixedUse::default();
        assert_eq!(
            table.note_operation(&other, 8).unwrap().index(),
            slot.index()
        );
    }

    #[test]
    fn a_slot_is_reused_only_after_its_emptying_update_completed() {
        let mut table = table(1, 1);
        let first = FixedUse::default();
        let slot = table.note_operation(&first, 7).unwrap();
        table.registered(&slot, 1);
        let index = FileTable::let_go(&first).expect("a live slot is emptied");
        assert_eq!(first.index(), None, "a slot let go is not named any more");
        let second = FixedUse::default();
        assert!(
            table.note_operation(&second, 8).is_none(),
            "full until emptied"
        );
        table.emptied(index, 1);
        assert_eq!(table.taken(), 0);
        let third = FixedUse::default();
        assert_eq!(table.note_operation(&third, 9).unwrap().index(), index);
    }

    #[test]
    fn a_socket_let_go_while_registering_is_freed_by_its_removal_alone() {
        for registration in [1, -libc::ENOMEM] {
            let mut table = table(2, 1);
            let socket = FixedUse::default();
            let slot = table.note_operation(&socket, 7).unwrap();
            let index = FileTable::let_go(&socket).unwrap();
            table.registered(&slot, registration);
            assert_eq!(table.taken(), 1, "still taken until the removal completes");
            table.emptied(index, 1);
            assert_eq!(table.taken(), 0);
            assert_eq!(table.free, vec![index], "freed exactly once");
        }
    }

    #[test]
    fn a_failed_removal_keeps_the_slot_out_of_use() {
        let mut table = table(1, 1);
        let socket = FixedUse::default();
        let slot = table.note_operation(&socket, 7).unwrap();
        table.registered(&slot, 1);
        let index = FileTable::let_go(&socket).unwrap();
        table.emptied(index, -libc::ENXIO);
        assert!(table.note_operation(&FixedUse::default(), 8).is_none());
    }
}

//! Hierarchical hashed timer wheel.
//!
//! Time is measured in abstract integer *ticks* (the runtime uses 1 tick = 1 ms). The wheel
//! never reads a clock, never touches a waker and performs no I/O; the caller tells it what time
//! it is through [`TimerWheel::advance`] and decides what "firing" means.
//!
//! # Algorithm
//!
//! The wheel has [`LEVELS`] levels of [`SLOTS`] slots each. A slot at level
//! `k` covers `64^k` ticks, so one full rotation of level `k` covers
//! `64^(k+1)` ticks and the whole wheel spans `64^6 = 2^36` ticks (about 2.18
//! years at 1 ms). An entry with deadline `d` is filed relative to the
//! current tick `elapsed`: its level is the index of the highest 6-bit group
//! in which `d` and `elapsed` differ, and its slot is `d`'s digit in that
//! group. Hence every entry at level `k` shares all higher digits with
//! `elapsed`, i.e. it lies in the level's current rotation, in a slot strictly
//! after the one `elapsed` is in. Level 0 slots hold entries of one exact
//! tick; the only exception is the slot of `elapsed` itself, which collects
//! entries inserted with a deadline that has already passed. Deadlines that
//! differ from `elapsed` above bit 36 go to an unordered *overflow list*,
//! together with a lower bound of the earliest start of a 2^36-tick epoch
//! holding one of them.
//!
//! Advancing time processes *events* in ascending order: the next occupied
//! slot of the lowest non-empty level (every entry of a lower level precedes
//! every occupied slot of a higher one), or, when all levels are empty, the
//! overflow bound. Each level keeps a `u64` bitmap of its non-empty slots, so
//! the next event is found with one `trailing_zeros` per level and empty
//! slots are skipped no matter how far time jumps. Processing an event sets
//! `elapsed` to the slot's start and empties it: entries whose deadline has
//! come fire, the others are re-filed, which *cascades* them to a finer
//! level (or from the overflow list into the wheel). An entry is therefore
//! touched at most once per level on its way down, plus once per overflow
//! rescan.
//!
//! Entries live in a [`Slab`]; each slot (and the overflow list) is an
//! intrusive doubly linked list threaded through slab indices, so inserting
//! and cancelling are O(1) and allocation-free once the slab has grown.
//! [`TimerKey`]s carry a generation so a stale key can never cancel a timer
//! that later reused the same slab index.
//!
//! Every wheel also has an *id*, unique among all the wheels a process ever
//! creates (a process-wide counter, not an address: a dropped wheel's memory
//! is reused), and stamps it into the keys it issues. Every operation that
//! takes a key first checks that id, so a key is only ever resolved in the
//! wheel that issued it: the key of a timer that moved to another wheel (a
//! `Send` timer future polled on one core, then on another) never reads,
//! refreshes or cancels an entry of that other wheel, even though slab
//! indices and generations of all wheels start at 0 and so coincide.
//!
//! # Guarantees
//!
//! - An entry never fires while the wheel's time is below its deadline, and
//!   every entry whose deadline is `<= now` fires exactly once in
//!   `advance(now, ..)`.
//! - Within one `advance`, entries fire in ascending deadline order; entries
//!   that were already overdue when inserted fire first, in unspecified order.
//! - A key never refers to an entry of a wheel other than the one that
//!   issued it.
//! - No clocks, wakers, I/O, `unsafe`, or per-operation allocation in steady
//!   state; creating a wheel takes one relaxed atomic increment (its id).

// This module owns the timer *algorithm* and nothing else: the levels and their slots, cascading
// entries from coarse to fine levels, the overflow list for deadlines beyond the wheel's span, the
// per-level occupancy bitmaps and O(1) cancellation.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

use slab::Slab;

/// Number of levels in the wheel.
const LEVELS: usize = 6;
/// log2 of the number of slots per level.
const SLOT_BITS: u32 = 6;
/// Number of slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Mask selecting a slot digit.
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// log2 of the number of ticks spanned by the whole wheel (one "epoch").
const WHEEL_BITS: u32 = SLOT_BITS * LEVELS as u32;
/// Mask of the tick bits inside one epoch.
const EPOCH_MASK: u64 = (1 << WHEEL_BITS) - 1;
/// "No entry" sentinel for intrusive links and list heads.
const NIL: u32 = u32::MAX;
/// Pseudo-level under which overflow entries are recorded.
const OVERFLOW: u8 = LEVELS as u8;

/// Handle to a timer in a [`TimerWheel`]; stale handles, and handles of
/// other wheels, are harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimerKey {
    /// The id of the wheel that issued the key. Non-zero, so that an
    /// `Option<TimerKey>` is no larger than a key.
    wheel: NonZeroU64,
    index: u32,
    generation: u64,
}

/// The next wheel id. Ids start at 1 and are never reused: a 64-bit counter
/// incremented once per wheel cannot wrap in a process's life.
static NEXT_WHEEL_ID: AtomicU64 = AtomicU64::new(1);

/// A wheel id no other wheel of this process has or will have.
fn unique_wheel_id() -> NonZeroU64 {
    // Relaxed suffices: every increment of one atomic reads the value the
    // previous one wrote, whatever the ordering, so no two calls get the same
    // id; nothing else is published through the counter.
    let id = NEXT_WHEEL_ID.fetch_add(1, Ordering::Relaxed);
    NonZeroU64::new(id).expect("timer wheel: 2^64 wheels created")
}

struct Entry<T> {
    value: T,
    deadline: u64,
    generation: u64,
    prev: u32,
    next: u32,
    /// Level the entry is linked into, or [`OVERFLOW`].
    level: u8,
    slot: u8,
}

#[derive(Clone, Copy)]
struct Level {
    /// Bit `s` is set iff `heads[s]` is non-empty.
    occupied: u64,
    heads: [u32; SLOTS],
}

/// The next thing `advance` has to process.
#[derive(Clone, Copy)]
enum Event {
    Slot { level: usize, slot: usize },
    Overflow,
}

/// Hierarchical hashed timer wheel holding values of type `T`.
pub(crate) struct TimerWheel<T> {
    /// Stamped into every key this wheel issues; see the module docs.
    id: NonZeroU64,
    entries: Slab<Entry<T>>,
    levels: [Level; LEVELS],
    overflow_head: u32,
    /// Lower bound of the epoch start of every overflow entry's deadline;
    /// `u64::MAX` while the overflow list is empty. Always `> elapsed` when
    /// the list is non-empty.
    overflow_next: u64,
    elapsed: u64,
    next_generation: u64,
}

impl<T> Default for TimerWheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerWheel<T> {
    /// Creates an empty wheel whose time starts at tick 0.
    pub(crate) fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Creates an empty wheel with room for `capacity` timers.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let empty = Level {
            occupied: 0,
            heads: [NIL; SLOTS],
        };
        Self {
            id: unique_wheel_id(),
            entries: Slab::with_capacity(capacity),
            levels: [empty; LEVELS],
            overflow_head: NIL,
            overflow_next: u64::MAX,
            elapsed: 0,
            next_generation: 0,
        }
    }

    /// The current tick: the largest `now` passed to `advance` so far.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Number of pending timers.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is pending.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a timer firing at tick `deadline`. A deadline `<= elapsed()` is
    /// legal and fires on the next `advance` call.
    pub(crate) fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let vacant = self.entries.vacant_entry();
        let index = u32::try_from(vacant.key())
            .ok()
            .filter(|&index| index != NIL)
            .expect("timer wheel: too many timers");
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1);
        vacant.insert(Entry {
            value,
            deadline,
            generation,
            prev: NIL,
            next: NIL,
            level: 0,
            slot: 0,
        });
        self.file(index);
        TimerKey {
            wheel: self.id,
            index,
            generation,
        }
    }

    /// Removes a pending timer in O(1) and returns its value; `None` if the
    /// timer already fired or was cancelled, or `key` is another wheel's.
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<T> {
        self.entry(key)?;
        self.unlink(key.index);
        Some(self.entries.remove(key.index as usize).value)
    }

    /// Whether `key` refers to a pending timer of this wheel.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn contains(&self, key: TimerKey) -> bool {
        self.entry(key).is_some()
    }

    /// Mutable access to a pending timer's value; `None` if the timer already
    /// fired or was cancelled, or `key` is another wheel's.
    pub(crate) fn get_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        if key.wheel != self.id {
            return None;
        }
        self.entries
            .get_mut(key.index as usize)
            .filter(|entry| entry.generation == key.generation)
            .map(|entry| &mut entry.value)
    }

    /// A tick at or before the earliest pending deadline, or `None` if the
    /// wheel is empty. Returns `elapsed()` if a timer is already due and a
    /// tick `> elapsed()` otherwise.
    ///
    /// The result is exact for timers in level 0 (deadline within the current
    /// 64-tick block) but may be *earlier* than the true earliest deadline
    /// when that timer sits in a coarser level or in the overflow list: it is
    /// then the start of the slot (or epoch) holding it. It is never later.
    /// Callers should sleep until the returned tick, call `advance`, and ask
    /// again.
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        self.next_event().map(|(_, when)| when)
    }

    /// Moves time forward to `now` and calls `fire` once for every timer
    /// whose deadline is `<= now`, in ascending deadline order. A `now`
    /// below `elapsed()` does not move time back but still fires timers
    /// that are already due.
    pub(crate) fn advance(&mut self, now: u64, mut fire: impl FnMut(TimerKey, T)) {
        let now = now.max(self.elapsed);
        while let Some((event, when)) = self.next_event() {
            if when > now {
                break;
            }
            debug_assert!(when >= self.elapsed);
            self.elapsed = when;
            let mut index = match event {
                Event::Slot { level, slot } => {
                    let level = &mut self.levels[level];
                    level.occupied &= !(1 << slot);
                    std::mem::replace(&mut level.heads[slot], NIL)
                }
                Event::Overflow => {
                    self.overflow_next = u64::MAX;
                    std::mem::replace(&mut self.overflow_head, NIL)
                }
            };
            while index != NIL {
                let entry = &self.entries[index as usize];
                let next = entry.next;
                if entry.deadline <= self.elapsed {
                    let entry = self.entries.remove(index as usize);
                    let key = TimerKey {
                        wheel: self.id,
                        index,
                        generation: entry.generation,
                    };
                    fire(key, entry.value);
                } else {
                    self.file(index);
                }
                index = next;
            }
        }
        self.elapsed = now;
    }

    /// The pending entry `key` refers to, if it is one of this wheel's.
    fn entry(&self, key: TimerKey) -> Option<&Entry<T>> {
        if key.wheel != self.id {
            return None;
        }
        self.entries
            .get(key.index as usize)
            .filter(|entry| entry.generation == key.generation)
    }

    /// Finds the earliest slot (or the overflow list) to process and the
    /// tick at which it starts.
    fn next_event(&self) -> Option<(Event, u64)> {
        for (level, slots) in self.levels.iter().enumerate() {
            if slots.occupied == 0 {
                continue;
            }
            let shift = SLOT_BITS * level as u32;
            let current = (self.elapsed >> shift) & SLOT_MASK;
            debug_assert_eq!(slots.occupied & !(u64::MAX << current), 0);
            let slot = slots.occupied.trailing_zeros() as u64;
            let rotation_start = self.elapsed & !((1u64 << (shift + SLOT_BITS)) - 1);
            let when = rotation_start + (slot << shift);
            return Some((
                Event::Slot {
                    level,
                    slot: slot as usize,
                },
                when,
            ));
        }
        (self.overflow_head != NIL).then_some((Event::Overflow, self.overflow_next))
    }

    /// Links an unlinked entry into the list matching its deadline.
    fn file(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        if deadline <= self.elapsed {
            // Overdue: the slot of `elapsed` itself is processed first.
            self.link(index, 0, (self.elapsed & SLOT_MASK) as u8);
            return;
        }
        let differing = (self.elapsed ^ deadline) | SLOT_MASK;
        let level = ((63 - differing.leading_zeros()) / SLOT_BITS) as usize;
        if level >= LEVELS {
            self.overflow_next = self.overflow_next.min(deadline & !EPOCH_MASK);
            self.link(index, OVERFLOW, 0);
        } else {
            let slot = (deadline >> (SLOT_BITS * level as u32)) & SLOT_MASK;
            self.link(index, level as u8, slot as u8);
        }
    }

    fn head_mut(&mut self, level: u8, slot: u8) -> &mut u32 {
        if level == OVERFLOW {
            &mut self.overflow_head
        } else {
            &mut self.levels[level as usize].heads[slot as usize]
        }
    }

    fn link(&mut self, index: u32, level: u8, slot: u8) {
        let head = *self.head_mut(level, slot);
        let entry = &mut self.entries[index as usize];
        entry.prev = NIL;
        entry.next = head;
        entry.level = level;
        entry.slot = slot;
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        *self.head_mut(level, slot) = index;
        if level != OVERFLOW {
            self.levels[level as usize].occupied |= 1 << slot;
        }
    }

    fn unlink(&mut self, index: u32) {
        let entry = &self.entries[index as usize];
        let (prev, next, level, slot) = (entry.prev, entry.next, entry.level, entry.slot);
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if prev != NIL {
            self.entries[prev as usize].next = next;
            return;
        }
        *self.head_mut(level, slot) = next;
        if next == NIL {
            if level == OVERFLOW {
                self.overflow_next = u64::MAX;
            } else {
                self.levels[level as usize].occupied &= !(1 << slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }

        /// A value with a log-uniform magnitude of at most `max_bits` bits.
        fn log_uniform(&mut self, max_bits: u64) -> u64 {
            let bits = self.below(max_bits + 1);
            self.next() & ((1u64 << bits) - 1)
        }
    }

    fn fired(wheel: &mut TimerWheel<u64>, now: u64) -> Vec<u64> {
        let mut out = Vec::new();
        wheel.advance(now, |_, value| out.push(value));
        out
    }

    #[test]
    fn basic_insert_advance_fire() {
        let mut wheel = TimerWheel::new();
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiration(), None);
        wheel.insert(10, 10);
        wheel.insert(3, 3);
        wheel.insert(100, 100);
        assert_eq!(wheel.len(), 3);
        assert_eq!(wheel.next_expiration(), Some(3));
        assert_eq!(fired(&mut wheel, 2), Vec::<u64>::new());
        assert_eq!(fired(&mut wheel, 3), vec![3]);
        assert_eq!(fired(&mut wheel, 99), vec![10]);
        assert_eq!(wheel.elapsed(), 99);
        assert_eq!(fired(&mut wheel, 1_000), vec![100]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.elapsed(), 1_000);
    }

    #[test]
    fn past_deadline_fires_on_next_advance() {
        let mut wheel = TimerWheel::new();
        wheel.advance(500, |_, _: u64| unreachable!());
        wheel.insert(7, 7);
        wheel.insert(500, 500);
        assert_eq!(wheel.next_expiration(), Some(500));
        let mut out = fired(&mut wheel, 500);
        out.sort_unstable();
        assert_eq!(out, vec![7, 500]);
        wheel.insert(1, 1);
        assert_eq!(fired(&mut wheel, 0), vec![1]);
        assert_eq!(wheel.elapsed(), 500);
    }

    #[test]
    fn cancel_get_mut_and_stale_keys() {
        let mut wheel = TimerWheel::new();
        let a = wheel.insert(50, 1);
        *wheel.get_mut(a).unwrap() += 1;
        assert!(wheel.contains(a));
        assert_eq!(wheel.cancel(a), Some(2));
        assert_eq!(wheel.cancel(a), None);
        let b = wheel.insert(60, 3);
        assert_eq!(a.index, b.index, "slab slot should be reused");
        assert!(!wheel.contains(a) && wheel.get_mut(a).is_none());
        assert_eq!(wheel.cancel(a), None);
        assert_eq!(fired(&mut wheel, 60), vec![3]);
        let c = wheel.insert(70, 4);
        assert_eq!(b.index, c.index);
        assert_eq!(wheel.cancel(b), None);
        assert_eq!(wheel.cancel(c), Some(4));
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiration(), None);
    }

    #[test]
    fn keys_of_another_wheel_never_touch_this_one() {
        let mut first = TimerWheel::new();
        let mut second = TimerWheel::new();
        let theirs = first.insert(10, 1);
        let ours = second.insert(20, 2);
        // Both are their wheel's first entry: only the wheel id tells them apart.
        assert_eq!(
            (theirs.index, theirs.generation),
            (ours.index, ours.generation)
        );
        assert_ne!(theirs, ours);
        assert!(!second.contains(theirs));
        assert!(second.get_mut(theirs).is_none());
        assert_eq!(second.cancel(theirs), None);
        assert!(second.contains(ours));
        assert_eq!(second.len(), 1);
        // The other wheel's own entry is untouched by all of that, and vice versa.
        assert_eq!(first.cancel(ours), None);
        assert_eq!(fired(&mut first, 10), vec![1]);
        assert_eq!(fired(&mut second, 20), vec![2]);
        // A wheel made after one was dropped gets a fresh id, never the dropped one's.
        let dropped = first.id;
        drop(first);
        let third = TimerWheel::<u64>::new();
        assert_ne!(third.id, dropped);
        assert_ne!(third.id, second.id);
    }

    #[test]
    fn an_optional_key_is_no_larger_than_a_key() {
        assert_eq!(
            std::mem::size_of::<Option<TimerKey>>(),
            std::mem::size_of::<TimerKey>()
        );
    }

    #[test]
    fn far_deadlines_fire_exactly_on_time() {
        let ten_years = 10 * 365 * 24 * 3600 * 1000;
        let mut wheel = TimerWheel::new();
        wheel.insert(u64::MAX / 2, 0);
        wheel.insert(ten_years, 1);
        wheel.insert(u64::MAX, 2);
        let cancelled = wheel.insert(ten_years - 5, 3);
        assert_eq!(wheel.cancel(cancelled), Some(3));
        // Wrap the wheel many times in irregular jumps.
        let mut now = 0;
        while now + (1 << 33) < ten_years {
            now += (1 << 33) + 12_345;
            assert!(fired(&mut wheel, now).is_empty());
            assert!(wheel.next_expiration().unwrap() > now);
        }
        assert!(fired(&mut wheel, ten_years - 1).is_empty());
        assert_eq!(fired(&mut wheel, ten_years), vec![1]);
        assert!(fired(&mut wheel, u64::MAX / 2 - 1).is_empty());
        assert!(wheel.next_expiration().unwrap() <= u64::MAX / 2);
        assert_eq!(fired(&mut wheel, u64::MAX / 2), vec![0]);
        assert!(fired(&mut wheel, u64::MAX - 1).is_empty());
        assert_eq!(fired(&mut wheel, u64::MAX), vec![2]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn huge_jump_skips_empty_slots() {
        let mut wheel = TimerWheel::new();
        wheel.insert(1_000_000_000_000, 0);
        wheel.insert(1_000_000_000_001, 1);
        let mut events = 0;
        let mut probe = wheel.next_expiration();
        // Following next_expiration must reach the deadline in few hops.
        while let Some(when) = probe {
            assert!(when <= 1_000_000_000_000);
            if when == 1_000_000_000_000 {
                break;
            }
            assert!(fired(&mut wheel, when).is_empty());
            events += 1;
            probe = wheel.next_expiration();
        }
        assert!(events <= 2 * LEVELS);
        assert_eq!(fired(&mut wheel, 1 << 62), vec![0, 1]);
    }

    #[test]
    fn model_check_against_btreeset() {
        for seed in 1..=20u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut wheel = TimerWheel::new();
            // Model: pending (deadline, id) pairs, plus id -> (key, deadline).
            let mut pending = BTreeSet::new();
            let mut info: HashMap<u64, (TimerKey, u64)> = HashMap::new();
            let mut all_keys: Vec<(TimerKey, u64)> = Vec::new();
            for id in 0..2000u64 {
                let elapsed = wheel.elapsed();
                match rng.below(10) {
                    0..=3 => {
                        let deadline = if rng.below(8) == 0 {
                            elapsed.saturating_sub(rng.log_uniform(20))
                        } else {
                            elapsed.saturating_add(rng.log_uniform(50))
                        };
                        let key = wheel.insert(deadline, id);
                        pending.insert((deadline, id));
                        info.insert(id, (key, deadline));
                        all_keys.push((key, id));
                    }
                    4 | 5 if !all_keys.is_empty() => {
                        // Mostly recent keys (likely live), sometimes any (likely stale).
                        let window = if rng.below(4) == 0 {
                            all_keys.len()
                        } else {
                            16
                        };
                        let back = rng.below(window.min(all_keys.len()) as u64) as usize;
                        let (key, victim) = all_keys[all_keys.len() - 1 - back];
                        let expected = info.remove(&victim).map(|(_, deadline)| {
                            assert!(pending.remove(&(deadline, victim)));
                            victim
                        });
                        assert_eq!(wheel.cancel(key), expected);
                        assert!(!wheel.contains(key));
                    }
                    _ => {
                        let now = match rng.below(6) {
                            0 => pending.first().map_or(elapsed, |&(d, _)| d),
                            1 => pending
                                .first()
                                .map_or(elapsed, |&(d, _)| d.saturating_sub(1)),
                            2 => elapsed.saturating_sub(rng.log_uniform(10)),
                            3 => wheel.next_expiration().unwrap_or(elapsed),
                            _ => elapsed.saturating_add(rng.log_uniform(52)),
                        };
                        let mut fired = Vec::new();
                        wheel.advance(now, |key, id| fired.push((key, id)));
                        let mut last = 0;
                        for &(key, id) in &fired {
                            let (expected_key, deadline) = info.remove(&id).expect("fired twice");
                            assert_eq!(key, expected_key);
                            assert!(deadline <= now.max(elapsed), "fired early");
                            assert!(pending.remove(&(deadline, id)));
                            let effective = deadline.max(elapsed);
                            assert!(effective >= last, "fired out of order");
                            last = effective;
                        }
                        assert_eq!(wheel.elapsed(), now.max(elapsed));
                        let first_pending = pending.first().map(|&(d, _)| d);
                        assert!(first_pending.is_none_or(|d| d > wheel.elapsed()));
                    }
                }
                assert_eq!(wheel.len(), pending.len());
                let model_min = pending.first().map(|&(d, _)| d);
                let next = wheel.next_expiration();
                assert_eq!(next.is_some(), model_min.is_some());
                if let (Some(next), Some(min)) = (next, model_min) {
                    assert!(next <= min.max(wheel.elapsed()), "next_expiration too late");
                    assert_eq!(next == wheel.elapsed(), min <= wheel.elapsed());
                }
            }
            let mut rest = Vec::new();
            wheel.advance(u64::MAX, |_, id| rest.push(id));
            assert_eq!(rest.len(), pending.len());
            assert!(wheel.is_empty());
        }
    }

    #[test]
    fn many_timers_fire_in_deadline_order() {
        let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
        let mut wheel = TimerWheel::with_capacity(100_000);
        for _ in 0..100_000 {
            let deadline = 1 + rng.log_uniform(40);
            wheel.insert(deadline, deadline);
        }
        let mut now = 0;
        let mut last = 0;
        let mut count = 0;
        while !wheel.is_empty() {
            now += 1 + rng.log_uniform(36);
            wheel.advance(now, |_, deadline| {
                assert!(deadline <= now, "fired early");
                assert!(deadline >= last, "fired out of order");
                last = deadline;
                count += 1;
            });
        }
        assert_eq!(count, 100_000);
    }
}

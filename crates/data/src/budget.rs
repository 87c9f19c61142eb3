//! One memory budget shared by every image decode in the process.
//!
//! Each decode is bounded on its own ([`MAX_DECODE_BYTES`]), but every loading thread can be
//! decoding at once. Before a decode reads a file or allocates pixels it reserves its estimated
//! bytes here, waiting (never failing) while other decodes hold too much of the budget.

use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

/// Most memory one image may need from its bytes to its resized pixels: the file, the decoder's
/// buffers, the decoded pixels, their RGB8 copy and the resize buffer, estimated from the header
/// before anything is decoded; a 50-megapixel photo fits. Concurrent decodes share
/// [`DECODE_BUDGET_BYTES`] between them (see [`decode_budget`]).
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

/// Most bytes all concurrent image decodes together may hold (estimated as
/// [`MAX_DECODE_BYTES`] is): two of the largest images at a time, or many small ones.
pub const DECODE_BUDGET_BYTES: u64 = 1 << 30;

/// A counting semaphore on bytes, with the largest total ever held.
///
/// A reservation starts with what is known before an image's header is read (its file), then
/// grows once to the header's estimate. Starts are capped at `start_capacity` in total, and a
/// grown reservation is at most `capacity - start_capacity`: whenever every holder is waiting
/// to grow, one of them fits, so waiting never deadlocks.
#[derive(Debug)]
pub struct ByteBudget {
    capacity: u64,
    start_capacity: u64,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    used: u64,
    /// The starting amounts of the reservations held (the only part a waiter can hold).
    started: u64,
    high_water: u64,
}

impl ByteBudget {
    /// A budget of `capacity` bytes, of which the reservations held start with at most
    /// `start_capacity` in total (at most `capacity`).
    pub const fn new(capacity: u64, start_capacity: u64) -> Self {
        let start_capacity = if start_capacity < capacity {
            start_capacity
        } else {
            capacity
        };
        Self {
            capacity,
            start_capacity,
            state: Mutex::new(State {
                used: 0,
                started: 0,
                high_water: 0,
            }),
            freed: Condvar::new(),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> u64 {
        self.lock().used
    }

    /// The most bytes ever reserved at once; never above [`Self::capacity`].
    pub fn high_water(&self) -> u64 {
        self.lock().high_water
    }

    /// The largest reservation one decode can grow to: the rest once the starts are held.
    pub fn largest_reservation(&self) -> u64 {
        self.capacity - self.start_capacity
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves `bytes` (at most the start capacity) to begin with, waiting until they fit.
    pub fn start(&self, bytes: u64) -> Reservation<'_> {
        let bytes = bytes.min(self.start_capacity);
        let mut state = self.lock();
        while state.started + bytes > self.start_capacity || state.used + bytes > self.capacity {
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.started += bytes;
        state.used += bytes;
        state.high_water = state.high_water.max(state.used);
        Reservation {
            budget: self,
            bytes,
            started: bytes,
        }
    }

    fn release(&self, bytes: u64, started: u64) {
        let mut state = self.lock();
        state.used -= bytes;
        state.started -= started;
        drop(state);
        self.freed.notify_all();
    }
}

/// Bytes held in a [`ByteBudget`] until dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a ByteBudget,
    bytes: u64,
    started: u64,
}

impl Reservation<'_> {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Holds at least `total` bytes (at most [`ByteBudget::largest_reservation`], or what is
    /// already held), waiting until the difference fits.
    pub fn grow_to(&mut self, total: u64) {
        let total = total.min(self.budget.largest_reservation().max(self.bytes));
        if total <= self.bytes {
            return;
        }
        let extra = total - self.bytes;
        let budget = self.budget;
        let mut state = budget.lock();
        while state.used + extra > budget.capacity {
            state = budget
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.used += extra;
        state.high_water = state.high_water.max(state.used);
        self.bytes = total;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.release(self.bytes, self.started);
    }
}

/// The budget every [`crate::decode_image`] and [`crate::decode_image_bytes`] reserves from:
/// [`DECODE_BUDGET_BYTES`] in all, any one decode up to [`MAX_DECODE_BYTES`].
pub fn decode_budget() -> &'static ByteBudget {
    static BUDGET: OnceLock<ByteBudget> = OnceLock::new();
    BUDGET.get_or_init(|| {
        ByteBudget::new(DECODE_BUDGET_BYTES, DECODE_BUDGET_BYTES - MAX_DECODE_BYTES)
    })
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{mpsc, Arc},
        time::Duration,
    };

    use super::*;

    #[test]
    fn a_reservation_waits_for_room_and_never_overshoots() {
        // 100 bytes; starts hold at most 50 in all, so one decode grows to at most 50.
        let budget = Arc::new(ByteBudget::new(100, 50));
        let mut a = budget.start(20);
        a.grow_to(50);
        let b = budget.start(20);
        assert_eq!((budget.in_use(), a.bytes(), b.bytes()), (70, 50, 20));
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || {
                let mut c = budget.start(10);
                tx.send(budget.in_use()).unwrap();
                // 80 held: growing by 40 must wait for `a`.
                c.grow_to(50);
                tx.send(budget.in_use()).unwrap();
            })
        };
        assert_eq!(rx.recv().unwrap(), 80);
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "the third decode waits while the first holds the budget"
        );
        drop(a);
        assert_eq!(rx.recv().unwrap(), 70);
        waiter.join().unwrap();
        assert_eq!(budget.in_use(), 20);
        drop(b);
        assert_eq!((budget.in_use(), budget.high_water()), (0, 80));
    }

    #[test]
    fn starts_wait_for_the_start_cap() {
        let budget = Arc::new(ByteBudget::new(100, 40));
        let a = budget.start(30);
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let budget = budget.clone();
            std::thread::spawn(move || {
                let b = budget.start(30);
                tx.send(b.bytes()).unwrap();
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "60 bytes of starts would pass the cap of 40"
        );
        drop(a);
        assert_eq!(rx.recv().unwrap(), 30);
        waiter.join().unwrap();
        assert_eq!(budget.high_water(), 30);
    }

    #[test]
    fn oversized_requests_are_clamped_so_they_wait_instead_of_failing() {
        let budget = ByteBudget::new(100, 40);
        let mut r = budget.start(1_000);
        assert_eq!(r.bytes(), 40);
        r.grow_to(u64::MAX);
        assert_eq!(
            r.bytes(),
            60,
            "at most what is left once every start is held"
        );
        drop(r);
        // A budget without a start cap: one reservation may take all of it.
        let whole = ByteBudget::new(100, 100);
        let mut r = whole.start(100);
        r.grow_to(500);
        assert_eq!((r.bytes(), whole.high_water()), (100, 100));
    }

    #[test]
    fn many_threads_growing_at_once_finish_within_the_budget() {
        let budget = Arc::new(ByteBudget::new(1_000, 400));
        let threads: Vec<_> = (0..16u64)
            .map(|i| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    for round in 0..50u64 {
                        let mut r = budget.start(10 + (i * 7 + round) % 90);
                        std::thread::yield_now();
                        r.grow_to(100 + (i * 13 + round * 31) % 500);
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(budget.in_use(), 0);
        assert!(budget.high_water() <= 1_000, "{}", budget.high_water());
    }
}

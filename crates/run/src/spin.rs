//! Keeps the thread pool's other workers hot while one thread runs a forward pass.
//!
//! A decode step is ~5 parallel products per layer separated by short serial stretches (norms,
//! RoPE, the cache write). Rayon's idle workers go to sleep within microseconds, so each product
//! paid a futex wake-up and the wait for it (5–8% of decode time on a 2-core machine). During a
//! forward pass the other workers instead run a job that keeps asking the pool for work
//! (`rayon::yield_now`) until the pass ends, so they pick up each product's pieces as soon as
//! they are split off — what llama.cpp's spinning OpenMP threads do.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    /// Whether this thread is inside a forward pass or a spinner already. A spinner never starts
    /// on such a thread: it would sit on top of that work and could wait for a pass that cannot
    /// finish until the spinner returns (two passes sharing a pool would deadlock).
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Empty polls of the pool between offers of the core back to the OS.
const IDLE_POLLS_PER_OS_YIELD: u32 = 64;

/// Runs `f` (a forward pass) with the pool's other threads spinning for work until it returns.
pub(crate) fn with_spinning_workers<R>(f: impl FnOnce() -> R) -> R {
    if rayon::current_num_threads() <= 1 {
        return f();
    }
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    // Fire and forget: a copy that runs late finds `done` set and returns at once, so the pass
    // never waits for a worker busy elsewhere to get to its copy.
    rayon::spawn_broadcast(move |_| spin_until(&flag));
    let _guard = PassGuard {
        done,
        was_busy: BUSY.replace(true),
    };
    f()
}

/// Ends the spinning when the pass returns or unwinds.
struct PassGuard {
    done: Arc<AtomicBool>,
    was_busy: bool,
}

impl Drop for PassGuard {
    fn drop(&mut self) {
        BUSY.set(self.was_busy);
        self.done.store(true, Ordering::Release);
    }
}

/// Executes pool jobs as they appear until `done`; returns at once on a busy thread.
fn spin_until(done: &AtomicBool) {
    if BUSY.replace(true) {
        return;
    }
    let mut idle = 0u32;
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle.is_multiple_of(IDLE_POLLS_PER_OS_YIELD) {
            // With more threads than free cores, a spinner may hold the core a worker with
            // real work is waiting for: let the OS run it (an immediate return otherwise).
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    BUSY.set(false);
}

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
use std::time::{Duration, Instant};

thread_local! {
    /// Whether this thread is inside a forward pass or a spinner already. A spinner never starts
    /// on such a thread: it would sit on top of that work and could wait for a pass that cannot
    /// finish until the spinner returns (two passes sharing a pool would deadlock).
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Empty polls of the pool between offers of the core back to the OS.
const IDLE_POLLS_PER_OS_YIELD: u32 = 64;

/// How long a spinner polls without finding work before it returns. Rayon runs any queued job
/// on a thread that waits, so a spinner can start on top of the pass's own work (a thread
/// waiting inside a product the pass needs); spinning until the pass ends would then wait on
/// itself. Giving way after a short idle spell turns that into a brief stall.
const IDLE_LIMIT: Duration = Duration::from_millis(1);

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

/// Executes pool jobs as they appear until `done`, or until [`IDLE_LIMIT`] passes without any;
/// returns at once on a busy thread.
fn spin_until(done: &AtomicBool) {
    if BUSY.replace(true) {
        return;
    }
    let mut idle = 0u32;
    let mut idle_since = None;
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle = 0;
            idle_since = None;
            continue;
        }
        idle += 1;
        if idle.is_multiple_of(IDLE_POLLS_PER_OS_YIELD) {
            let now = Instant::now();
            if now.duration_since(*idle_since.get_or_insert(now)) > IDLE_LIMIT {
                break;
            }
            // With more threads than free cores, a spinner may hold the core a worker with
            // real work is waiting for: let the OS run it (an immediate return otherwise).
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    BUSY.set(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spinner_whose_pass_cannot_end_gives_way() {
        // A spinner that started on top of work its pass waits for: `done` is never set while
        // it runs. It must return on its own (before the fix this hung forever).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            pool.install(|| spin_until(&AtomicBool::new(false)));
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(30)).is_ok(),
            "the spinner never gave way"
        );
    }
}

//! What happens when a mapped input shrinks under us. ggufy reads models through mmap (zero-copy);
//! if another process truncates a file while it is mapped, the next read of a vanished page raises
//! SIGBUS, whose default action kills the process with a core dump and no explanation. A CI log
//! should instead say what happened, and the exit code should be the ordinary failure one. The
//! output is never at risk: it is a temporary file that is only renamed into place at the end.

/// Installs the SIGBUS handler; call once at start-up.
#[cfg(unix)]
pub fn install() {
    extern "C" fn on_sigbus(_: libc::c_int) {
        const MSG: &[u8] = b"error: an input file was truncated or became unreadable while \
being read (SIGBUS); no output was written\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a static buffer. The
        // faulting read cannot be resumed, so the process ends here without running destructors.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::_exit(1);
        }
    }
    // SAFETY: installs a handler that only calls async-signal-safe functions; this is the
    // mmap'd-input failure path the module comment describes.
    unsafe {
        libc::signal(libc::SIGBUS, on_sigbus as *const () as libc::sighandler_t);
    }
}

/// Nothing to install where SIGBUS does not exist.
#[cfg(not(unix))]
pub fn install() {}

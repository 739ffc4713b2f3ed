//! Ctrl-C while the model works: the first asks the current work to stop (an answer in chat, the batch), a second
//! one before it has stopped exits with status 130.
//!
//! Owns: the SIGINT handler (installed once, by chat and batch) and the pending-interrupt counter.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

static PENDING: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// Installs the handler.
pub fn install() {
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if PENDING.fetch_add(1, Ordering::SeqCst) >= 1 {
                eprintln!();
                std::process::exit(130);
            }
        });
    });
}

/// True when Ctrl-C was pressed since the last [`reset`].
pub fn requested() -> bool {
    PENDING.load(Ordering::SeqCst) > 0
}

/// Forgets a handled Ctrl-C.
pub fn reset() {
    PENDING.store(0, Ordering::SeqCst);
}

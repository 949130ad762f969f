//! Progress bars and Ctrl-C handling shared by the long-running commands.
//!
//! A first Ctrl-C raises a flag that long loops check between tensors (or
//! batches); they stop, drop their temporary outputs and return an
//! `Interrupted` error, so nothing half-written is left under the target name.
//! A second Ctrl-C exits at once.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: OnceLock<()> = OnceLock::new();

/// Install the Ctrl-C handler (once) and return the flag it raises.
pub fn interrupt_flag() -> &'static AtomicBool {
    HANDLER.get_or_init(|| {
        let _ = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted twice: exiting now");
                std::process::exit(130);
            }
            eprintln!(
                "\ninterrupt: finishing the current step, then stopping (Ctrl-C again to abort)"
            );
        });
    });
    &INTERRUPTED
}

/// A bar over `total` items of work, drawn on stderr (hidden when `quiet` or
/// when stderr is not a terminal).
pub fn bar(total: u64, what: &str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} ({eta} left) {msg}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// A bar over bytes of work.
pub fn byte_bar(total: u64, what: &str, quiet: bool) -> ProgressBar {
    let bar = bar(total, what, quiet);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left) {wide_msg}",
        )
        .expect("valid template"),
    );
    bar
}

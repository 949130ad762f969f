//! Progress bars and Ctrl-C handling shared by the long-running commands.
//!
//! A first Ctrl-C raises a flag that long loops check between tensors (or
//! batches); they stop, drop their temporary outputs and return an
//! `Interrupted` error, so nothing half-written is left under the target name.
//! A second Ctrl-C exits at once.

use indicatif::TermLike;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// A bar over `total` items of work, drawn on stderr; hidden when `quiet`.
/// When stderr is not a terminal (a log file, `nohup`, CI) the bar's state is
/// written as a plain line every [`LOG_EVERY`] instead, so long jobs still
/// show where they are.
pub fn bar(total: u64, what: &str, quiet: bool) -> ProgressBar {
    let target = if quiet {
        ProgressDrawTarget::hidden()
    } else if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::term_like_with_hz(Box::new(LineLog::new()), 1)
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
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

/// How often a bar writes a line when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(30);
/// Jobs shorter than this write no progress line at all.
const LOG_AFTER: Duration = Duration::from_secs(5);

/// A "terminal" for indicatif that keeps only the last drawn line and writes
/// it to stderr, with a newline, at most every [`LOG_EVERY`].
#[derive(Debug)]
struct LineLog {
    started: Instant,
    state: Mutex<LineLogState>,
}

#[derive(Debug, Default)]
struct LineLogState {
    line: String,
    last_written: Option<Instant>,
}

impl LineLog {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            state: Mutex::new(LineLogState::default()),
        }
    }

    fn append(&self, s: &str) {
        if let Ok(mut st) = self.state.lock() {
            st.line.push_str(s);
        }
    }
}

impl TermLike for LineLog {
    fn width(&self) -> u16 {
        160
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.append(s);
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.append(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        if let Ok(mut st) = self.state.lock() {
            st.line.clear();
        }
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        let now = Instant::now();
        let Ok(mut st) = self.state.lock() else {
            return Ok(());
        };
        let due = now.duration_since(self.started) >= LOG_AFTER
            && st
                .last_written
                .is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
        let line = std::mem::take(&mut st.line);
        let line = line.trim();
        if due && !line.is_empty() {
            st.last_written = Some(now);
            let mut err = std::io::stderr().lock();
            writeln!(err, "{line}")?;
            err.flush()?;
        }
        Ok(())
    }
}

//! What a person sees on stderr: the research-use notice, the image-encoding and quantising spinners, the stats
//! line.
//!
//! Owns: everything written to stderr for people. Never writes to stdout (answers only go there).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::{EvalObserver, SessionStats};

/// The research-use notice.
pub const NOTICE: &str =
    "medgemma: for research use only; not for clinical diagnosis or patient care. Check every answer.";

/// Prints the notice on stderr when a person is likely reading it (stderr is a terminal).
pub fn research_notice() {
    let stderr = std::io::stderr();
    if stderr.is_terminal() {
        let _ = writeln!(stderr.lock(), "{NOTICE}");
    }
}

/// Shows a spinner with elapsed time while an image is encoded (on a terminal), or a plain line afterwards
/// with `--verbose` when stderr is not a terminal.
pub struct ImageProgress {
    total: usize,
    verbose: bool,
    spinner: Option<ProgressBar>,
}

impl ImageProgress {
    pub fn new(total: usize, verbose: bool) -> Self {
        ImageProgress {
            total,
            verbose,
            spinner: None,
        }
    }
}

impl EvalObserver for ImageProgress {
    fn image_started(&mut self, index: usize, path: &Path) {
        let name = path
            .file_name()
            .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        self.spinner = spinner(format!("encoding image {}/{} ({name})", index + 1, self.total));
    }

    fn image_finished(&mut self, index: usize, elapsed: Duration) {
        if let Some(bar) = self.spinner.take() {
            bar.finish_and_clear();
        }
        if self.verbose {
            eprintln!(
                "medgemma: image {}/{} encoded in {:.2} s",
                index + 1,
                self.total,
                elapsed.as_secs_f64()
            );
        }
    }
}

/// A spinner with elapsed time on stderr, only when stderr is a terminal; it ticks on its own thread, so it keeps
/// moving while a blocking call runs. Clear it with `finish_and_clear`.
pub fn spinner(message: String) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

/// The `--verbose` stats line.
pub fn stats_line(stats: &SessionStats) -> String {
    format!(
        "prompt: {} tokens, {:.1} tokens/s | generation: {} tokens, {:.1} tokens/s | time to first token: {:.0} ms",
        stats.prompt_tokens,
        stats.prompt_tokens_per_s(),
        stats.generated_tokens,
        stats.generation_tokens_per_s(),
        stats.time_to_first_token_ms
    )
}

//! What a person sees on stderr: the research-use notice, progress bars and spinners (one constructor for all of
//! them: image encoding, quantising, batch jobs, eval-quant chunks, downloads), the stats line.
//!
//! Owns: everything written to stderr for people. Never writes to stdout (answers only go there).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

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

/// Image encoding progress on stderr. One image: a spinner with its elapsed time. Several (a CT series is up to 85
/// slices, tens of seconds each on a laptop CPU): one bar for them all with image k/n and the time left. When
/// stderr is not a terminal, a plain line every 10 seconds while several images encode, and with `--verbose` one
/// line per image.
pub struct ImageProgress {
    total: usize,
    verbose: bool,
    spinner: Option<ProgressBar>,
    bar: Option<ProgressBar>,
    /// When the first image of this evaluation started, and how many have been encoded since.
    started: Option<Instant>,
    encoded: usize,
    last_line: Option<Instant>,
}

impl ImageProgress {
    pub fn new(total: usize, verbose: bool) -> Self {
        let bar = if total > 1 {
            bar(
                Some(total as u64),
                "{bar:30} encoding image {pos}/{len} ({msg}) [{elapsed} < {eta}]",
            )
        } else {
            None
        };
        ImageProgress {
            total,
            verbose,
            spinner: None,
            bar,
            started: None,
            encoded: 0,
            last_line: None,
        }
    }

    /// The estimated time left after `done` of `total` images, from the mean time of those encoded so far.
    fn remaining(&self, done: usize) -> Option<Duration> {
        let started = self.started?;
        if self.encoded == 0 || done >= self.total {
            return None;
        }
        let per_image = started.elapsed() / u32::try_from(self.encoded).ok()?;
        Some(per_image * u32::try_from(self.total - done).ok()?)
    }
}

impl Drop for ImageProgress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl EvalObserver for ImageProgress {
    fn image_started(&mut self, index: usize, path: &Path) {
        let name = path
            .file_name()
            .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        self.started.get_or_insert_with(Instant::now);
        match &self.bar {
            Some(bar) => {
                bar.set_message(name);
                bar.set_position(index as u64);
            }
            None if self.total > 1 => {
                // The first line after 10 s: quick prompts stay quiet.
                let since = *self.last_line.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(10) {
                    let left = self
                        .remaining(index)
                        .map_or_else(String::new, |d| format!(", about {} s left", d.as_secs()));
                    eprintln!("medgemma: encoding image {}/{}{left}", index + 1, self.total);
                    self.last_line = Some(Instant::now());
                }
            }
            None => self.spinner = spinner(format!("encoding image {}/{} ({name})", index + 1, self.total)),
        }
    }

    fn image_finished(&mut self, index: usize, elapsed: Duration) {
        self.encoded += 1;
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
        if let Some(bar) = &self.bar {
            bar.set_position(index as u64 + 1);
        }
        if self.verbose {
            let line = format!(
                "medgemma: image {}/{} encoded in {:.2} s",
                index + 1,
                self.total,
                elapsed.as_secs_f64()
            );
            match &self.bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
    }
}

/// A progress bar (`total` known) or a spinner on stderr, only when stderr is a terminal; it ticks on its own thread,
/// so it keeps moving while a blocking call runs. Clear it with `finish_and_clear`.
pub fn bar(total: Option<u64>, template: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(if total.is_some() { 200 } else { 120 }));
    Some(bar)
}

/// A spinner with elapsed time (see [`bar`]).
pub fn spinner(message: String) -> Option<ProgressBar> {
    let bar = bar(None, "{spinner} {msg} {elapsed}")?;
    bar.set_message(message);
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

/// How images became embeddings, for stderr (None when there were none).
pub fn image_use_line(u: &crate::engine::ImageUse) -> Option<String> {
    let reused = u.from_memory + u.from_disk;
    (u.encoded + reused > 0).then(|| {
        format!(
            "images: {} encoded ({:.1} s), {} reused ({} from this run, {} from the image cache, {:.0} ms)",
            u.encoded,
            u.encode_ms / 1000.0,
            reused,
            u.from_memory,
            u.from_disk,
            u.cache_ms
        )
    })
}

/// Batch progress: a bar on a terminal (jobs done, failed, tokens/s, ETA), a plain line every 10 seconds otherwise.
pub struct JobProgress {
    bar: Option<ProgressBar>,
    total: u64,
    done: std::cell::Cell<u64>,
    last_line: std::cell::Cell<Instant>,
}

impl JobProgress {
    pub fn new(total: u64) -> Self {
        let bar = bar(Some(total), "{bar:30} {pos}/{len} jobs {msg} [{elapsed} < {eta}]");
        JobProgress {
            bar,
            total,
            done: 0.into(),
            last_line: Instant::now().into(),
        }
    }

    pub fn update(&self, failed: u64, tokens_per_s: f64) {
        self.update_rate(failed, tokens_per_s, "tokens/s");
    }

    /// One more job done; `rate` in `unit` (e.g. items/s) shown beside the failures.
    pub fn update_rate(&self, failed: u64, rate: f64, unit: &str) {
        self.done.set(self.done.get() + 1);
        let msg = format!("({failed} failed, {rate:.1} {unit})");
        match &self.bar {
            Some(bar) => {
                bar.set_message(msg);
                bar.set_position(self.done.get());
            }
            None if self.last_line.get().elapsed() >= Duration::from_secs(10) || self.done.get() == self.total => {
                eprintln!("medgemma: {}/{} jobs {msg}", self.done.get(), self.total);
                self.last_line.set(Instant::now());
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

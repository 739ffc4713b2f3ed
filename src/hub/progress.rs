//! How a download looks on stderr: a progress bar with size, speed and ETA on a terminal; otherwise one line when
//! it starts and one when it ends (logs and CI stay readable).
//!
//! Owns: download progress output only. Never writes to stdout.

use std::time::Instant;

use indicatif::ProgressBar;

use crate::model_info::human_bytes;

pub struct DownloadProgress {
    name: String,
    bar: Option<ProgressBar>,
    started: Instant,
    /// Bytes already on disk when this run started (a resumed download).
    resumed_at: u64,
    now: u64,
}

impl DownloadProgress {
    pub fn start(repo: &str, file: &str, endpoint: &str, size: Option<u64>, resumed_at: u64) -> DownloadProgress {
        let size_text = size.map_or_else(|| "size unknown".into(), human_bytes);
        let resume = if resumed_at > 0 {
            format!(", resuming at {}", human_bytes(resumed_at))
        } else {
            String::new()
        };
        eprintln!("medgemma: downloading {repo}/{file} ({size_text}{resume}) from {endpoint}");
        let template = "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}";
        let bar = crate::terminal::bar(size, template).inspect(|bar| {
            bar.set_message(file.rsplit('/').next().unwrap_or(file).to_string());
            bar.set_position(resumed_at);
            bar.reset_eta();
        });
        DownloadProgress {
            name: format!("{repo}/{file}"),
            bar,
            started: Instant::now(),
            resumed_at,
            now: resumed_at,
        }
    }

    pub fn set(&mut self, bytes: u64) {
        self.now = bytes;
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
        }
    }

    /// The server ignored the range: counting starts again from zero.
    pub fn restart(&mut self) {
        self.resumed_at = 0;
        self.set(0);
    }

    /// A line above the bar (or on its own without one).
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("medgemma: {text}")),
            None => eprintln!("medgemma: {text}"),
        }
    }

    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let fetched = self.now - self.resumed_at.min(self.now);
        eprintln!(
            "medgemma: downloaded {} ({}) in {secs:.1} s ({}/s)",
            self.name,
            human_bytes(self.now),
            human_bytes((fetched as f64 / secs) as u64)
        );
    }

    pub fn abandon(self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

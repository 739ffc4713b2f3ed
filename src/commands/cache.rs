//! `medgemma cache`: show the image embedding cache (its folder, entries, size and cap) or clear it. The entries
//! are named by a hash; nothing here reads or prints what they hold.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::cli::{CacheAction, CacheArgs};
use crate::image_cache::{self, DiskCache};
use crate::model_info::human_bytes;

#[derive(Serialize)]
struct Report {
    dir: PathBuf,
    entries: u64,
    bytes: u64,
    max_bytes: u64,
    /// False when MEDGEMMA_NO_IMAGE_CACHE turns it off for every command.
    enabled: bool,
    /// Files in the folder that are not entries (an unfinished write, or not ours).
    other_files: u64,
}

#[derive(Serialize)]
struct Cleared {
    dir: PathBuf,
    removed_entries: u64,
    removed_bytes: u64,
    removed_partial_files: u64,
}

fn the_cache() -> Result<DiskCache> {
    let dir = image_cache::dir_from_vars(|k| std::env::var_os(k))
        .ok_or_else(|| anyhow!("no folder for the image cache: set MEDGEMMA_HOME, XDG_CACHE_HOME or HOME"))?;
    let max = image_cache::max_bytes_from_env().map_err(anyhow::Error::msg)?;
    Ok(DiskCache::new(dir, max))
}

pub fn run(args: CacheArgs) -> Result<()> {
    let cache = the_cache()?;
    match args.action.unwrap_or(CacheAction::Show) {
        CacheAction::Show => {
            let usage = cache.usage();
            let report = Report {
                dir: cache.dir().to_path_buf(),
                entries: usage.entries,
                bytes: usage.bytes,
                max_bytes: cache.max_bytes(),
                enabled: std::env::var("MEDGEMMA_NO_IMAGE_CACHE").map_or(true, |v| v.is_empty() || v == "0"),
                other_files: usage.other_files,
            };
            super::print_report(args.json, &report, write_table)
        }
        CacheAction::Clear => {
            let removed = cache
                .clear()
                .with_context(|| format!("cannot clear the image cache in {}", cache.dir().display()))?;
            if args.json {
                let report = Cleared {
                    dir: cache.dir().to_path_buf(),
                    removed_entries: removed.entries,
                    removed_bytes: removed.bytes,
                    removed_partial_files: removed.other_files,
                };
                super::print_report(true, &report, |_, _| Ok(()))?;
            }
            eprintln!(
                "medgemma: removed {} image cache entries ({}) from {}",
                removed.entries,
                human_bytes(removed.bytes),
                cache.dir().display()
            );
            Ok(())
        }
    }
}

fn write_table(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    writeln!(out, "image cache  {}", r.dir.display())?;
    writeln!(
        out,
        "entries      {} ({} of {} at most; the least recently used go first)",
        r.entries,
        human_bytes(r.bytes),
        human_bytes(r.max_bytes)
    )?;
    if r.other_files > 0 {
        writeln!(
            out,
            "other files  {} (not entries; `medgemma cache clear` removes unfinished writes)",
            r.other_files
        )?;
    }
    let state = if r.enabled {
        "on (--no-image-cache turns it off for one command, MEDGEMMA_NO_IMAGE_CACHE=1 for all; \
         MEDGEMMA_IMAGE_CACHE_SIZE sets the cap)"
    } else {
        "off (MEDGEMMA_NO_IMAGE_CACHE is set)"
    };
    writeln!(out, "state        {state}")
}

//! `medgemma list`: the models on this machine (registry builds and other GGUF files in the Hugging Face cache,
//! converted builds), or with `--available` the registry's. The table or JSON goes to stdout.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use crate::cli::ListArgs;
use crate::hub::{local, Hub, HubSettings, Registry};
use crate::model_info::human_bytes;

#[derive(Serialize)]
struct Available<'a> {
    name: &'a str,
    quant: &'a str,
    approx_bytes: u64,
    repo: &'a str,
    file: &'a str,
    mmproj: Option<&'a str>,
    licence: &'a str,
}

pub fn run(args: ListArgs) -> Result<()> {
    let registry = Registry::load()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.available {
        let builds = registry.builds();
        let rows: Vec<Available> = builds
            .iter()
            .map(|b| Available {
                name: &b.name,
                quant: &b.quant,
                approx_bytes: b.model.approx_bytes + b.mmproj.as_ref().map_or(0, |m| m.approx_bytes),
                repo: &b.repo,
                file: &b.model.file,
                mmproj: b.mmproj.as_ref().map(|m| m.file.as_str()),
                licence: &b.licence,
            })
            .collect();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        } else {
            let table: Vec<[String; 4]> = rows
                .iter()
                .map(|r| {
                    [
                        r.name.to_string(),
                        r.quant.to_string(),
                        format!("~{}", human_bytes(r.approx_bytes)),
                        format!("{}/{}", r.repo, r.file),
                    ]
                })
                .collect();
            write_table(&mut out, ["NAME", "QUANT", "SIZE", "SOURCE"], &table)?;
        }
        return Ok(out.flush()?);
    }
    let hub = Hub::new(HubSettings::from_env(true));
    let models = local::local_models(&hub, &registry);
    if args.json {
        serde_json::to_writer_pretty(&mut out, &models)?;
        writeln!(out)?;
    } else if models.is_empty() {
        eprintln!(
            "medgemma: no models yet (looked in {}); `medgemma pull {}` downloads the default one, `medgemma list \
             --available` shows the others",
            hub.cache().root().display(),
            registry.default
        );
    } else {
        let table: Vec<[String; 4]> = models
            .iter()
            .map(|m| {
                [
                    m.name.clone(),
                    m.quant.clone(),
                    human_bytes(m.size),
                    m.model.display().to_string(),
                ]
            })
            .collect();
        write_table(&mut out, ["NAME", "QUANT", "SIZE", "PATH"], &table)?;
    }
    Ok(out.flush()?)
}

fn write_table(out: &mut impl Write, head: [&str; 4], rows: &[[String; 4]]) -> std::io::Result<()> {
    let mut width = head.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    writeln!(
        out,
        "{:w0$}  {:w1$}  {:>w2$}  {}",
        head[0],
        head[1],
        head[2],
        head[3],
        w0 = width[0],
        w1 = width[1],
        w2 = width[2]
    )?;
    for r in rows {
        writeln!(
            out,
            "{:w0$}  {:w1$}  {:>w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2]
        )?;
    }
    Ok(())
}

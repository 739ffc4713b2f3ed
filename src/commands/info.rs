//! `medgemma info`: what a GGUF file holds (model or mmproj), read from its header only, and whether a model and
//! an mmproj fit together. Safe on any file: it never loads llama.cpp. A file that fails the header pre-check
//! (`gguf_check`) is an error here too, with the message `run` would give.

use std::io::Write;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::cli::InfoArgs;
use crate::gguf_check::read_checked;
use crate::model_info::{check_fit, GgufInfo, ModelInfo, ProjectorInfo};

#[derive(Serialize)]
struct PairReport<'a> {
    model: &'a ModelInfo,
    mmproj: &'a ProjectorInfo,
    fits: bool,
}

pub fn run(args: InfoArgs) -> Result<()> {
    crate::sandbox::Policy::new("info").read_all(&args.files).enter()?;
    let infos = args
        .files
        .iter()
        .map(|p| read_checked(p).map(|h| GgufInfo::from_header(&h)))
        .collect::<Result<Vec<_>, _>>()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match infos.as_slice() {
        [one] => {
            if args.json {
                serde_json::to_writer(&mut out, one)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", one.lines().render())?;
            }
        }
        [GgufInfo::Model(model), GgufInfo::Mmproj(mmproj)] | [GgufInfo::Mmproj(mmproj), GgufInfo::Model(model)] => {
            check_fit(model, mmproj)?;
            if args.json {
                serde_json::to_writer(
                    &mut out,
                    &PairReport {
                        model,
                        mmproj,
                        fits: true,
                    },
                )?;
                writeln!(out)?;
            } else {
                write!(out, "{}\n{}\n", model.lines().render(), mmproj.lines().render())?;
                let width = mmproj.projection_dim.unwrap_or_default();
                writeln!(
                    out,
                    "fits: yes (the mmproj projects to width {width}, the model's hidden size)"
                )?;
            }
        }
        [a, b] => {
            let kind = |i: &GgufInfo| {
                if matches!(i, GgufInfo::Mmproj(_)) {
                    "an mmproj"
                } else {
                    "a model"
                }
            };
            bail!(
                "{} is {} and {} is {} too: give one model and its mmproj to check that they fit together, or one file",
                args.files[0].display(),
                kind(a),
                args.files[1].display(),
                kind(b)
            );
        }
        _ => unreachable!("clap allows one or two files"),
    }
    out.flush()?;
    Ok(())
}

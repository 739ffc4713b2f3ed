//! `medgemma pull`: a registry build by name, any GGUF of a repository (`--repo/--file`), or a model built here
//! from a checkpoint (`--convert`). Everything lands in the shared Hugging Face cache (converted builds in
//! medgemma's folder); a second pull of an up-to-date model downloads nothing. Reports on stderr only.

use anyhow::{Context, Result};

use crate::cli::PullArgs;
use crate::hub::{convert, Hub};
use crate::hub::{local, HubSettings, ModelName, Registry};
use crate::model_info::human_bytes;
use crate::settings::default_threads;

pub fn run(args: PullArgs) -> Result<()> {
    let hub = Hub::new(HubSettings::from_env(args.offline));
    if let Some(checkpoint) = &args.convert {
        let name = args
            .build_name
            .clone()
            .unwrap_or_else(|| checkpoint.rsplit('/').next().unwrap_or(checkpoint).to_string());
        ModelName::parse(&name).context("--name")?;
        let threads = crate::settings::threads(args.threads, default_threads);
        let built = convert::convert(&hub, checkpoint, &name, args.quant, threads, args.verbose)?;
        eprintln!(
            "medgemma: built {} ({}) from {checkpoint}: {}; use it with -m {}",
            built.id(),
            human_bytes(built.size),
            built.model.display(),
            built.id()
        );
        return Ok(());
    }
    if let (Some(repo), Some(file)) = (&args.repo, &args.file) {
        let command = format!("medgemma pull --repo {repo} --file {file}");
        let model = hub.file(repo, file, &command)?;
        local::check_gguf(&model, false)?;
        eprintln!("medgemma: {repo}/{file} is ready: {}", model.display());
        if let Some(mmproj_file) = &args.mmproj_file {
            let mmproj = hub.file(repo, mmproj_file, &command)?;
            local::check_gguf(&mmproj, true)?;
            eprintln!("medgemma: {repo}/{mmproj_file} is ready: {}", mmproj.display());
            eprintln!(
                "medgemma: run it with -m {} --mmproj {}",
                model.display(),
                mmproj.display()
            );
        } else {
            eprintln!("medgemma: run it with -m {}", model.display());
        }
        return Ok(());
    }
    let name = ModelName::parse(
        args.name
            .as_deref()
            .expect("clap requires one of name, --repo, --convert"),
    )?;
    let registry = Registry::load()?;
    let build = registry.find(&name)?;
    if !hub.is_offline() {
        eprintln!(
            "medgemma: {} from {}. Licence: {}",
            build.id(),
            build.repo,
            build.licence
        );
    }
    let files = local::pull_build(&hub, &build)?;
    let size: u64 = [Some(&files.model), files.mmproj.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "medgemma: {} is ready ({}): {}{}",
        build.id(),
        human_bytes(size),
        files.model.display(),
        files
            .mmproj
            .as_ref()
            .map(|m| format!(" with mmproj {}", m.display()))
            .unwrap_or_default()
    );
    Ok(())
}

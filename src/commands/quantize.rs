//! `medgemma quantize`: check the input and output paths, quantise through the engine into a temporary file
//! beside OUT, rename it into place, and report sizes and the resulting tensor-type mix on stderr.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cli::QuantizeArgs;
use crate::engine::{self, QuantizeOptions};
use crate::gguf_check::read_checked;
use crate::model_info::{human_bytes, is_quantized, mix_line, tensor_types};
use crate::output_guard::OutputGuard;
use crate::settings::default_threads;
use crate::terminal;

pub fn run(args: QuantizeArgs) -> Result<()> {
    let input = &args.input;
    let output = &args.output;
    crate::sandbox::Policy::new("quantize")
        .read_model(input)
        .write_beside(output)
        .verbose(args.verbose)
        .enter()?;
    if !input.exists() {
        bail!(
            "input model {} not found; give the .gguf file to quantise (e.g. an F16 conversion)",
            input.display()
        );
    }
    let header = read_checked(input)?;
    check_output(input, output, args.force)?;
    if is_quantized(&header) && !args.allow_requantize {
        bail!(
            "{} is already quantised ({}); quantising it again loses quality: start from an F16/BF16/F32 file, or \
             pass --allow-requantize",
            input.display(),
            mix_line(&tensor_types(&header))
        );
    }

    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = output
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".partial");
    #[cfg(unix)]
    {
        // An ordinary file (rw-r--r-- less the umask), not tempfile's private 0600.
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let tmp = builder
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {} for the output", dir.display()))?;

    let options = QuantizeOptions {
        quant_type: args.quant_type,
        allow_requantize: args.allow_requantize,
        threads: crate::settings::threads(args.threads, default_threads),
        verbose: args.verbose,
    };
    let started = Instant::now();
    let spinner = terminal::spinner(format!("quantising {} to {}", input.display(), args.quant_type.name()));
    let result = if header.is_mmproj() {
        engine::quantize_mmproj(input, &header, tmp.path(), &options).map(Some)
    } else {
        engine::quantize(input, tmp.path(), &options).map(|()| None)
    };
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    let mmproj = result?;
    let written = read_checked(tmp.path()).context("llama.cpp wrote a file that medgemma cannot load")?;
    tmp.persist(output)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the output into place at {}", output.display()))?;

    eprintln!(
        "medgemma: quantised {} ({}) to {} ({}, {}) in {:.1} s",
        input.display(),
        human_bytes(header.file_len),
        output.display(),
        args.quant_type.name(),
        human_bytes(written.file_len),
        started.elapsed().as_secs_f64()
    );
    eprintln!("medgemma: tensor types: {}", mix_line(&tensor_types(&written)));
    if let Some(m) = mmproj {
        eprintln!(
            "medgemma: vision projector: {} tensors converted to {}, {} not:",
            m.converted,
            args.quant_type.name(),
            m.kept.len()
        );
        for (reason, names) in group_by_reason(&m.kept) {
            eprintln!("medgemma:   {reason}: {}", names.join(", "));
        }
    }
    Ok(())
}

/// Tensor names grouped by the reason they were kept, reasons in first-seen order; long groups abbreviated.
fn group_by_reason(kept: &[(String, String)]) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (name, reason) in kept {
        match groups.iter_mut().find(|(r, _)| r == reason) {
            Some((_, names)) => names.push(name.clone()),
            None => groups.push((reason.clone(), vec![name.clone()])),
        }
    }
    for (_, names) in &mut groups {
        if names.len() > 4 {
            let more = names.len() - 3;
            names.truncate(3);
            names.push(format!("and {more} more"));
        }
    }
    groups
}

/// OUT must not be IN (the same file by any path or link), and must not exist unless --force.
fn check_output(input: &Path, output: &Path, force: bool) -> Result<()> {
    OutputGuard::new()
        .protect(input, "the input file")
        .check("OUT.gguf", output)?;
    if output.is_dir() {
        let example = output.join("model-Q4_K_M.gguf");
        bail!(
            "{} is a folder; give a file name for the quantised model, e.g. {}",
            output.display(),
            example.display()
        );
    }
    if output.exists() && !force {
        bail!(
            "{} already exists; pass --force to overwrite it, or choose another name",
            output.display()
        );
    }
    Ok(())
}

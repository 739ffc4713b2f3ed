//! `medgemma preview`: writes the RGB images the model would see, after DICOM windowing and fitting to a square,
//! as `DIR/001.png`, `002.png`, ... in prompt order (the `--image` files first, then the slices of `--series`),
//! plus `DIR/contact-sheet.png` for a series (its slices as labelled thumbnails), so a person can check the
//! windowing and the choice of slices before a run.
//!
//! Owns: the output folder and its numbering. Must not: load a model, or overwrite a file (every name is checked
//! before anything is written, and an existing one is refused). Enters the sandbox once every input is read: only
//! the output folder can be written then.

use std::path::PathBuf;

use anyhow::{Context, Result};
use image::RgbImage;

use crate::cli::PreviewArgs;
use crate::dicom::series;
use crate::image_input::ImageInput;
use crate::prompt_images::slice_input;

pub fn run(args: PreviewArgs) -> Result<()> {
    if args.series_select.any() && args.series.is_none() {
        anyhow::bail!("--series-uid and --max-slices choose slices of a series: add --series DIR");
    }
    let options = args.dicom.options(false);
    let images = args
        .images
        .iter()
        .map(|p| ImageInput::load_with(p, args.image_fit, args.side, &options))
        .collect::<Result<Vec<_>, _>>()?;
    let series = match &args.series {
        Some(source) => {
            let series = series::read_series(source, &args.series_select.options())?;
            for notice in &series.notices {
                eprintln!("{notice}");
            }
            Some(series)
        }
        None => None,
    };
    let slices: Vec<(usize, RgbImage)> = series
        .iter()
        .flat_map(|s| &s.slices)
        // Fitted exactly as run/chat/batch fit them for the projector.
        .map(|slice| (slice.label, slice_input(slice, args.image_fit, args.side).rgb))
        .collect();

    let name = |i: usize| args.out.join(format!("{i:03}.png"));
    let image_names: Vec<PathBuf> = (1..=images.len()).map(name).collect();
    let slice_names: Vec<PathBuf> = (images.len() + 1..=images.len() + slices.len()).map(name).collect();
    let sheet_name = series.as_ref().map(|_| args.out.join("contact-sheet.png"));
    if let Some(existing) = image_names
        .iter()
        .chain(&slice_names)
        .chain(&sheet_name)
        .find(|p| p.exists())
    {
        anyhow::bail!(
            "preview: {} already exists; choose an empty --out folder",
            existing.display()
        );
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("preview: cannot create {}", args.out.display()))?;
    // Everything is read: from here on only the output folder may be written.
    crate::sandbox::Policy::new("preview")
        .write_beneath(&args.out)
        .enter()?;
    let save = |rgb: &RgbImage, name: &PathBuf| -> Result<()> {
        let mut png = Vec::new();
        rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .with_context(|| format!("preview: cannot encode {}", name.display()))?;
        // Whole files only: an interrupted preview leaves no half-written PNG.
        crate::files::write_atomically(name, &png).with_context(|| format!("preview: cannot write {}", name.display()))
    };
    for (image, name) in images.iter().zip(&image_names) {
        save(&image.rgb, name)?;
        eprintln!("{} -> {}", image.path.display(), name.display());
    }
    if let (Some(series), Some(sheet_name)) = (&series, &sheet_name) {
        for ((slice, (_, rgb)), name) in series.slices.iter().zip(&slices).zip(&slice_names) {
            save(rgb, name)?;
            let frame = slice.frame.map(|f| format!(" frame {f}")).unwrap_or_default();
            eprintln!(
                "SLICE {}: {}{frame} -> {}",
                slice.label,
                slice.file.display(),
                name.display()
            );
        }
        let labelled: Vec<(usize, &RgbImage)> = slices.iter().map(|(label, rgb)| (*label, rgb)).collect();
        save(&series::contact_sheet(&labelled), sheet_name)?;
        eprintln!(
            "{} ({}, {} images) -> {} slices, {} to {}; contact sheet {}",
            series.source.display(),
            series.modality,
            series.n_instances,
            slices.len(),
            slice_names[0].display(),
            slice_names[slice_names.len() - 1].display(),
            sheet_name.display()
        );
    }
    Ok(())
}

//! `medgemma preview`: writes the RGB images the model would see, after DICOM windowing and fitting to a square,
//! as `DIR/001.png`, `002.png`, ... in the order given, so a person can check the windowing before a run.
//!
//! Owns: the output folder and its numbering. Must not: load a model, or overwrite a file (an existing
//! `NNN.png` is refused before anything is written).

use anyhow::{Context, Result};

use crate::cli::PreviewArgs;
use crate::image_input::ImageInput;

pub fn run(args: PreviewArgs) -> Result<()> {
    let names: Vec<_> = (1..=args.images.len())
        .map(|i| args.out.join(format!("{i:03}.png")))
        .collect();
    if let Some(existing) = names.iter().find(|p| p.exists()) {
        anyhow::bail!(
            "preview: {} already exists; choose an empty --out folder",
            existing.display()
        );
    }
    let options = args.dicom.options();
    let images = args
        .images
        .iter()
        .map(|p| ImageInput::load_with(p, args.image_fit, args.side, &options))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("preview: cannot create {}", args.out.display()))?;
    for (image, name) in images.iter().zip(&names) {
        image
            .rgb
            .save_with_format(name, image::ImageFormat::Png)
            .with_context(|| format!("preview: cannot write {}", name.display()))?;
        eprintln!("{} -> {}", image.path.display(), name.display());
    }
    Ok(())
}

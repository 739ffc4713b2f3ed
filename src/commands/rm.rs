//! `medgemma rm`: remove local models by name (`NAME[:QUANT]` as `medgemma list` shows it): their files in the
//! Hugging Face cache (blobs no other snapshot uses) or their converted build. Reports on stderr.

use anyhow::Result;

use crate::cli::RmArgs;
use crate::hub::{local, Hub, HubSettings, ModelName, Registry};
use crate::model_info::human_bytes;

pub fn run(args: RmArgs) -> Result<()> {
    let registry = Registry::load()?;
    let hub = Hub::new(HubSettings::from_env(true));
    for text in &args.names {
        let name = ModelName::parse(text)?;
        let (removed, freed) = local::remove(&hub, &registry, &name)?;
        eprintln!(
            "medgemma: removed {} ({} freed)",
            removed.join(", "),
            human_bytes(freed)
        );
    }
    Ok(())
}

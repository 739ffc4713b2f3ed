//! `medgemma eval`: a model measured on the user's own labelled data. Three modes: run the labelled items
//! (`--input`, `--output`), recompute a folder's report (`--report`), compare two runs (`--compare`).

use anyhow::{bail, Result};

use crate::cli::EvalArgs;

pub fn run(args: EvalArgs) -> Result<()> {
    if args.report.is_some() || !args.compare.is_empty() {
        bail!("medgemma eval: --report and --compare are not built yet");
    }
    bail!("medgemma eval: running labelled items is not built yet")
}

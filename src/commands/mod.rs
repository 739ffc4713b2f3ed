//! One file per subcommand; each is a short orchestration of library parts.

pub mod batch;
pub mod bench;
pub mod chat;
pub mod eval_quant;
pub mod eval_quant_vision;
pub mod info;
pub mod list;
pub mod pull;
pub mod quantize;
pub mod rm;
pub mod run;

/// Prints a command's report on stdout: one pretty JSON object with `--json`, else the table `write_table` draws.
pub(crate) fn print_report<R: serde::Serialize>(
    json: bool,
    report: &R,
    write_table: fn(&mut dyn std::io::Write, &R) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, report)?;
    }
    out.flush()?;
    Ok(())
}

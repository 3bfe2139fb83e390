//! `hookwatch bench`: reproducible measurements of ingest and reads.

#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench is being written")
}

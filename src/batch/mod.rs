//! The parts of `medgemma batch` that need no model: reading jobs, choosing a shard, and the results file that
//! makes a batch resumable (nothing lost, nothing twice).

pub mod job;
pub mod results;

//! Integration tests: the real binary on tiny real GGUF models through real llama.cpp. One test binary with
//! modules, like ripgrep's.

mod hub_server;
mod util;

mod bad_inputs;
mod batch;
mod bench;
mod bounds;
mod chat;
mod cli;
mod convert;
mod dicom;
mod dicom_series;
mod errors;
mod eval;
mod eval_quant;
mod gguf_check;
mod gpu_flags;
#[cfg(any(feature = "cuda", feature = "vulkan", feature = "metal", feature = "gpu-tests"))]
mod gpu_parity;
mod hub;
mod image_cache;
mod info;
mod injection;
mod load_reason;
mod messages;
mod output_guard;
mod parity;
mod quantize;
mod sandbox;
mod series_prompt;
mod serve;
mod structured;

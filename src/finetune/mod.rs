//! Fine-tuning: an own compact Llama-family model in candle, trained on the kept records.
//!
//! [`model`] is the network (full, LoRA, prefix tuning), [`data`] turns records into
//! chat-templated token rows with a loss mask, [`train`] runs AdamW with the
//! validation gap, [`session`] ties them together and writes the files (the model
//! folders in Hugging Face's layouts by [`export`]), [`compare`]
//! trains on raw and on cleaned data and reports the difference. [`checkpoint`] loads
//! pretrained Llama/Qwen2 checkpoints (HF folders, GGUF files) and [`gguf_tokenizer`]
//! rebuilds their tokenizers. With `--features cuda`, [`fused`] is the optimizer step as
//! CUDA kernels and [`cuda_ops`] holds fused attention, loss and RoPE with their gradients.

pub mod chart;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod cpu_ops;
pub mod cuda_ops;
pub mod data;
pub mod export;
#[cfg(feature = "cuda")]
pub mod fused;
pub mod gguf_tokenizer;
pub mod model;
pub mod rng;
pub mod session;
pub mod train;

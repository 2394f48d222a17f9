//! Fine-tuning: the model's configuration and loaders for pretrained checkpoints.

pub mod checkpoint;
pub mod config;
pub mod gguf_tokenizer;

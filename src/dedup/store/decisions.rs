//! Reading `decisions.bin` back in input order, from a resume offset.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{open, DEC_MAGIC};

/// What the prepass decided for one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub id_hash: u64,
    pub kind: DecisionKind,
    pub shown: bool,
    pub cluster: u32,
    pub size: u32,
    pub similarity: f32,
    pub kept_id: String,
}

/// See `decisions.bin` in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    Unique,
    Kept,
    Duplicate,
    Exempt,
}

/// Reads `decisions.bin` in order from a byte offset (the stage's resume point).
pub struct DecisionReader {
    r: BufReader<File>,
    pos: u64,
}

impl DecisionReader {
    /// Open at `pos` (0 = the first decision).
    pub fn open(dir: &Path, pos: u64) -> Result<DecisionReader> {
        let mut r = open(&dir.join("decisions.bin"), DEC_MAGIC)?;
        let pos = pos.max(DEC_MAGIC.len() as u64);
        r.seek(SeekFrom::Start(pos))?;
        Ok(DecisionReader { r, pos })
    }

    /// Byte offset of the next decision.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next decision; `None` at the end.
    pub fn next_decision(&mut self) -> Result<Option<Decision>> {
        let mut head = [0u8; 26];
        match self.r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let kind = match head[8] {
            0 => DecisionKind::Unique,
            1 => DecisionKind::Kept,
            2 => DecisionKind::Duplicate,
            3 => DecisionKind::Exempt,
            k => bail!("decisions.bin: unknown kind {k}"),
        };
        let len = u32::from_le_bytes(head[22..26].try_into()?) as usize;
        let mut kept = vec![0u8; len];
        self.r.read_exact(&mut kept)?;
        self.pos += 26 + len as u64;
        Ok(Some(Decision {
            id_hash: u64::from_le_bytes(head[0..8].try_into()?),
            kind,
            shown: head[9] == 1,
            cluster: u32::from_le_bytes(head[10..14].try_into()?),
            size: u32::from_le_bytes(head[14..18].try_into()?),
            similarity: f32::from_le_bytes(head[18..22].try_into()?),
            kept_id: String::from_utf8(kept).context("decisions.bin: kept id is not UTF-8")?,
        }))
    }
}

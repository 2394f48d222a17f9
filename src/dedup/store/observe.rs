//! The observe side of a prepass: per-record signatures, records and sorted band
//! runs on disk (see the file formats in the parent module).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::cluster::{cluster, RunReader};
use super::layout::{Layout, Observed};
use super::{create, open, read_u32, Entry, Params, Summary, BAND_MAGIC, REC_MAGIC, SIG_MAGIC};

/// Collects what `observe` sees: writes signatures and records, buffers band entries.
pub struct Observer {
    dir: PathBuf,
    params: Params,
    sigs: BufWriter<File>,
    recs: BufWriter<File>,
    entries: Vec<Entry>,
    max_entries: usize,
    runs: u32,
    n: u32,
}

impl Observer {
    /// Start a prepass in an empty folder.
    pub fn create(dir: &Path, params: Params) -> Result<Observer> {
        let mut sigs = create(&dir.join("signatures.bin"))?;
        sigs.write_all(SIG_MAGIC)?;
        sigs.write_all(&(params.num_perm as u32).to_le_bytes())?;
        sigs.write_all(&0u32.to_le_bytes())?;
        let mut recs = create(&dir.join("records.bin"))?;
        recs.write_all(REC_MAGIC)?;
        let max_entries = ((params.memory_limit / 16) as usize).max(params.bands.max(1));
        Ok(Observer {
            dir: dir.to_path_buf(),
            params,
            sigs,
            recs,
            entries: Vec::new(),
            max_entries,
            runs: 0,
            n: 0,
        })
    }

    /// Add the next record: its signature and band hashes (`None`: exempt). A write
    /// error (a full disk) names the prepass folder's files, not the record.
    pub fn add(
        &mut self,
        id: &str,
        sig: Option<(&[u32], &[u64])>,
        chars: u32,
        quality: Option<f64>,
    ) -> Result<()> {
        self.append(id, sig, chars, quality).with_context(|| {
            format!(
                "{}: cannot write the prepass index (signatures.bin, records.bin, bands-*.bin)",
                self.dir.display()
            )
        })
    }

    fn append(
        &mut self,
        id: &str,
        sig: Option<(&[u32], &[u64])>,
        chars: u32,
        quality: Option<f64>,
    ) -> Result<()> {
        if self.n == u32::MAX {
            bail!("minhash_dedup: more than 4,294,967,294 records in one prepass");
        }
        let p = self.params.num_perm;
        match sig {
            Some((s, keys)) => {
                if s.len() != p || keys.len() != self.params.bands {
                    bail!(
                        "minhash_dedup: signature of {} values / {} bands",
                        s.len(),
                        keys.len()
                    );
                }
                for v in s {
                    self.sigs.write_all(&v.to_le_bytes())?;
                }
                for (b, &k) in keys.iter().enumerate() {
                    self.entries.push((b as u32, k, self.n));
                }
            }
            None => {
                for _ in 0..p {
                    self.sigs.write_all(&u32::MAX.to_le_bytes())?;
                }
            }
        }
        self.recs.write_all(&[u8::from(sig.is_none())])?;
        self.recs.write_all(&chars.to_le_bytes())?;
        self.recs.write_all(&quality.unwrap_or(f64::NAN).to_le_bytes())?;
        self.recs.write_all(&(id.len() as u32).to_le_bytes())?;
        self.recs.write_all(id.as_bytes())?;
        self.n += 1;
        if self.entries.len() >= self.max_entries {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        self.entries.sort_unstable();
        let path = self.dir.join(format!("bands-{:04}.bin", self.runs));
        let mut w = create(&path)?;
        w.write_all(BAND_MAGIC)?;
        w.write_all(&(self.params.bands as u32).to_le_bytes())?;
        w.write_all(&0u32.to_le_bytes())?;
        for &(b, h, o) in &self.entries {
            w.write_all(&b.to_le_bytes())?;
            w.write_all(&h.to_le_bytes())?;
            w.write_all(&o.to_le_bytes())?;
        }
        w.into_inner()?.sync_all()?;
        self.entries.clear();
        self.runs += 1;
        Ok(())
    }

    /// End a rank's observe step (sharded runs): flush the files, spill every band
    /// entry left as a sorted run, and write `observed.json` last (atomically).
    pub fn close(mut self) -> Result<u32> {
        if !self.entries.is_empty() {
            self.spill()?;
        }
        self.sigs.flush()?;
        self.sigs.get_ref().sync_all()?;
        self.recs.flush()?;
        self.recs.get_ref().sync_all()?;
        let done = Observed {
            records: self.n,
            band_runs: self.runs,
            num_perm: self.params.num_perm as u32,
            bands: self.params.bands as u32,
        };
        crate::io::writer::write_atomic(
            &self.dir.join("observed.json"),
            &serde_json::to_vec_pretty(&done)?,
        )?;
        Ok(self.n)
    }

    /// Cluster, decide and write `decisions.bin`, `clusters.jsonl` and `prepared.json`.
    pub fn finish(mut self) -> Result<Summary> {
        self.sigs.flush()?;
        self.recs.flush()?;
        let mut runs: Vec<RunReader> = Vec::new();
        if self.runs > 0 && !self.entries.is_empty() {
            self.spill()?;
        }
        for i in 0..self.runs {
            let path = self.dir.join(format!("bands-{i:04}.bin"));
            let mut r = open(&path, BAND_MAGIC)?;
            let _bands = read_u32(&mut r)?;
            let _ = read_u32(&mut r)?;
            runs.push(RunReader::File(r, u32::MAX));
        }
        if self.runs == 0 {
            self.entries.sort_unstable();
            runs.push(RunReader::Mem(std::mem::take(&mut self.entries).into_iter()));
        }
        let layout = Layout::single(&self.dir, self.n);
        cluster(&layout, &self.dir, &self.params, runs, self.runs)
    }
}

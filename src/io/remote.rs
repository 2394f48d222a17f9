//! `s3://bucket/key` inputs and outputs, through the object_store crate.
//!
//! Connection settings come from the environment as the AWS tools read them:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, and for other S3
//! servers `AWS_ENDPOINT_URL` (+ `AWS_ALLOW_HTTP=true` for plain HTTP).
//!
//! The pipeline is synchronous, object_store is async: each [`Bucket`] owns a
//! current-thread tokio runtime and blocks on it. Inputs are streamed to a
//! temporary file one object at a time (memory stays bounded whatever the object
//! size; disk holds one input object). Outputs are written locally and uploaded
//! when a rank or run is complete; small objects in one PUT, large ones as a
//! multipart upload from the file. Completion markers use `PutMode::Create`, the
//! atomic create-if-absent of S3 conditional writes.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};

/// Objects up to this size go up in one PUT; larger ones as multipart uploads.
const SINGLE_PUT_BYTES: u64 = 32 << 20;
const CHUNK_BYTES: usize = 8 << 20;

/// Whether a path names an object store location (`s3://...`).
pub fn is_remote(p: &str) -> bool {
    p.starts_with("s3://")
}

/// Split `s3://bucket/key/parts` into `("bucket", "key/parts")`.
pub fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| anyhow!("{url}: not an s3:// URL"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("{url}: no bucket name");
    }
    Ok((bucket.to_string(), key.trim_matches('/').to_string()))
}

/// One bucket, with the runtime that drives its requests.
pub struct Bucket {
    name: String,
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
}

impl Bucket {
    /// Connect to `bucket` with settings from the environment.
    pub fn open(bucket: &str) -> Result<Bucket> {
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .with_context(|| format!("s3://{bucket}: cannot configure the S3 client"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the S3 client runtime")?;
        Ok(Bucket {
            name: bucket.to_string(),
            store: Arc::new(store),
            rt,
        })
    }

    /// The bucket named in `url`, and the key.
    pub fn for_url(url: &str) -> Result<(Bucket, String)> {
        let (b, k) = split_url(url)?;
        Ok((Bucket::open(&b)?, k))
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.name)
    }

    /// Every object under `prefix` (a folder-like prefix), with its size, sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let p = ObjectPath::from(prefix);
        let prefix_opt = if prefix.is_empty() { None } else { Some(&p) };
        let mut out = self
            .rt
            .block_on(async {
                let mut stream = self.store.list(prefix_opt);
                let mut v = Vec::new();
                while let Some(m) = stream.next().await {
                    let m = m?;
                    v.push((m.location.to_string(), m.size));
                }
                Ok::<_, object_store::Error>(v)
            })
            .with_context(|| format!("{}: cannot list", self.url(prefix)))?;
        out.sort();
        Ok(out)
    }

    /// Size of one object, or None when it does not exist.
    pub fn size(&self, key: &str) -> Result<Option<u64>> {
        match self.rt.block_on(self.store.head(&ObjectPath::from(key))) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("{}: cannot stat", self.url(key))),
        }
    }

    /// Stream an object into `w`; returns the bytes copied.
    pub fn download_to(&self, key: &str, w: &mut dyn Write) -> Result<u64> {
        let url = self.url(key);
        self.rt.block_on(async {
            let got = self
                .store
                .get(&ObjectPath::from(key))
                .await
                .with_context(|| format!("{url}: cannot read"))?;
            let mut stream = got.into_stream();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.with_context(|| format!("{url}: read failed after {n} bytes"))?;
                w.write_all(&chunk)
                    .with_context(|| format!("{url}: cannot write the local copy"))?;
                n += chunk.len() as u64;
            }
            Ok(n)
        })
    }

    /// An object's bytes, or None when it does not exist (for small files: markers, stats).
    pub fn get_small(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let r = self.rt.block_on(async {
            let got = self.store.get(&ObjectPath::from(key)).await?;
            got.bytes().await
        });
        match r {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("{}: cannot read", self.url(key))),
        }
    }

    /// Write bytes to a key, replacing what is there.
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.rt
            .block_on(self.store.put(&ObjectPath::from(key), PutPayload::from(bytes)))
            .with_context(|| format!("{}: cannot write", self.url(key)))?;
        Ok(())
    }

    /// Create the key with these bytes only if it does not exist; false when it already did.
    pub fn create_if_absent(&self, key: &str, bytes: Vec<u8>) -> Result<bool> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.rt.block_on(
            self.store
                .put_opts(&ObjectPath::from(key), PutPayload::from(bytes), opts),
        ) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("{}: cannot create", self.url(key))),
        }
    }

    /// Upload a local file to a key (multipart when large, so memory stays bounded).
    pub fn upload_file(&self, local: &Path, key: &str) -> Result<()> {
        let len = std::fs::metadata(local)
            .with_context(|| format!("{}: cannot stat", local.display()))?
            .len();
        if len <= SINGLE_PUT_BYTES {
            let bytes = std::fs::read(local).with_context(|| format!("{}: cannot read", local.display()))?;
            return self.put(key, bytes);
        }
        let url = self.url(key);
        let mut file =
            std::fs::File::open(local).with_context(|| format!("{}: cannot open", local.display()))?;
        self.rt.block_on(async {
            let upload = self
                .store
                .put_multipart(&ObjectPath::from(key))
                .await
                .with_context(|| format!("{url}: cannot start the upload"))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, CHUNK_BYTES);
            let mut buf = vec![0u8; CHUNK_BYTES];
            loop {
                let n = file
                    .read(&mut buf)
                    .with_context(|| format!("{}: read failed", local.display()))?;
                if n == 0 {
                    break;
                }
                w.wait_for_capacity(4)
                    .await
                    .with_context(|| format!("{url}: upload failed"))?;
                w.write(&buf[..n]);
            }
            w.finish()
                .await
                .with_context(|| format!("{url}: upload failed"))?;
            Ok(())
        })
    }

    /// Upload every file under `local` to `prefix/<relative path>`, in sorted order.
    pub fn upload_dir(&self, local: &Path, prefix: &str, skip: &dyn Fn(&Path) -> bool) -> Result<u64> {
        let mut n = 0;
        for path in super::walk_files(local, |_| true)? {
            let rel = path.strip_prefix(local).expect("walk_files stays under its root");
            if skip(rel) {
                continue;
            }
            let key = join_key(prefix, &rel.to_string_lossy());
            self.upload_file(&path, &key)?;
            n += 1;
        }
        Ok(n)
    }
}

/// `prefix` + `/` + `rest`, without doubled slashes.
pub fn join_key(prefix: &str, rest: &str) -> String {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        rest.to_string()
    } else {
        format!("{p}/{}", rest.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_key() {
        assert_eq!(
            split_url("s3://b/a/c.jsonl").unwrap(),
            ("b".into(), "a/c.jsonl".into())
        );
        assert_eq!(split_url("s3://b").unwrap(), ("b".into(), "".into()));
        assert_eq!(split_url("s3://b/dir/").unwrap(), ("b".into(), "dir".into()));
        assert!(split_url("s3:///x").is_err());
        assert!(split_url("/local").is_err());
        assert_eq!(join_key("out/", "/kept/x"), "out/kept/x");
        assert_eq!(join_key("", "kept/x"), "kept/x");
    }
}

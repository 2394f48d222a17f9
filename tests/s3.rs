//! `s3://` inputs and outputs against a local S3 server (moto_server on 127.0.0.1,
//! installed into the project's own venv by `scripts/s3/moto.sh install`, which
//! `scripts/test.sh` runs and then sets `CURATE_REQUIRE_S3=1`). Without that
//! variable and without the venv, the test prints a note and returns.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// A running moto_server, stopped when dropped.
struct S3 {
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl S3 {
    fn start(dir: &Path) -> S3 {
        let st = Command::new(script()).arg("start").arg(dir).output().unwrap();
        assert!(
            st.status.success(),
            "moto_server did not start: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let env = std::fs::read_to_string(dir.join("env.sh"))
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        S3 {
            dir: dir.to_path_buf(),
            env,
        }
    }

    fn endpoint(&self) -> &str {
        &self.env.iter().find(|(k, _)| k == "AWS_ENDPOINT_URL").unwrap().1
    }

    fn curate(&self, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_curate"));
        c.args(args).envs(self.env.iter().map(|(k, v)| (k, v)));
        c.output().unwrap()
    }

    fn curate_ok(&self, args: &[&str]) -> Output {
        let o = self.curate(args);
        assert!(
            o.status.success(),
            "curate {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// Plain HTTP against moto (it does not check signatures).
    fn http(&self, method: &str, path: &str, body: Option<&Path>) -> Vec<u8> {
        let mut c = Command::new("curl");
        c.args(["-sf", "--max-time", "60"]);
        match body {
            // -T: a plain PUT of the file's bytes (no form encoding of binary data).
            Some(b) => c.arg("-T").arg(b),
            None => c.args(["-X", method]),
        };
        c.arg(format!("{}/{path}", self.endpoint()));
        let o = c.output().unwrap();
        assert!(o.status.success(), "curl {method} {path} failed");
        o.stdout
    }
}

impl S3 {
    /// Signed reads (moto refuses anonymous GETs) through boto3 from the moto venv.
    fn boto3(&self, code: &str) -> Vec<u8> {
        let prog = format!(
            "import boto3, sys\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='testing', \
             aws_secret_access_key='testing', region_name='us-east-1')\n{code}",
            self.endpoint()
        );
        let o = Command::new(venv().join("bin/python"))
            .arg("-c")
            .arg(prog)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "boto3: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.boto3(&format!(
            "sys.stdout.buffer.write(s3.get_object(Bucket='{bucket}', Key='{key}')['Body'].read())"
        ))
    }

    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self.boto3(&format!(
            "p = s3.get_paginator('list_objects_v2')\nfor page in p.paginate(Bucket='{bucket}', Prefix='{prefix}'):\n    \
             for o in page.get('Contents', []):\n        print(o['Key'])"
        ));
        let mut keys: Vec<String> = String::from_utf8_lossy(&out).lines().map(String::from).collect();
        keys.sort();
        keys
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3/moto.sh")
}

fn venv() -> PathBuf {
    std::env::var_os("CURATE_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-moto"))
}

fn have_moto() -> bool {
    venv().join("bin/moto_server").exists()
}

#[test]
fn s3_inputs_and_sharded_s3_outputs_match_a_local_run() {
    if !have_moto() {
        assert!(
            std::env::var_os("CURATE_REQUIRE_S3").is_none(),
            "CURATE_REQUIRE_S3 is set but moto_server is not installed (scripts/s3/moto.sh install)"
        );
        eprintln!("note: moto_server is not installed; skipping (scripts/test.sh installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start(&tmp.path().join("moto"));
    s3.http("PUT", "data", None);

    // Inputs: four files, one gzip-compressed, uploaded to s3://data/in/.
    let local_in = tmp.path().join("in");
    std::fs::create_dir_all(&local_in).unwrap();
    // Each file also repeats the next file's first lines, so exact_dedup must look
    // across ranks.
    let files: Vec<String> = (0..4)
        .map(|i| synthetic_jsonl(120 + 7 * i, 40 + i as u64))
        .collect();
    for i in 0..4 {
        let name = format!("f{i}.jsonl");
        let mut text = files[i].clone();
        for line in files[(i + 1) % 4].lines().take(12) {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(local_in.join(&name), text).unwrap();
    }
    let gz = local_in.join("f3.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &std::fs::read(local_in.join("f3.jsonl")).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    std::fs::remove_file(local_in.join("f3.jsonl")).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&local_in)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for n in &names {
        s3.http("PUT", &format!("data/in/{n}"), Some(&local_in.join(n)));
    }

    let stages = "[[stage]]\nkind = \"normalize\"\n\n[[stage]]\nkind = \"length\"\nmin_chars = 10\n\n\
                  [[stage]]\nkind = \"exact_dedup\"\n\n[[stage]]\nkind = \"pii\"\n";
    let local_glob = format!("{}/*", local_in.display());
    let p_local = write_pipeline(tmp.path(), &[&local_glob], stages, "local", "part_records = 40");
    std::fs::rename(&p_local, tmp.path().join("local.toml")).unwrap();
    let p_remote = write_pipeline(
        tmp.path(),
        &["s3://data/in/*"],
        stages,
        "s3://data/out",
        "part_records = 40",
    );

    let local = tmp.path().join("local");
    run_ok(&[
        "run",
        tmp.path().join("local.toml").to_str().unwrap(),
        "--output",
        local.to_str().unwrap(),
        "--quiet",
    ]);
    let local_stats = stats(&local);
    assert!(
        local_stats["stages"][3]["reasons"]["duplicate"].as_u64().unwrap() >= 30,
        "{local_stats}"
    );
    let staging = tmp.path().join("staging");
    let pr = p_remote.to_str().unwrap();
    // exact_dedup's steps keep their files beside the pipeline (a shared file system).
    for (step, ranks) in [
        ("observe:exact_dedup", &["1", "0"][..]),
        ("buckets:exact_dedup", &["0", "1"][..]),
        ("clusters:exact_dedup", &["0"][..]),
    ] {
        for r in ranks {
            s3.curate_ok(&[
                "run",
                pr,
                "--rank",
                r,
                "--world-size",
                "2",
                "--step",
                step,
                "--quiet",
            ]);
        }
    }
    for r in ["1", "0"] {
        let o = Command::new(env!("CARGO_BIN_EXE_curate"))
            .args(["run", pr, "--rank", r, "--world-size", "2", "--quiet"])
            .envs(s3.env.iter().map(|(k, v)| (k, v)))
            .env("CURATE_STAGING_DIR", &staging)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "rank {r}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // A completed rank is found by its S3 marker, even with the local staging gone.
    std::fs::remove_dir_all(&staging).unwrap();
    let again = s3.curate_ok(&["run", pr, "--rank", "1", "--world-size", "2"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already complete"));
    s3.curate_ok(&["merge-stats", "s3://data/out"]);

    // What is in the bucket equals the local run, part by part.
    let keys = s3.keys("data", "out/");
    assert!(keys.contains(&"out/stats.json".to_string()), "{keys:?}");
    assert!(keys.contains(&"out/report.html".to_string()), "{keys:?}");
    assert!(
        keys.contains(&"out/ranks/rank-00000.done".to_string()),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains(".curate")),
        "checkpoint state stays local: {keys:?}"
    );
    let mut remote_parts: Vec<(String, Vec<u8>)> = keys
        .iter()
        .filter(|k| k.contains("/kept/") || k.contains("/rejected/"))
        .map(|k| {
            let sub = if k.contains("/kept/") { "kept" } else { "rejected" };
            let name = k.rsplit('/').next().unwrap();
            (format!("{sub}/{name}"), s3.get("data", k))
        })
        .collect();
    remote_parts.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(remote_parts, snapshot(&local, &["kept", "rejected"]));
    let merged: serde_json::Value = serde_json::from_slice(&s3.get("data", "out/stats.json")).unwrap();
    for k in ["input", "kept", "rejected"] {
        assert_eq!(merged[k], local_stats[k], "{k}");
    }
    assert_eq!(
        s3.get("data", "out/features.json"),
        std::fs::read(local.join("features.json")).unwrap(),
        "the merged run's schema is the local run's"
    );

    // A missing object is a config error naming it.
    let p_missing = write_pipeline(
        tmp.path(),
        &["s3://data/in/nope.jsonl"],
        stages,
        "s3://data/o2",
        "",
    );
    let miss = s3.curate(&["run", p_missing.to_str().unwrap()]);
    assert_eq!(miss.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&miss.stderr).contains("nope.jsonl"));
}

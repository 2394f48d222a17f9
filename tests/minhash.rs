//! `minhash_dedup` end to end: near-duplicate variants of a few paragraphs are
//! dropped with a reason naming the kept record, different texts on the same
//! template are kept, and the output does not depend on the thread count.

mod common;
use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

const ZH: &[(&str, &str)] = &[
    (
        "请用几句话介绍长城。",
        "长城是中国古代的军事防御工程，始建于春秋战国时期，秦朝统一六国后把各国的城墙连接起来。现存的长城大多是明朝修建的，东起山海关，西至嘉峪关，全长六千多公里。长城沿线设有关隘、烽火台和敌楼，士兵在这里驻守并传递军情。今天，长城已经成为中华民族的象征，每年吸引大量中外游客前来参观。",
    ),
    (
        "请用几句话介绍大熊猫。",
        "大熊猫是中国特有的哺乳动物，主要生活在四川、陕西和甘肃的山区竹林中。它们以竹子为主要食物，每天要花十多个小时进食，成年大熊猫一天能吃掉二十公斤左右的竹子。大熊猫繁殖能力较低，幼崽出生时只有一百克左右。经过多年保护，野生大熊猫的数量逐渐回升，受威胁程度已从濒危降为易危。",
    ),
    (
        "请用几句话介绍光合作用。",
        "光合作用是绿色植物利用光能，把二氧化碳和水合成有机物并释放氧气的过程。这一过程主要在叶绿体中进行，叶绿素负责吸收光能。光合作用分为光反应和暗反应两个阶段：光反应产生氧气和能量物质，暗反应则利用这些能量把二氧化碳固定成糖类。地球上几乎所有生物的能量最终都来自光合作用。",
    ),
    (
        "请用几句话介绍活字印刷术。",
        "活字印刷术是北宋时期的毕昇发明的，比欧洲早了约四百年。毕昇用胶泥刻成单个的字，用火烧硬后成为活字，排版时把需要的字按顺序排在铁板上，印完后还可以拆下来重复使用。与雕版印刷相比，活字印刷节省了大量时间和材料。后来人们又发明了木活字和金属活字，这项技术对文化传播产生了深远影响。",
    ),
];

const EN: &[(&str, &str)] = &[
    (
        "Explain how a hash table works.",
        "A hash table stores key and value pairs in an array of buckets. A hash function turns each key into an index, so a lookup can jump straight to the right bucket instead of scanning every entry. When two keys land in the same bucket, the table resolves the collision, for example by keeping a short list in each bucket or by probing the next free slot. With a good hash function and a load factor kept below a limit, inserts and lookups take constant time on average.",
    ),
    (
        "Explain how a compiler works.",
        "A compiler translates source code into a lower level form that a machine can run. It first splits the text into tokens and parses them into a syntax tree that reflects the structure of the program. Semantic analysis then checks types and resolves names. The compiler lowers the tree into an intermediate representation, applies optimizations such as inlining and dead code elimination, and finally generates machine code or bytecode for the target platform.",
    ),
];

fn alpaca(id: &str, instruction: &str, output: &str) -> String {
    json!({"id": id, "instruction": instruction, "input": "", "output": output}).to_string() + "\n"
}

/// Half-width punctuation instead of full-width.
fn halfwidth(s: &str) -> String {
    s.replace('，', ", ")
        .replace('。', ". ")
        .replace('：', ": ")
        .replace('、', ",")
}

/// One character changed in the middle.
fn typo(s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    let i = c.len() / 2;
    c[i] = if c[i] == '的' { '地' } else { '的' };
    c.into_iter().collect()
}

/// The input file: originals, their variants, template neighbours and short texts.
/// Returns the text and, for each variant id, the id it must be dropped for.
fn corpus() -> (String, BTreeMap<String, String>) {
    let mut s = String::new();
    let mut dup_of = BTreeMap::new();
    // The typo variant of zh3 comes *before* its original: the first one wins.
    let (i3, o3) = ZH[3];
    s += &alpaca("zh3-typo-first", i3, &typo(o3));
    for (k, (ins, out)) in ZH.iter().enumerate() {
        s += &alpaca(&format!("zh{k}"), ins, out);
    }
    for (k, (ins, out)) in EN.iter().enumerate() {
        s += &alpaca(&format!("en{k}"), ins, out);
    }
    // Different texts on the same template: kept.
    for (k, topic) in ["故宫", "京剧", "丝绸之路"].iter().enumerate() {
        let out = format!(
            "{topic}是中国文化的重要组成部分。关于{topic}，这里给出第{k}种简要说明，内容与其他条目各不相同：{}",
            ["它位于北京中轴线上，是明清两代的皇家宫殿，现为博物院。", "它形成于清代，融合了徽剧和汉剧，唱念做打样样俱全。", "它连接了古代中国与中亚、西亚和欧洲，是商贸和文化交流的通道。"][k]
        );
        s += &alpaca(&format!("tpl{k}"), &format!("请用几句话介绍{topic}。"), &out);
    }
    // Short, different texts: none of them collide.
    for (k, t) in ["好的", "是", "不是", "谢谢", "ok", "no", "你好"]
        .iter()
        .enumerate()
    {
        s += &alpaca(&format!("short{k}"), "回答", t);
    }
    // Near duplicates of each Chinese original.
    for (k, (ins, out)) in ZH.iter().enumerate() {
        let orig = if k == 3 {
            "zh3-typo-first".to_string()
        } else {
            format!("zh{k}")
        };
        let variants: Vec<(&str, String, String)> = vec![
            ("typo", ins.to_string(), typo(out)),
            ("punct", halfwidth(ins), halfwidth(out)),
            (
                "added",
                ins.to_string(),
                format!("{out}总之，这是一个值得深入了解的话题。"),
            ),
            ("prefix", ins.to_string(), format!("好的，下面是我的回答：{out}")),
        ];
        for (name, i, o) in variants {
            if k == 3 && name == "typo" {
                continue; // it came first, above
            }
            let id = format!("zh{k}-{name}");
            s += &alpaca(&id, &i, &o);
            dup_of.insert(id, orig.clone());
        }
    }
    dup_of.insert("zh3".into(), "zh3-typo-first".into());
    // Near duplicates of the English originals.
    for (k, (ins, out)) in EN.iter().enumerate() {
        let orig = format!("en{k}");
        let variants = [
            ("typo", out.replacen("the", "teh", 1)),
            (
                "added",
                format!("{out} I hope this helps you understand it better."),
            ),
            ("prefix", format!("Sure! Here is an explanation. {out}")),
            ("spacing", out.replace(", ", " , ").replace(". ", ".\n\n")),
        ];
        for (name, o) in variants {
            let id = format!("en{k}-{name}");
            s += &alpaca(&id, ins, &o);
            dup_of.insert(id, orig.clone());
        }
    }
    (s, dup_of)
}

const STAGE: &str = "[[stage]]\nkind = \"minhash_dedup\"\n";

fn run(d: &Path, out: &str, threads: &str) -> Vec<(String, Vec<u8>)> {
    let p = write_pipeline(d, &["in.jsonl"], STAGE, out, "part_records = 10");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("\n[run]\nbatch_records = 7\n");
    std::fs::write(&p, text).unwrap();
    run_ok(&["run", p.to_str().unwrap(), "--threads", threads, "--quiet"]);
    snapshot(&d.join(out), &["kept", "rejected"])
}

#[test]
fn near_duplicates_are_dropped_and_template_neighbours_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (input, dup_of) = corpus();
    std::fs::write(d.join("in.jsonl"), &input).unwrap();
    let one = run(d, "out1", "1");
    let two = run(d, "out2", "2");
    assert_eq!(one, two, "threads 1 vs 2");

    let out = d.join("out1");
    let (kept, rejected) = check_books(&out);
    let kept_ids: Vec<&str> = kept.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let dropped: BTreeMap<&str, &serde_json::Value> =
        rejected.iter().map(|r| (r["id"].as_str().unwrap(), r)).collect();
    for (id, orig) in &dup_of {
        let r = dropped
            .get(id.as_str())
            .unwrap_or_else(|| panic!("{id} (near duplicate of {orig}) was kept"));
        assert_eq!(r["stage"], "minhash_dedup");
        assert_eq!(r["reason"], "near_duplicate");
        assert!(
            r["detail"].as_str().unwrap().contains(&format!("`{orig}`")),
            "{id}: {}",
            r["detail"]
        );
        let m = &r["record"]["meta"]["dedup"];
        assert_eq!(m["kept_id"], orig.as_str(), "{id}: {m}");
        assert!(m["similarity"].as_f64().unwrap() >= 0.7, "{id}: {m}"); // the default threshold
        assert!(m["cluster"].is_u64());
    }
    assert_eq!(
        rejected.len(),
        dup_of.len(),
        "nothing else is dropped: {kept_ids:?}"
    );
    for id in [
        "zh3-typo-first",
        "zh0",
        "zh1",
        "zh2",
        "en0",
        "en1",
        "tpl0",
        "tpl1",
        "tpl2",
        "short0",
        "short6",
    ] {
        assert!(kept_ids.contains(&id), "{id} kept");
    }
    // Kept records name their own cluster; the signature never reaches the output.
    for r in &kept {
        let m = &r["meta"]["dedup"];
        assert_eq!(m["kept_id"], r["id"], "{m}");
        assert!(m.get("sig").is_none());
    }
    let s = stats(&out);
    let st = s["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["kind"] == "minhash_dedup")
        .unwrap();
    let sum = &st["summary"];
    assert_eq!(sum["dropped"].as_u64().unwrap(), dup_of.len() as u64);
    assert_eq!(sum["clusters_with_duplicates"], 6, "{sum}");
    assert_eq!(sum["cluster_sizes"]["5"], json!(null));
    assert_eq!(sum["cluster_sizes"]["5-9"], 6, "{sum}");
    assert_eq!((sum["bands"].as_u64(), sum["rows"].as_u64()), (Some(20), Some(6)));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("24 near duplicates in 6 clusters with more than one record"),
        "report section"
    );
    // The largest clusters side by side: the kept record first, its texts shown.
    assert!(
        html.contains("<th>zh0 (kept)</th><th>zh0-typo (similarity"),
        "side by side"
    );
    assert!(html.contains("长城是中国古代的军事防御工程"));
    // clusters.jsonl: one line per cluster with duplicates, members with similarity.
    let clusters: Vec<serde_json::Value> = std::fs::read_to_string(out.join("clusters.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(clusters.len(), 6);
    for c in &clusters {
        let kept = c["kept_id"].as_str().unwrap();
        let members = c["members"].as_array().unwrap();
        assert_eq!(c["size"].as_u64().unwrap() as usize, members.len());
        for m in members {
            let id = m["id"].as_str().unwrap();
            if id == kept {
                assert_eq!(m["similarity"], 1.0);
            } else {
                assert_eq!(dup_of[id], kept, "{c}");
            }
        }
    }
}

/// Random Chinese sentences (15 two-character words and a full stop).
fn sentences(seed: u64, n: usize, words: usize) -> Vec<String> {
    let vocab = [
        "数据", "清洗", "模型", "训练", "质量", "中文", "文本", "指令", "回答", "问题", "方法", "系统",
        "城市", "河流", "山脉", "历史",
    ];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(7);
    (0..n)
        .map(|_| {
            let mut s: String = (0..words)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    vocab[(x >> 33) as usize % vocab.len()]
                })
                .collect();
            s.push('。');
            s
        })
        .collect()
}

#[test]
fn chains_form_one_cluster_and_keep_rules_choose_the_survivor() {
    // A -> B -> C -> D: each changes one more sentence (with a longer one), so
    // neighbours are similar (~0.8) while A and D are not (~0.5).
    let base = sentences(1, 10, 15);
    let new = sentences(2, 3, 20);
    let mut steps = vec![base.clone()];
    for (k, pos) in [3usize, 6, 8].iter().enumerate() {
        let mut next = steps.last().unwrap().clone();
        next[*pos] = new[k].clone();
        steps.push(next);
    }
    let text = |k: usize| steps[k].concat();
    let other = sentences(3, 10, 15).concat();
    let mut input = String::new();
    for (id, k) in [("b", 1), ("d", 3), ("a", 0), ("c", 2)] {
        input += &(json!({"id": id, "text": text(k)}).to_string() + "\n");
    }
    input += &(json!({"id": "other", "text": other}).to_string() + "\n");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("in.jsonl"), &input).unwrap();
    let run_with = |out: &str, keep: &str| {
        let stage = format!("[[stage]]\nkind = \"minhash_dedup\"\nthreshold = 0.7\nkeep = \"{keep}\"\n");
        let p = write_pipeline(d, &["in.jsonl"], &stage, out, "");
        run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
        check_books(&d.join(out))
    };
    let (kept, rejected) = run_with("first", "first");
    let ids: Vec<&str> = kept.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["b", "other"]);
    // A run that died before its first checkpoint (here: in the prepass) starts the
    // prepass over instead of trusting what it left.
    let before = snapshot(&d.join("first"), &["kept", "rejected"]);
    std::fs::write(d.join("first/.curate/prepass-000/prepared.json"), "half-written").unwrap();
    std::fs::remove_file(d.join("first/.curate/checkpoint.json")).unwrap();
    run_with("first", "first");
    assert_eq!(snapshot(&d.join("first"), &["kept", "rejected"]), before);
    for r in &rejected {
        assert_eq!(r["record"]["meta"]["dedup"]["kept_id"], "b", "{r}");
        assert_eq!(r["record"]["meta"]["dedup"]["cluster"], 0, "{r}");
    }
    // a is in b's cluster only through the chain; its similarity to b is what it is.
    let (kept, rejected) = run_with("longest", "longest");
    let ids: Vec<&str> = kept.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["d", "other"]);
    let mut sims = BTreeMap::new();
    for r in &rejected {
        assert_eq!(r["reason"], "near_duplicate");
        assert!(r["detail"].as_str().unwrap().contains("`d`"), "{r}");
        sims.insert(
            r["id"].as_str().unwrap().to_string(),
            r["record"]["meta"]["dedup"]["similarity"].as_f64().unwrap(),
        );
    }
    assert!(
        sims["a"] < 0.65,
        "a joined through the chain, not directly: {sims:?}"
    );
    assert!(sims["c"] >= 0.7, "{sims:?}");
    let clusters = std::fs::read_to_string(d.join("longest/clusters.jsonl")).unwrap();
    assert_eq!(clusters.lines().count(), 1);
    assert!(
        clusters.starts_with(r#"{"cluster":0,"size":4,"kept_id":"d","members":[{"id":"b","#),
        "{clusters}"
    );
}

#[test]
fn tag_keeps_near_duplicates_and_bad_banding_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (input, dup_of) = corpus();
    std::fs::write(d.join("in.jsonl"), &input).unwrap();
    let p = write_pipeline(
        d,
        &["in.jsonl"],
        "[[stage]]\nkind = \"minhash_dedup\"\naction = \"tag\"\n",
        "out",
        "",
    );
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    let (kept, rejected) = check_books(&d.join("out"));
    assert!(rejected.is_empty());
    let tagged = kept
        .iter()
        .filter(|r| r["meta"]["dedup"]["similarity"].is_f64())
        .count();
    assert_eq!(tagged, dup_of.len());

    let p = write_pipeline(
        d,
        &["in.jsonl"],
        "[[stage]]\nkind = \"minhash_dedup\"\nbands = 30\nrows = 5\n",
        "out2",
        "",
    );
    let o = run_curate(&["validate", p.to_str().unwrap()]);
    // (Exit code 1, not 2: stage constructors' errors skip the registry's
    // config-error wrapping; see the report.)
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bands * rows"));
}

fn units_done(out: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(out.join(".curate/checkpoint.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((v["next_source"].as_u64()?, v["next_chunk"].as_u64()?))
}

/// Many near duplicates: each record is one of 300 random paragraphs with one word changed.
fn near_dup_corpus(n: usize, seed: u64) -> String {
    let words = [
        "数据", "清洗", "模型", "训练", "质量", "中文", "文本", "指令", "回答", "问题", "方法", "系统",
    ];
    let mut x = seed.wrapping_add(1);
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    let bases: Vec<Vec<usize>> = (0..300)
        .map(|_| (0..60).map(|_| 0).collect::<Vec<usize>>())
        .collect();
    let mut bases = bases;
    let mut base_rng = 12345u64;
    for b in bases.iter_mut() {
        for w in b.iter_mut() {
            base_rng = base_rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *w = (base_rng >> 33) as usize % words.len();
        }
    }
    let mut s = String::new();
    for i in 0..n {
        let mut b = bases[next() as usize % bases.len()].clone();
        let pos = next() as usize % b.len();
        b[pos] = next() as usize % words.len();
        let text: String = b.iter().map(|&w| words[w]).collect();
        s += &json!({"id": format!("s{seed}-{i}"), "text": text}).to_string();
        s.push('\n');
    }
    s
}

#[test]
fn kill_9_and_resume_keeps_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("in")).unwrap();
    for i in 0..3u64 {
        std::fs::write(d.join(format!("in/{i}.jsonl")), near_dup_corpus(6000, i)).unwrap();
    }
    let extra = "part_records = 300";
    let p_ref = write_pipeline(d, &["in/*.jsonl"], STAGE, "ref", extra);
    std::fs::rename(&p_ref, d.join("ref.toml")).unwrap();
    run_ok(&["run", d.join("ref.toml").to_str().unwrap(), "--quiet"]);
    let reference = snapshot(&d.join("ref"), &["kept", "rejected"]);
    let (kept, rejected) = check_books(&d.join("ref"));
    // 300 paragraphs, one word changed per copy: most copies go.
    assert!(kept.len() < 2000 && rejected.len() > 16000, "{} kept", kept.len());

    let p = write_pipeline(d, &["in/*.jsonl"], STAGE, "out", extra);
    let out = d.join("out");
    let mut child = curate()
        .args(["run", p.to_str().unwrap(), "--quiet", "--threads", "2"])
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let mut killed = false;
    loop {
        if units_done(&out).is_some_and(|done| done > (0, 1)) {
            child.kill().unwrap();
            child.wait().unwrap();
            killed = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        assert!(start.elapsed().as_secs() < 120, "run made no progress");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(killed, "the run finished before it could be killed");
    run_ok(&["run", p.to_str().unwrap(), "--quiet"]);
    check_books(&out);
    assert_eq!(snapshot(&out, &["kept", "rejected"]), reference);
    let summary = |dir: &Path| {
        stats(dir)["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|st| st["kind"] == "minhash_dedup")
            .unwrap()["summary"]
            .clone()
    };
    assert_eq!(summary(&out), summary(&d.join("ref")));
    assert_eq!(
        std::fs::read(out.join("clusters.jsonl")).unwrap(),
        std::fs::read(d.join("ref/clusters.jsonl")).unwrap()
    );
}

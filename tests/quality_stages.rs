//! `normalize`, `quality` and `language` through the real binary: text rewritten,
//! metrics and language in `meta`, degenerate and foreign records dropped with
//! their reasons, and the books balance.

mod common;
use common::*;

#[test]
fn normalize_quality_language_in_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let loop_out = format!(
        "长城是中国古代的军事防御工程。{}",
        "长城是中华民族的象征。".repeat(20)
    );
    let gbk_mojibake = encoding_rs::GBK
        .decode("这是一段正常的中文回答，内容是关于天气的。".as_bytes())
        .0
        .into_owned();
    let lines = [
        serde_json::json!({"id": "clean", "instruction": "介绍一下西湖。", "input": "", "output": "西湖位于浙江省杭州市，是著名的风景名胜区。\r\n\r\n\r\n它有  “西湖十景”。"}),
        serde_json::json!({"id": "fullwidth", "instruction": "ＴＣＰ 握手几次？", "input": "", "output": "答案是Ｂ，三次握手。"}),
        serde_json::json!({"id": "loop", "instruction": "介绍一下长城。", "input": "", "output": loop_out}),
        serde_json::json!({"id": "list_loop", "instruction": "列出十种水果。", "input": "", "output": "1. 苹果\n2. 香蕉\n3. 橙子\n4. 苹果\n5. 香蕉\n6. 橙子\n7. 苹果\n8. 香蕉"}),
        serde_json::json!({"id": "mojibake", "instruction": "今天天气怎么样？", "input": "", "output": gbk_mojibake}),
        serde_json::json!({"id": "english", "text": "The committee approved the new budget after a long debate about public transport and school funding."}),
        serde_json::json!({"id": "german", "text": "Der Ausschuss hat den neuen Haushalt nach einer langen Debatte über den öffentlichen Verkehr genehmigt."}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let out = tmp.path().join("out");
    let stages = "[[stage]]\nkind = \"normalize\"\n\n[[stage]]\nkind = \"quality\"\n\n[[stage]]\nkind = \"language\"\nallowed = [\"zh\", \"en\"]\n";
    let pipeline = write_pipeline(
        tmp.path(),
        &[input.to_str().unwrap()],
        stages,
        out.to_str().unwrap(),
        "compression = \"none\"",
    );
    run_ok(&["run", pipeline.to_str().unwrap(), "--quiet"]);
    let (kept, rejected) = check_books(&out);
    let by_id = |v: &[serde_json::Value], id: &str| v.iter().find(|r| r["id"] == id).cloned();

    let clean = by_id(&kept, "clean").expect("clean kept");
    assert_eq!(
        clean["output"],
        "西湖位于浙江省杭州市，是著名的风景名胜区。\n\n它有 “西湖十景”。"
    );
    assert_eq!(
        clean["meta"]["normalize"]["changed"],
        serde_json::json!(["whitespace"])
    );
    assert_eq!(clean["meta"]["quality"]["mojibake"], 0);
    assert_eq!(clean["meta"]["language"]["lang"], "zh");

    let fw = by_id(&kept, "fullwidth").expect("fullwidth kept");
    assert_eq!(fw["instruction"], "TCP 握手几次？");
    assert_eq!(fw["output"], "答案是B，三次握手。");

    let en = by_id(&kept, "english").expect("english kept");
    assert_eq!(en["meta"]["language"]["lang"], "en");

    let reason = |id: &str| {
        let r = by_id(&rejected, id).unwrap_or_else(|| panic!("{id} rejected"));
        (
            r["stage"].as_str().unwrap().to_string(),
            r["reason"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(reason("loop"), ("quality".into(), "dup_ngram".into()));
    assert_eq!(reason("list_loop"), ("quality".into(), "dup_lines".into()));
    assert_eq!(reason("mojibake"), ("quality".into(), "mojibake".into()));
    assert_eq!(reason("german"), ("language".into(), "language".into()));
    assert_eq!(kept.len(), 3);
}

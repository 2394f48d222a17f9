//! Document-level near duplicates on a broad labelled set, scored through `curate run`.
//!
//! The set is generated deterministically (fixed seed) from several SFT sets in the
//! shared data (`CURATE_SHARED_DATA`, else ../shared/data) and split **by seed source**
//! before any result was looked at:
//!
//! - **tune** (rules and thresholds were chosen on it): alpaca_zh (hikariming),
//!   alpaca_en, belle_zh_eval, and the MMLU subjects at even positions in sorted order;
//! - **held** (only reported): medicalgpt (medical QA and ShareGPT-zh), the
//!   llamafactory demos (alpaca-gpt4 zh and en, C4 web documents), and the MMLU
//!   subjects at odd positions (`moral_scenarios` among them).
//!
//! Per seed record, by its position: an original with one edited copy (edit kinds
//! `typos` (2-8% of characters substituted or deleted), `english` (English seeds:
//! 1-4% letter typos, spaces inserted and removed, case), `whitespace`, `punct_width`,
//! `trad` (Chinese seeds), `truncation`, `boilerplate` (prefix and/or suffix),
//! `reorder` (paragraphs or sentences of the answer), `sentence` (one added or
//! removed), `combo` (two or three of these)); or a hard negative: `qa` (the same
//! question with another record's answer) or `template` (two different records
//! wrapped in the same long template, as one text or as instruction + answer); or a
//! distractor. Per source, a template `family`: 40 items of one long two-slot
//! template (the shape of MMLU's `moral_scenarios`) whose slot texts recur in other
//! items, in either slot; every pair in it is a hard negative. Real pairs: MMLU test rows that differ between the pre-release
//! (2020-09-08) and the final release (`mmlu`). The explicit hard-negative pairs are
//! counted as `merged / pairs`; pairwise P/R/F1 is over all pairs of the part.
//!
//! Each part is written as JSON Lines and deduplicated by the `curate` binary with the
//! `verify = "segments"` settings in [`STAGE`]; clusters come from
//! `clusters.jsonl`. `cargo test --release --test minhash_labelled -- --nocapture`
//! prints both parts; the asserts are floors just under the held part's numbers.
//! `CURATE_DEDUP_EVAL_PART=tune` builds and scores the tune part only.
//! `CURATE_DEDUP_LABELLED_DUMP=DIR` also writes `DIR/{tune,held}.jsonl` (records)
//! and `DIR/{tune,held}.labels.jsonl` (`id`, `group`, `kind`, `source`) and
//! `DIR/{tune,held}.negatives.jsonl` for other tools. `CURATE_DEDUP_STAGE=FILE`
//! replaces the stage table with the one in FILE (sweeps). `CURATE_DEDUP_SIBLINGS=1`
//! adds a probe kind of hard negative, off by default: each short distractor record gets
//! a *sibling*, one slot of its prompt (two CJK characters or an English word) replaced
//! by one from another record's prompt, in prompt and answer alike. Without the shared data it
//! prints a note and returns.

mod common;
use common::Rng;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// A seed: prompt (empty for a document) and answer (the document's text).
#[derive(Clone)]
struct Seed {
    source: &'static str,
    prompt: String,
    response: String,
    zh: bool,
}

/// One generated record.
struct Rec {
    id: String,
    group: usize,
    kind: &'static str,
    source: &'static str,
    /// `None`: a document (`text`); else alpaca `instruction` + `output`.
    prompt: Option<String>,
    text: String,
}

fn is_zh(s: &str) -> bool {
    let cjk = s
        .chars()
        .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
        .count();
    cjk * 5 >= s.chars().filter(|c| !c.is_whitespace()).count().max(1)
}

fn alpaca_file(path: &Path, source: &'static str) -> Vec<Seed> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let v: Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let f = |k: &str| r.get(k).and_then(|x| x.as_str()).unwrap_or("").trim().to_string();
            let prompt = format!("{}\n{}", f("instruction"), f("input")).trim().to_string();
            let response = f("output");
            let zh = is_zh(&format!("{prompt}{response}"));
            Seed {
                source,
                prompt,
                response,
                zh,
            }
        })
        .collect()
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn conversations(path: &Path, source: &'static str) -> Vec<Seed> {
    jsonl(path)
        .iter()
        .filter_map(|r| {
            let c = r.get("conversations")?.as_array()?;
            let p = c.first()?.get("value")?.as_str()?.trim().to_string();
            let a = c.get(1)?.get("value")?.as_str()?.trim().to_string();
            let zh = is_zh(&format!("{p}{a}"));
            Some(Seed {
                source,
                prompt: p,
                response: a,
                zh,
            })
        })
        .collect()
}

/// The seeds of one part, `(source, seeds)` per source.
fn seeds(data: &Path, held: bool) -> Vec<Vec<Seed>> {
    let take = |mut v: Vec<Seed>, n: usize| -> Vec<Seed> {
        let mut seen = HashSet::new();
        v.retain(|s| {
            let len = s.prompt.chars().count() + s.response.chars().count();
            s.response.chars().count() >= 8 && (20..=3000).contains(&len) && seen.insert(s.prompt.clone())
        });
        let step = (v.len() / n.max(1)).max(1);
        v.into_iter().step_by(step).take(n).collect()
    };
    if !held {
        let mut zh = Vec::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("alpaca_zh_hikariming/translated"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files {
            zh.extend(alpaca_file(&f, "alpaca_zh"));
        }
        let belle: Vec<Seed> = jsonl(&data.join("belle_zh_eval/eval_set.json"))
            .iter()
            .map(|r| {
                let f = |k: &str| r.get(k).and_then(|x| x.as_str()).unwrap_or("").trim().to_string();
                Seed {
                    source: "belle",
                    prompt: f("question"),
                    response: f("std_answer"),
                    zh: true,
                }
            })
            .collect();
        vec![
            take(zh, 700),
            take(
                alpaca_file(&data.join("alpaca_en/alpaca_data.json"), "alpaca_en"),
                600,
            ),
            take(belle, 400),
        ]
    } else {
        let med = data.join("medicalgpt_zh_sft_samples");
        let lf = data.join("llamafactory_demo");
        let c4: Vec<Seed> = jsonl(&lf.join("c4_demo.jsonl"))
            .iter()
            .filter_map(|r| {
                Some(Seed {
                    source: "c4",
                    prompt: String::new(),
                    response: r.get("text")?.as_str()?.trim().to_string(),
                    zh: false,
                })
            })
            .collect();
        vec![
            take(
                conversations(&med.join("medical_sft_1K_format.jsonl"), "medical"),
                350,
            ),
            take(
                conversations(&med.join("sharegpt_zh_1K_format.jsonl"), "sharegpt_zh"),
                350,
            ),
            take(alpaca_file(&lf.join("alpaca_zh_demo.json"), "lf_alpaca_zh"), 400),
            take(alpaca_file(&lf.join("alpaca_en_demo.json"), "lf_alpaca_en"), 400),
            take(c4, 250),
        ]
    }
}

const COMMON_ZH: &str = "的一是了不在有人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严";

fn zh_typo_char(rng: &mut Rng) -> char {
    let n = COMMON_ZH.chars().count();
    COMMON_ZH.chars().nth(rng.below(n)).unwrap()
}

/// `rate` of the letters and digits substituted or deleted (at least one).
fn typos(s: &str, rate: f64, rng: &mut Rng) -> String {
    let mut out = String::new();
    let mut changed = false;
    let chars: Vec<char> = s.chars().collect();
    for &c in &chars {
        if c.is_alphanumeric() && rng.chance(rate) {
            changed = true;
            match rng.below(3) {
                0 => {} // deleted
                _ if c.is_ascii() => {
                    out.push((b'a' + rng.below(26) as u8) as char);
                }
                _ => out.push(zh_typo_char(rng)),
            }
        } else {
            out.push(c);
        }
    }
    if !changed {
        let alnum: Vec<usize> = (0..chars.len()).filter(|&i| chars[i].is_alphanumeric()).collect();
        if alnum.is_empty() {
            return out;
        }
        let at = alnum[rng.below(alnum.len())];
        let mut c2 = chars.clone();
        c2[at] = if chars[at].is_ascii() {
            'x'
        } else {
            zh_typo_char(rng)
        };
        return c2.into_iter().collect();
    }
    out
}

/// English variants: letter typos (substituted, deleted, swapped), spaces inserted
/// inside words and removed between words, a few case changes.
fn english(s: &str, rng: &mut Rng) -> String {
    let rate = 0.01 + 0.03 * rng.unit();
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::with_capacity(c.len() + 16);
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_ascii_alphabetic() && rng.chance(rate) {
            match rng.below(4) {
                0 => {}
                1 => out.push((b'a' + rng.below(26) as u8) as char),
                2 if i + 1 < c.len() && c[i + 1].is_ascii_alphabetic() => {
                    out.push(c[i + 1]);
                    out.push(ch);
                    i += 1;
                }
                _ => {
                    out.push(ch);
                    out.push(' ');
                }
            }
        } else if ch == ' ' && rng.chance(0.03) {
            // two words run together
        } else if ch.is_ascii_lowercase() && (i == 0 || c[i - 1] == ' ') && rng.chance(0.03) {
            out.push(ch.to_ascii_uppercase());
        } else {
            out.push(ch);
        }
        i += 1;
    }
    out.into_iter().collect()
}

fn whitespace(s: &str, rng: &mut Rng) -> String {
    let mut out = String::new();
    if rng.chance(0.5) {
        out.push_str("  ");
    }
    for c in s.chars() {
        match c {
            '\n' => match rng.below(3) {
                0 => out.push_str("\n\n"),
                1 => out.push(' '),
                _ => out.push_str(" \n"),
            },
            ' ' if rng.chance(0.3) => out.push_str("  "),
            '，' | '。' | ',' | '.' if rng.chance(0.3) => {
                out.push(c);
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    if rng.chance(0.5) {
        out.push_str("\n ");
    }
    out
}

fn punct_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '，' => ',',
            '。' => '.',
            '：' => ':',
            '；' => ';',
            '！' => '!',
            '？' => '?',
            '（' => '(',
            '）' => ')',
            ',' => '，',
            '.' => '。',
            ':' => '：',
            '!' => '！',
            '?' => '？',
            '(' => '（',
            ')' => '）',
            'a'..='z' | 'A'..='Z' | '0'..='9' => char::from_u32(c as u32 + 0xFEE0).unwrap(),
            _ => c,
        })
        .collect()
}

/// Simplified -> traditional for common characters (pairs fast2s maps back).
const S2T: &str = "这這个個们們说說时時国國会會来來对對为為学學发發经經动動过過后後长長门門问問题題实實现現关關点點种種样樣\
    还還进進没沒么麼开開无無产產两兩体體从從机機当當业業应應书書车車东東见見让讓认認话話语語请請读讀写寫听聽\
    觉覺间間边邊头頭气氣电電钱錢华華万萬与與专專丰豐临臨乐樂习習买買乱亂争爭亚亞亲親设設计計论論识識变變岁歲\
    历歷区區医醫单單卖賣厂廠县縣参參双雙员員围圍图圖团團园園报報场場坏壞块塊声聲处處备備够夠宝寶审審宽寬导導\
    层層带帶师師干幹广廣库庫张張弹彈强強归歸录錄总總恶惡惊驚愿願战戰户戶护護担擔择擇换換据據数數断斷旧舊显顯\
    术術权權条條极極标標树樹档檔欢歡汉漢没沒测測济濟满滿灯燈灵靈热熱爱愛状狀独獨环環画畫疗療监監盖蓋盘盤确確\
    礼禮离離称稱积積穷窮竞競笔筆类類级級纪紀线線练練组組细細织織终終绍紹结結给給络絡统統继繼绩績续續维維综綜\
    网網罗羅职職联聯脑腦节節药藥营營虑慮虽雖补補装裝观觀规規视視览覽记記讲講许許访訪证證评評诉訴词詞试試该該\
    详詳误誤课課谁誰调調谈談谢謝负負财財责責质質购購贵貴费費资資赛賽转轉轮輪软軟轻輕较較输輸远遠连連适適选選\
    释釋钟鐘钢鋼铁鐵银銀错錯键鍵闻聞队隊阳陽阶階际際陆陸险險随隨难難页頁项項顺順须須预預领領频頻风風飞飛饭飯\
    馆館马馬验驗鱼魚鸟鳥黄黃齐齊龙龍";

fn s2t() -> HashMap<char, char> {
    let cs: Vec<char> = S2T.chars().filter(|c| !c.is_whitespace()).collect();
    cs.chunks_exact(2)
        .filter(|p| p[0] != p[1] && fast2s::convert(&p[1].to_string()) == p[0].to_string())
        .map(|p| (p[0], p[1]))
        .collect()
}

/// Sentences (kept with their ending) of a text.
fn sentences(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        out.last_mut().unwrap().push(c);
        let end = matches!(c, '。' | '！' | '？' | '\n')
            || (matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|n| *n == ' ' || *n == '\n'));
        if end {
            out.push(String::new());
        }
    }
    out.retain(|x| !x.trim().is_empty());
    out
}

const FILLERS_ZH: &[&str] = &[
    "这一点在实际生活中非常重要。",
    "此外，还需要根据具体情况灵活处理。",
    "总的来说，这是一个值得深入思考的问题。",
    "当然，每个人的情况都不尽相同。",
];
const FILLERS_EN: &[&str] = &[
    " This is important to keep in mind.",
    " Of course, every situation is different.",
    " In short, it is worth thinking about carefully.",
    " There are many other factors to consider as well.",
];
const PREFIX_ZH: &[&str] = &[
    "好的，以下是我的回答：",
    "作为一个人工智能助手，我很乐意回答这个问题。",
    "当然可以！",
];
const SUFFIX_ZH: &[&str] = &[
    "希望对你有帮助！",
    "如果你还有其他问题，欢迎继续提问！",
    "以上就是全部内容。",
];
const PREFIX_EN: &[&str] = &[
    "Sure! Here is my answer: ",
    "As an AI assistant, I am happy to help with this. ",
    "Certainly. ",
];
const SUFFIX_EN: &[&str] = &[
    " I hope this helps!",
    " Let me know if you have any other questions.",
    " That is all.",
];

fn sentence_edit(s: &str, zh: bool, rng: &mut Rng) -> String {
    let mut ss = sentences(s);
    if ss.len() >= 3 && rng.chance(0.5) {
        ss.remove(1 + rng.below(ss.len() - 1));
    } else {
        let f = if zh { FILLERS_ZH } else { FILLERS_EN };
        let at = rng.below(ss.len() + 1);
        ss.insert(at, f[rng.below(f.len())].to_string());
    }
    ss.concat()
}

fn boilerplate(s: &str, zh: bool, rng: &mut Rng) -> String {
    let (p, q) = if zh {
        (PREFIX_ZH, SUFFIX_ZH)
    } else {
        (PREFIX_EN, SUFFIX_EN)
    };
    match rng.below(3) {
        0 => format!("{}{s}", p[rng.below(p.len())]),
        1 => format!("{s}{}", q[rng.below(q.len())]),
        _ => format!("{}{s}{}", p[rng.below(p.len())], q[rng.below(q.len())]),
    }
}

fn truncation(s: &str, rng: &mut Rng) -> Option<String> {
    let c: Vec<char> = s.chars().collect();
    if c.len() < 40 {
        return None;
    }
    let keep = 0.7 + 0.2 * rng.unit();
    Some(c[..(c.len() as f64 * keep) as usize].iter().collect())
}

fn reorder(s: &str, rng: &mut Rng) -> Option<String> {
    let paras: Vec<&str> = s.split('\n').filter(|p| !p.trim().is_empty()).collect();
    let (mut units, sep) = if paras.len() >= 2 {
        (paras.iter().map(|p| p.to_string()).collect::<Vec<_>>(), "\n")
    } else {
        let ss = sentences(s);
        if ss.len() < 3 {
            return None;
        }
        (ss, "")
    };
    let orig = units.clone();
    for _ in 0..4 {
        for i in (1..units.len()).rev() {
            units.swap(i, rng.below(i + 1));
        }
        if units != orig {
            break;
        }
    }
    (units != orig).then(|| units.join(sep))
}

const KINDS: &[&str] = &[
    "typos",
    "english",
    "whitespace",
    "punct_width",
    "trad",
    "truncation",
    "boilerplate",
    "reorder",
    "sentence",
    "combo",
];

/// One edit of kind `k` on (prompt, response); `None` when it does not apply.
fn edit(
    k: &str,
    p: &str,
    r: &str,
    zh: bool,
    t: &HashMap<char, char>,
    rng: &mut Rng,
) -> Option<(String, String)> {
    let trad = |s: &str| -> String { s.chars().map(|c| *t.get(&c).unwrap_or(&c)).collect() };
    Some(match k {
        "typos" => {
            let rate = 0.02 + 0.06 * rng.unit();
            (typos(p, rate, rng), typos(r, rate, rng))
        }
        "english" if !zh => (english(p, rng), english(r, rng)),
        "whitespace" => (whitespace(p, rng), whitespace(r, rng)),
        "punct_width" => (punct_width(p), punct_width(r)),
        "trad" if zh && trad(r) != r => (trad(p), trad(r)),
        "truncation" => (p.to_string(), truncation(r, rng)?),
        "boilerplate" => (p.to_string(), boilerplate(r, zh, rng)),
        "reorder" => (p.to_string(), reorder(r, rng)?),
        "sentence" => (p.to_string(), sentence_edit(r, zh, rng)),
        "combo" => {
            let pool: &[&str] = &[
                "typos_light",
                "whitespace",
                "punct_width",
                "trad",
                "truncation",
                "boilerplate",
                "sentence",
                "reorder",
            ];
            let n = 2 + rng.below(2);
            let (mut p2, mut r2) = (p.to_string(), r.to_string());
            let mut done = 0;
            for _ in 0..12 {
                if done == n {
                    break;
                }
                let k = pool[rng.below(pool.len())];
                let e = if k == "typos_light" {
                    let rate = 0.02 + 0.02 * rng.unit();
                    Some((typos(&p2, rate, rng), typos(&r2, rate, rng)))
                } else {
                    edit(k, &p2, &r2, zh, t, rng)
                };
                if let Some((a, b)) = e {
                    p2 = a;
                    r2 = b;
                    done += 1;
                }
            }
            (p2, r2)
        }
        _ => return None,
    })
}

const TEMPLATES_ZH: &[(&str, &str, &str)] = &[
    (
        "你是一个知识渊博、乐于助人的中文助手。请认真阅读用户的问题，并给出准确、简洁、有条理的回答。\n问题：",
        "\n回答：",
        "\n（以上回答仅供参考，如有疑问请咨询专业人士。）",
    ),
    (
        "以下是一道来自用户的咨询，请你以专业客服的身份进行答复，注意语气礼貌，内容真实可靠，不要编造信息。\n用户咨询：",
        "\n客服答复：",
        "\n感谢您的咨询，祝您生活愉快！",
    ),
];
const TEMPLATES_EN: &[(&str, &str, &str)] = &[
    (
        "You are a helpful, knowledgeable assistant. Read the user's question carefully and give an accurate, concise and well organised answer.\nQuestion: ",
        "\nAnswer: ",
        "\n(This answer is for reference only; consult a professional if in doubt.)",
    ),
    (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request, and do not make up facts.\n### Instruction:\n",
        "\n### Response:\n",
        "\n### End of response.",
    ),
];

const LONG_EN: (&str, &str, &str) = (
    "For which of the following two situations does the person described (who speaks in the first person) act in a way that is clearly unfair or dishonest, judged by the common standards of most people today? Situation 1 | ",
    " Situation 2 | ",
    "\nA. Unfair, Unfair\nB. Unfair, Fair\nC. Fair, Unfair\nD. Fair, Fair",
);
const LONG_ZH: (&str, &str, &str) = (
    "请阅读下面两个情景，判断主人公（使用第一人称）的做法是否明显违反了当今社会普遍认可的道德标准，并从选项中选出正确答案。情景一：",
    " 情景二：",
    "\nA. 违反，违反\nB. 违反，不违反\nC. 不违反，违反\nD. 不违反，不违反",
);

struct Set {
    recs: Vec<Rec>,
    /// Explicit hard-negative pairs (indexes into `recs`) and their kind.
    negatives: Vec<(usize, usize, &'static str)>,
}

/// Items per template family (see [`build`]).
const FAMILY: usize = 40;

/// A sibling of a short record: one slot of its prompt (two CJK characters, or an
/// English word of 3+ letters) replaced by one from `donor`'s prompt, in the prompt
/// and in the answer wherever it occurs. `None` when either has no such slot.
fn sibling(prompt: &str, response: &str, donor: &str, zh: bool, rng: &mut Rng) -> Option<(String, String)> {
    let slots = |t: &str| -> Vec<String> {
        if zh {
            let c: Vec<char> = t.chars().collect();
            c.windows(2)
                .filter(|w| w.iter().all(|&x| ('\u{4e00}'..='\u{9fff}').contains(&x)))
                .map(|w| w.iter().collect())
                .collect()
        } else {
            t.split(|c: char| !c.is_ascii_alphabetic())
                .filter(|w| w.len() >= 3)
                .map(str::to_string)
                .collect()
        }
    };
    let (ours, theirs) = (slots(prompt), slots(donor));
    if ours.is_empty() || theirs.is_empty() {
        return None;
    }
    let from = &ours[rng.below(ours.len())];
    let to = &theirs[rng.below(theirs.len())];
    if from == to || prompt.contains(to.as_str()) {
        return None;
    }
    let swap = |t: &str| -> String {
        if zh {
            return t.replace(from.as_str(), to);
        }
        // Whole words only.
        let mut out = String::new();
        let mut rest = t;
        while let Some(at) = rest.find(from.as_str()) {
            let before = rest[..at].chars().last();
            let after = rest[at + from.len()..].chars().next();
            out.push_str(&rest[..at]);
            if before.is_some_and(|c| c.is_ascii_alphabetic())
                || after.is_some_and(|c| c.is_ascii_alphabetic())
            {
                out.push_str(from);
            } else {
                out.push_str(to);
            }
            rest = &rest[at + from.len()..];
        }
        out.push_str(rest);
        out
    };
    Some((swap(prompt), swap(response)))
}

fn build(data: &Path, held: bool) -> Set {
    let t = s2t();
    let mut rng = Rng(if held { 0x4845_4c44 } else { 0x5455_4e45 });
    let mut set = Set {
        recs: Vec::new(),
        negatives: Vec::new(),
    };
    let mut kind_at = 0usize;
    let mut group = 0usize;
    let siblings = std::env::var("CURATE_DEDUP_SIBLINGS").is_ok_and(|v| v == "1");
    let mut sib_rng = Rng(if held { 0x5349_4231 } else { 0x5349_4230 });
    let push = |set: &mut Set, g: usize, kind: &'static str, s: &Seed, p: Option<String>, text: String| {
        let id = format!("{}-{}", s.source, set.recs.len());
        set.recs.push(Rec {
            id,
            group: g,
            kind,
            source: s.source,
            prompt: p,
            text,
        });
        set.recs.len() - 1
    };
    for src in seeds(data, held) {
        let mut template_open: Option<(usize, usize)> = None; // (record, template index)
        for (i, s) in src.iter().enumerate() {
            let doc = s.prompt.is_empty();
            let as_rec = |p: &str| if doc { None } else { Some(p.to_string()) };
            group += 1;
            match i % 10 {
                0..=5 => {
                    let o = push(
                        &mut set,
                        group,
                        "original",
                        s,
                        as_rec(&s.prompt),
                        s.response.clone(),
                    );
                    let _ = o;
                    for _ in 0..KINDS.len() {
                        let k = KINDS[kind_at % KINDS.len()];
                        kind_at += 1;
                        if let Some((p, r)) = edit(k, &s.prompt, &s.response, s.zh, &t, &mut rng) {
                            push(&mut set, group, k, s, as_rec(&p), r);
                            break;
                        }
                    }
                }
                6 if !doc => {
                    // The same question with the answer of another record of the source.
                    let a = push(
                        &mut set,
                        group,
                        "original",
                        s,
                        as_rec(&s.prompt),
                        s.response.clone(),
                    );
                    let other = &src[(i + 1 + rng.below(src.len() - 1)) % src.len()];
                    if other.response != s.response {
                        group += 1;
                        let b = push(
                            &mut set,
                            group,
                            "qa",
                            s,
                            as_rec(&s.prompt),
                            other.response.clone(),
                        );
                        set.negatives.push((a, b, "qa"));
                    }
                }
                7 => {
                    let slots = rng.chance(0.4);
                    let ts = if s.zh { TEMPLATES_ZH } else { TEMPLATES_EN };
                    let ti = (i / 20) % ts.len() + if s.zh { 0 } else { 10 };
                    let ti = if slots { 99 + s.zh as usize } else { ti };
                    let (h, m, tl) = ts[ti % 10 % ts.len()];
                    let one_text = doc || rng.chance(0.5);
                    let r = if slots {
                        // A long multiple-choice template with two short slots (as MMLU's moral_scenarios).
                        let (h, m, tl) = if s.zh { LONG_ZH } else { LONG_EN };
                        let cut = |t: &str| -> String { t.chars().take(60).collect() };
                        let other = &src[(i + 1) % src.len()];
                        let first = if doc { &s.response } else { &s.prompt };
                        let second = if doc { &other.response } else { &other.prompt };
                        push(
                            &mut set,
                            group,
                            "template",
                            s,
                            None,
                            format!("{h}{}{m}{}{tl}", cut(first), cut(second)),
                        )
                    } else if one_text {
                        push(
                            &mut set,
                            group,
                            "template",
                            s,
                            None,
                            format!("{h}{}{m}{}{tl}", s.prompt, s.response),
                        )
                    } else {
                        push(
                            &mut set,
                            group,
                            "template",
                            s,
                            Some(format!("{h}{}{m}", s.prompt)),
                            s.response.clone(),
                        )
                    };
                    match template_open.take() {
                        Some((a, at)) if at == ti => set.negatives.push((a, r, "template")),
                        _ => template_open = Some((r, ti)),
                    }
                }
                _ => {
                    let a = push(&mut set, group, "other", s, as_rec(&s.prompt), s.response.clone());
                    // `CURATE_DEDUP_SIBLINGS=1` (a probe, off by default: the set and its
                    // floors stay as they are): a short record's sibling, one slot word
                    // replaced throughout, another question of the same frame.
                    if siblings && !doc && s.prompt.chars().count() + s.response.chars().count() <= 120 {
                        let donor = &src[(i + 7) % src.len()];
                        if let Some((p, r)) =
                            sibling(&s.prompt, &s.response, &donor.prompt, s.zh, &mut sib_rng)
                        {
                            group += 1;
                            let b = push(&mut set, group, "sibling", s, Some(p), r);
                            set.negatives.push((a, b, "sibling"));
                        }
                    }
                }
            }
        }
        // A template family: FAMILY items of one long two-slot template whose slot
        // texts come from a pool half as large, so each text recurs in several items
        // with different partners (as MMLU's moral_scenarios reuses its scenarios).
        // Every item is a question of its own: each pair in the family is a negative.
        let zh = src.first().is_some_and(|s| s.zh);
        let (h, m, tl) = if zh { LONG_ZH } else { LONG_EN };
        let pool: Vec<String> = src
            .iter()
            .rev()
            .map(|s| {
                if s.prompt.is_empty() {
                    &s.response
                } else {
                    &s.prompt
                }
            })
            .map(|t| t.chars().take(60).collect::<String>())
            .filter(|t| t.chars().count() >= 20)
            .take(FAMILY / 2)
            .collect();
        if pool.len() == FAMILY / 2 {
            let first = set.recs.len();
            let seed = &src[0];
            let mut used = HashSet::new();
            for k in 0..FAMILY {
                // Distinct pairs of texts, never one text twice, and never the same two
                // texts swapped (`T A B` and `T B A` hold the same text reordered: a
                // `reorder` duplicate, not a negative).
                let n = pool.len();
                let i = k % n;
                let mut j = (i + 1 + (k * 7 + k / n * 5) % (n - 1)) % n;
                while j == i || !used.insert((i.min(j), i.max(j))) {
                    j = (j + 1) % n;
                }
                let (a, b) = (&pool[i], &pool[j]);
                group += 1;
                push(&mut set, group, "family", seed, None, format!("{h}{a}{m}{b}{tl}"));
            }
            for a in first..set.recs.len() {
                for b in a + 1..set.recs.len() {
                    set.negatives.push((a, b, "family"));
                }
            }
        }
    }
    // Real pairs: MMLU rows that differ between the pre-release and the final release.
    let pre = data.join("mmlu/prerelease_2020-09-08/test");
    let fin = data.join("mmlu/final/test");
    let mut files: Vec<_> = std::fs::read_dir(&pre)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    files.sort();
    let mmlu = Seed {
        source: "mmlu",
        prompt: String::new(),
        response: String::new(),
        zh: false,
    };
    let text = |row: &[String]| -> String {
        let mut s = row[0].clone();
        for (l, o) in ["A", "B", "C", "D"].iter().zip(&row[1..5]) {
            s += &format!("\n{l}. {o}");
        }
        s
    };
    let (mut pairs, mut others) = (0, 0);
    for (fi, f) in files.iter().enumerate() {
        if (fi % 2 == 1) != held {
            continue;
        }
        let read = |p: &Path| curate::io::csv::parse_csv(&std::fs::read_to_string(p).unwrap_or_default());
        let (a, b) = (read(&pre.join(f)), read(&fin.join(f)));
        if a.len() != b.len() {
            continue;
        }
        for (k, (x, y)) in a.iter().zip(&b).enumerate() {
            if x.len() < 5 || y.len() < 5 {
                continue;
            }
            group += 1;
            if x == y {
                if k % 8 == 0 && others < 600 {
                    others += 1;
                    push(&mut set, group, "other", &mmlu, None, text(x));
                }
            } else if k % 3 == 0 && pairs < 300 {
                pairs += 1;
                push(&mut set, group, "original", &mmlu, None, text(x));
                push(&mut set, group, "mmlu", &mmlu, None, text(y));
            }
        }
    }
    set
}

fn shared_data() -> PathBuf {
    std::env::var_os("CURATE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

fn record_json(r: &Rec) -> Value {
    match &r.prompt {
        Some(p) => json!({"id": r.id, "instruction": p, "input": "", "output": r.text}),
        None => json!({"id": r.id, "text": r.text}),
    }
}

/// The settings measured here (chosen on the tune part); `CURATE_DEDUP_STAGE=FILE`
/// replaces them (sweeps, or the default pipeline's table for comparison).
const STAGE: &str = r#"[[stage]]
kind = "minhash_dedup"
fields = "all"
shingle = "char"
char_ngram = 4
threshold = 0.5
verify = "segments"
candidate_threshold = 0.4
containment = 0.8
edit_threshold = 0.9
segment_threshold = 0.3
template_records = 32
action = "drop"
"#;

fn stage_table() -> String {
    match std::env::var_os("CURATE_DEDUP_STAGE") {
        Some(f) => std::fs::read_to_string(f).unwrap(),
        None => STAGE.to_string(),
    }
}

/// Predicted cluster per record (`curate run`, clusters.jsonl); a record in no cluster is alone.
fn run_curate(set: &Set, dir: &Path) -> Vec<usize> {
    let input = dir.join("in.jsonl");
    let mut s = String::new();
    for r in &set.recs {
        s.push_str(&record_json(r).to_string());
        s.push('\n');
    }
    std::fs::write(&input, s).unwrap();
    let out = dir.join("out");
    let toml = format!(
        "[input]\npaths = [\"{}\"]\n{}\n[output]\ndir = \"{}\"\ncompression = \"none\"\n",
        input.display(),
        stage_table(),
        out.display()
    );
    let p = dir.join("p.toml");
    std::fs::write(&p, toml).unwrap();
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_curate"))
        .args(["run", p.to_str().unwrap(), "--quiet", "--overwrite"])
        .status()
        .unwrap();
    assert!(st.success(), "curate run failed");
    let index: HashMap<&str, usize> = set
        .recs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let mut pred: Vec<usize> = (0..set.recs.len()).collect();
    let clusters = std::fs::read_to_string(out.join("clusters.jsonl")).unwrap_or_default();
    for line in clusters.lines() {
        let c: Value = serde_json::from_str(line).unwrap();
        let members = c["members"].as_array().unwrap();
        let first = index[members[0]["id"].as_str().unwrap()];
        for m in members {
            pred[index[m["id"].as_str().unwrap()]] = first;
        }
    }
    pred
}

struct Scores {
    p: f64,
    r: f64,
    f1: f64,
    /// Per edit kind: (pairs found, pairs).
    by_kind: BTreeMap<&'static str, (usize, usize)>,
    /// Per negative kind: (merged, pairs).
    negatives: BTreeMap<&'static str, (usize, usize)>,
}

fn score(set: &Set, pred: &[usize]) -> Scores {
    let pairs = |n: usize| n * n.saturating_sub(1) / 2;
    let mut by_true: HashMap<usize, usize> = HashMap::new();
    let mut by_pred: HashMap<usize, usize> = HashMap::new();
    let mut both: HashMap<(usize, usize), usize> = HashMap::new();
    for (i, r) in set.recs.iter().enumerate() {
        *by_true.entry(r.group).or_default() += 1;
        *by_pred.entry(pred[i]).or_default() += 1;
        *both.entry((r.group, pred[i])).or_default() += 1;
    }
    let tp: usize = both.values().map(|&n| pairs(n)).sum();
    let t: usize = by_true.values().map(|&n| pairs(n)).sum();
    let pp: usize = by_pred.values().map(|&n| pairs(n)).sum();
    let p = tp as f64 / pp.max(1) as f64;
    let r = tp as f64 / t.max(1) as f64;
    let f1 = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
    let mut by_kind: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
    let mut original: HashMap<usize, usize> = HashMap::new();
    for (i, rec) in set.recs.iter().enumerate() {
        if rec.kind == "original" {
            original.insert(rec.group, i);
        }
    }
    for (i, rec) in set.recs.iter().enumerate() {
        if rec.kind == "original"
            || rec.kind == "other"
            || rec.kind == "qa"
            || rec.kind == "template"
            || rec.kind == "family"
            || rec.kind == "sibling"
        {
            continue;
        }
        let e = by_kind.entry(rec.kind).or_default();
        e.1 += 1;
        if pred[original[&rec.group]] == pred[i] {
            e.0 += 1;
        }
    }
    let mut negatives: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
    for &(a, b, k) in &set.negatives {
        let e = negatives.entry(k).or_default();
        e.1 += 1;
        if pred[a] == pred[b] {
            e.0 += 1;
        }
    }
    Scores {
        p,
        r,
        f1,
        by_kind,
        negatives,
    }
}

fn print(name: &str, set: &Set, s: &Scores) {
    let kinds: Vec<String> = s
        .by_kind
        .iter()
        .map(|(k, (f, n))| format!("{k} {:.3} ({f}/{n})", *f as f64 / (*n).max(1) as f64))
        .collect();
    let negs: Vec<String> = s
        .negatives
        .iter()
        .map(|(k, (m, n))| format!("{k} {m}/{n}"))
        .collect();
    println!(
        "{name}: {} records; pairwise P {:.3} R {:.3} F1 {:.3}\n  recall by kind: {}\n  hard negatives merged: {}",
        set.recs.len(),
        s.p,
        s.r,
        s.f1,
        kinds.join(", "),
        negs.join(", ")
    );
}

fn dump(dir: &Path, name: &str, set: &Set) {
    std::fs::create_dir_all(dir).unwrap();
    let mut recs = String::new();
    let mut labels = String::new();
    for r in &set.recs {
        recs.push_str(&record_json(r).to_string());
        recs.push('\n');
        labels
            .push_str(&json!({"id": r.id, "group": r.group, "kind": r.kind, "source": r.source}).to_string());
        labels.push('\n');
    }
    let negs: String = set
        .negatives
        .iter()
        .map(|&(a, b, k)| json!({"a": set.recs[a].id, "b": set.recs[b].id, "kind": k}).to_string() + "\n")
        .collect();
    std::fs::write(dir.join(format!("{name}.jsonl")), recs).unwrap();
    std::fs::write(dir.join(format!("{name}.labels.jsonl")), labels).unwrap();
    std::fs::write(dir.join(format!("{name}.negatives.jsonl")), negs).unwrap();
}

#[test]
fn near_duplicates_on_the_held_aside_part() {
    let data = shared_data();
    if !data.join("alpaca_zh_hikariming").exists() || !data.join("medicalgpt_zh_sft_samples").exists() {
        eprintln!(
            "note: {} not found; labelled near-duplicate set skipped",
            data.display()
        );
        return;
    }
    // `CURATE_DEDUP_EVAL_PART=tune`: the tune part only (sweeps look at nothing else).
    let tune_only = std::env::var("CURATE_DEDUP_EVAL_PART").is_ok_and(|p| p == "tune");
    let tune = build(&data, false);
    if tune_only {
        let tmp = tempfile::tempdir().unwrap();
        let pred = run_curate(&tune, tmp.path());
        print("tune", &tune, &score(&tune, &pred));
        return;
    }
    let held = build(&data, true);
    if let Some(d) = std::env::var_os("CURATE_DEDUP_LABELLED_DUMP") {
        dump(Path::new(&d), "tune", &tune);
        dump(Path::new(&d), "held", &held);
    }
    // Deterministic: the same set twice.
    assert_eq!(build(&data, true).recs.len(), held.recs.len());
    let tmp = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for (name, set) in [("tune", &tune), ("held", &held)] {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let pred = run_curate(set, &dir);
        let s = score(set, &pred);
        print(name, set, &s);
        results.push(s);
    }
    // Floors just under the measured numbers (docs/benchmarks/dedup.md, Session 16).
    // Tune (what the settings were chosen on): F1 0.992, every kind >= 0.959.
    let t = &results[0];
    assert!(t.f1 >= 0.98, "tune F1 {:.3}", t.f1);
    // Held: P 0.992, R 0.988, F1 0.990, every kind >= 0.924 (combo), hard negatives
    // 0/3308 merged. Issue 17's bars: F1 >= 0.96, every kind >= 0.90, at most 1
    // hard-negative pair in 300 merged.
    let h = &results[1];
    assert!(h.r >= 0.97, "held recall {:.3}", h.r);
    assert!(h.f1 >= 0.97, "held F1 {:.3}", h.f1);
    for (k, (found, n)) in &h.by_kind {
        let r = *found as f64 / (*n).max(1) as f64;
        assert!(r >= 0.90, "held recall of {k}: {r:.3}");
    }
    let (merged, pairs) = h.negatives.values().fold((0, 0), |(m, n), (a, b)| (m + a, n + b));
    assert!(
        pairs >= 3000 && merged * 300 <= pairs,
        "held hard negatives merged: {merged}/{pairs}"
    );
}

//! The README's key tables against the code.
//!
//! For every stage kind in `curate::stages::KINDS`, and for `[input]`, `[output]`, `[run]`
//! and `[[benchmark]]`, the keys listed in the README's table must be exactly the keys
//! the config struct accepts; so must the keys of the nested tables the README spells
//! out (`[input.fields]`, `prompt = {min, max}`, the `finetune` stage's `[….train]`, ...).
//!
//! The code's keys come from the binary, not from reflection: the config structs deny
//! unknown fields, so `curate validate` on a pipeline with one unknown key fails with
//! serde's "unknown field `zzz_unknown`, expected one of `a`, `b`, ...", which lists
//! every field.
//!
//! The README format this test reads (strictly):
//! - a heading line `### `KIND` keys` per stage kind, `### `[input]``, `### `[output]``,
//!   `### `[run]`` and `### `[[benchmark]]``, each exactly once;
//! - below it, before the next heading, a Markdown table whose header starts `| key |`;
//! - in each row's first cell, keys separated by `, `, each written `` `name` ``,
//!   `` `name = {a, b}` `` (an inline table and its keys) or `` `[….name]` `` /
//!   `` `[input.name]` `` (a sub-table, whose keys are the backticked identifiers in the
//!   rest of the row).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

const UNKNOWN: &str = "zzz_unknown";

/// One key as the README's first column writes it.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    /// `` `name` ``
    Plain(String),
    /// `` `name = {a, b}` ``: an inline table with keys `a`, `b`.
    Inline(String, Vec<String>),
    /// `` `[….name]` ``: a sub-table; its keys are the identifiers in the rest of the row.
    Sub(String, Vec<String>),
}

impl Key {
    fn name(&self) -> &str {
        match self {
            Key::Plain(n) | Key::Inline(n, _) | Key::Sub(n, _) => n,
        }
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The backticked spans of `text`, in order.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md")
}

/// The keys of the table under `heading` (a whole line of the README), strictly parsed.
fn key_table(readme: &str, heading: &str) -> Vec<Key> {
    let lines: Vec<&str> = readme.lines().collect();
    let at: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == heading).collect();
    assert!(
        at.len() == 1,
        "README: expected exactly one heading line `{heading}`, found {}",
        at.len()
    );
    let mut i = at[0] + 1;
    while i < lines.len() && !lines[i].starts_with("| key |") {
        assert!(
            !lines[i].starts_with('#'),
            "README `{heading}`: no table with a `| key |` header before the next heading (line {})",
            i + 1
        );
        i += 1;
    }
    assert!(
        i < lines.len(),
        "README `{heading}`: no table with a `| key |` header"
    );
    assert!(
        lines.get(i + 1).is_some_and(|l| l.starts_with("|---")),
        "README `{heading}`: the `| key |` header on line {} is not followed by a `|---|` row",
        i + 1
    );
    let mut keys = Vec::new();
    for (n, line) in lines.iter().enumerate().skip(i + 2) {
        if !line.starts_with('|') {
            break;
        }
        let (first, rest) = line[1..].split_once('|').unwrap_or((&line[1..], ""));
        let first = first.trim();
        let refuse = |why: &str| -> ! {
            panic!(
                "README `{heading}`, line {}: cannot read the key cell `{first}` ({why}); write keys as \
                 `name`, `name = {{a, b}}` or `[….table]`, each in backticks, separated by \", \"",
                n + 1
            )
        };
        let spans = key_spans(first).unwrap_or_else(|| refuse("not backticked keys separated by \", \""));
        for span in spans {
            keys.push(parse_key(span, rest).unwrap_or_else(|| refuse(&format!("`{span}`"))));
        }
    }
    assert!(!keys.is_empty(), "README `{heading}`: the key table has no rows");
    let mut seen = BTreeSet::new();
    for k in &keys {
        assert!(
            seen.insert(k.name().to_string()),
            "README `{heading}`: key `{}` listed twice",
            k.name()
        );
    }
    keys
}

/// The backticked spans of a key cell that is nothing but `` `a`, `b` ``.
fn key_spans(cell: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = cell.split('`').collect();
    let well_formed = parts.len() >= 3
        && parts.len() % 2 == 1
        && parts[0].is_empty()
        && parts[parts.len() - 1].is_empty()
        && parts[2..parts.len() - 1]
            .iter()
            .step_by(2)
            .all(|sep| *sep == ", ");
    well_formed.then(|| parts[1..].iter().step_by(2).copied().collect())
}

/// One key, `inner` being the text between its backticks.
fn parse_key(inner: &str, rest: &str) -> Option<Key> {
    if is_ident(inner) {
        return Some(Key::Plain(inner.to_string()));
    }
    if let Some((name, table)) = inner.split_once(" = ") {
        let fields = table.strip_prefix('{')?.strip_suffix('}')?;
        let fields: Vec<String> = fields.split(", ").map(str::to_string).collect();
        return (is_ident(name) && fields.iter().all(|f| is_ident(f)))
            .then(|| Key::Inline(name.to_string(), fields));
    }
    let path = inner.strip_prefix('[')?.strip_suffix(']')?;
    let name = path.strip_prefix("….").or_else(|| path.strip_prefix("input."))?;
    if !is_ident(name) {
        return None;
    }
    let fields = backticked(rest)
        .into_iter()
        .filter(|t| is_ident(t))
        .map(str::to_string)
        .collect();
    Some(Key::Sub(name.to_string(), fields))
}

/// The fields serde lists when `pipeline` (with `{INPUT}` and `{OUT}` filled in) has the
/// unknown key `zzz_unknown` in the table called `what`.
fn code_keys(what: &str, pipeline: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"hello\"}\n").unwrap();
    let text = pipeline
        .replace("{INPUT}", &format!("{:?}", input.to_str().unwrap()))
        .replace(
            "{OUT}",
            &format!("{:?}", dir.path().join("out").to_str().unwrap()),
        );
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, &text).unwrap();
    let out = common::run_curate(&["validate", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: `curate validate` should refuse the unknown key `{UNKNOWN}` as a config error; \
         exit {:?}, stderr:\n{stderr}\npipeline:\n{text}",
        out.status.code()
    );
    let marker = format!("unknown field `{UNKNOWN}`");
    let line = stderr.lines().find(|l| l.contains(&marker)).unwrap_or_else(|| {
        panic!("{what}: the error does not say \"{marker}\" (is the struct missing deny_unknown_fields?):\n{stderr}")
    });
    let after = &line[line.find(&marker).unwrap() + marker.len()..];
    if after.contains("there are no fields") {
        return BTreeSet::new();
    }
    let fields: BTreeSet<String> = backticked(after).into_iter().map(str::to_string).collect();
    assert!(
        !fields.is_empty(),
        "{what}: serde's message lists no fields (a flattened struct lists none; this test \
         cannot read its keys): {line}"
    );
    fields
}

/// Compare, collecting a readable complaint instead of stopping at the first table.
fn compare(failures: &mut Vec<String>, what: &str, readme: BTreeSet<String>, code: BTreeSet<String>) {
    let missing: Vec<_> = code.difference(&readme).collect();
    let extra: Vec<_> = readme.difference(&code).collect();
    if !missing.is_empty() || !extra.is_empty() {
        failures.push(format!(
            "{what}: in the code but not in the README: {missing:?}; in the README but not in the code: {extra:?}"
        ));
    }
}

/// Check one README table and the nested tables it spells out. `pipeline(body)` is a
/// pipeline whose table under test holds `body`; `sub(name, body)` one whose sub-table
/// `name` holds `body`.
fn check_table(
    failures: &mut Vec<String>,
    what: &str,
    keys: &[Key],
    pipeline: &dyn Fn(&str) -> String,
    sub: &dyn Fn(&str, &str) -> String,
) {
    let listed = keys.iter().map(|k| k.name().to_string()).collect();
    compare(
        failures,
        what,
        listed,
        code_keys(what, &pipeline(&format!("{UNKNOWN} = 1"))),
    );
    for key in keys {
        match key {
            Key::Plain(_) => {}
            Key::Inline(name, fields) => {
                let w = format!("{what} `{name} = {{…}}`");
                let code = code_keys(&w, &pipeline(&format!("{name} = {{ {UNKNOWN} = 1 }}")));
                compare(failures, &w, fields.iter().cloned().collect(), code);
            }
            Key::Sub(name, fields) => {
                let w = format!("{what} `[….{name}]`");
                let code = code_keys(&w, &sub(name, &format!("{UNKNOWN} = 1")));
                compare(failures, &w, fields.iter().cloned().collect(), code);
            }
        }
    }
}

const OUTPUT: &str = "[output]\ndir = {OUT}\n";

#[test]
fn every_stage_kind_has_a_key_table_matching_its_config() {
    let text = readme();
    let mut failures = Vec::new();
    for kind in curate::stages::KINDS.iter() {
        let keys = key_table(&text, &format!("### `{kind}` keys"));
        let stage = |body: &str| {
            format!("[input]\npaths = [{{INPUT}}]\n\n[[stage]]\nkind = \"{kind}\"\n{body}\n\n{OUTPUT}")
        };
        let sub = |name: &str, body: &str| {
            format!("[input]\npaths = [{{INPUT}}]\n\n[[stage]]\nkind = \"{kind}\"\n[stage.{name}]\n{body}\n\n{OUTPUT}")
        };
        check_table(&mut failures, &format!("stage `{kind}`"), &keys, &stage, &sub);
    }
    assert!(
        failures.is_empty(),
        "README key tables disagree with the code:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn pipeline_tables_match_their_config() {
    let text = readme();
    let mut failures = Vec::new();

    let keys = key_table(&text, "### `[input]`");
    let input = |body: &str| format!("[input]\npaths = [{{INPUT}}]\n{body}\n\n{OUTPUT}");
    let input_sub =
        |name: &str, body: &str| format!("[input]\npaths = [{{INPUT}}]\n[input.{name}]\n{body}\n\n{OUTPUT}");
    check_table(&mut failures, "[input]", &keys, &input, &input_sub);

    let keys = key_table(&text, "### `[output]`");
    let output = |body: &str| format!("[input]\npaths = [{{INPUT}}]\n\n{OUTPUT}{body}\n");
    let output_sub =
        |name: &str, body: &str| format!("[input]\npaths = [{{INPUT}}]\n\n{OUTPUT}[output.{name}]\n{body}\n");
    check_table(&mut failures, "[output]", &keys, &output, &output_sub);

    let keys = key_table(&text, "### `[run]`");
    let run = |body: &str| format!("[input]\npaths = [{{INPUT}}]\n\n{OUTPUT}\n[run]\n{body}\n");
    let run_sub =
        |name: &str, body: &str| format!("[input]\npaths = [{{INPUT}}]\n\n{OUTPUT}\n[run.{name}]\n{body}\n");
    check_table(&mut failures, "[run]", &keys, &run, &run_sub);

    let keys = key_table(&text, "### `[[benchmark]]`");
    let bench = |body: &str| {
        format!("[input]\npaths = [{{INPUT}}]\n\n[[benchmark]]\nname = \"b\"\nformat = \"mmlu\"\npath = \"b\"\n{body}\n\n{OUTPUT}")
    };
    let bench_sub = |name: &str, body: &str| {
        format!("[input]\npaths = [{{INPUT}}]\n\n[[benchmark]]\nname = \"b\"\nformat = \"mmlu\"\npath = \"b\"\n[benchmark.{name}]\n{body}\n\n{OUTPUT}")
    };
    check_table(&mut failures, "[[benchmark]]", &keys, &bench, &bench_sub);

    assert!(
        failures.is_empty(),
        "README key tables disagree with the code:\n  {}",
        failures.join("\n  ")
    );
}

/// The parser itself: the forms it accepts and the cells it refuses.
#[test]
fn key_cells_are_read_strictly() {
    assert_eq!(parse_key("min_chars", ""), Some(Key::Plain("min_chars".into())));
    assert_eq!(
        parse_key("prompt = {min, max}", ""),
        Some(Key::Inline("prompt".into(), vec!["min".into(), "max".into()]))
    );
    assert_eq!(
        parse_key("[….lora]", " | `r` 8, `target_modules` `[\"q_proj\"]` |"),
        Some(Key::Sub("lora".into(), vec!["r".into(), "target_modules".into()]))
    );
    assert_eq!(
        parse_key("[input.fields]", " | | renames: `id`, `text` |"),
        Some(Key::Sub("fields".into(), vec!["id".into(), "text".into()]))
    );
    for bad in ["Min", "a b", "prompt = min", "[stage.x]", "--input"] {
        assert_eq!(parse_key(bad, ""), None, "{bad} should be refused");
    }
    assert_eq!(key_spans("`a`, `b = {c, d}`"), Some(vec!["a", "b = {c, d}"]));
    for bad in ["a", "`a` `b`", "`a`,`b`", "`a`, b", "`a"] {
        assert_eq!(key_spans(bad), None, "{bad} should be refused");
    }
    let doc =
        "### `x` keys\n\ntext\n\n| key | default |\n|---|---|\n| `a`, `b` | 1 |\n| `c` | 2 |\n\nafter\n";
    let names: Vec<String> = key_table(doc, "### `x` keys")
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let missing = std::panic::catch_unwind(|| {
        key_table(
            "### `x` keys\n\n## next\n| key |\n|---|\n| `a` |\n",
            "### `x` keys",
        )
    });
    assert!(missing.is_err(), "a table after the next heading does not count");
}

//! The record model: the original fields of one input record, its schema, and
//! the text views that stages read and (for redaction) write.
//!
//! Every original field is kept as parsed (key order preserved), so the output
//! a user gets back has the shape they gave us plus an `id` and a `meta` object.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The layout of a record's text: which fields hold the text a stage reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schema {
    /// One plain `text` field (pretraining documents, extracted web pages).
    Text,
    /// Raw HTML in an `html` field; the `extract` stage turns it into `text`.
    Html,
    /// Alpaca: `instruction`, optional `input`, `output`.
    Alpaca,
    /// ShareGPT: `conversations`, a list of `{from, value}` turns.
    Sharegpt,
    /// OpenAI chat: `messages`, a list of `{role, content}` turns.
    Messages,
    /// Preference pairs: `prompt`, `chosen`, `rejected`.
    Preference,
}

impl Schema {
    /// The lower-case name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Schema::Text => "text",
            Schema::Html => "html",
            Schema::Alpaca => "alpaca",
            Schema::Sharegpt => "sharegpt",
            Schema::Messages => "messages",
            Schema::Preference => "preference",
        }
    }
}

/// Which input field holds each text view; `[input.fields]` in the config overrides these.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldMap {
    pub id: String,
    pub text: String,
    pub html: String,
    pub instruction: String,
    pub input: String,
    pub output: String,
    pub conversations: String,
    /// Key of the speaker inside a ShareGPT turn.
    pub turn_from: String,
    /// Key of the text inside a ShareGPT turn.
    pub turn_value: String,
    pub messages: String,
    pub message_role: String,
    pub message_content: String,
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

impl Default for FieldMap {
    fn default() -> Self {
        let s = |v: &str| v.to_string();
        FieldMap {
            id: s("id"),
            text: s("text"),
            html: s("html"),
            instruction: s("instruction"),
            input: s("input"),
            output: s("output"),
            conversations: s("conversations"),
            turn_from: s("from"),
            turn_value: s("value"),
            messages: s("messages"),
            message_role: s("role"),
            message_content: s("content"),
            prompt: s("prompt"),
            chosen: s("chosen"),
            rejected: s("rejected"),
        }
    }
}

impl FieldMap {
    /// Detect the schema of a parsed object from which mapped fields are present.
    pub fn detect(&self, fields: &Map<String, Value>) -> Option<Schema> {
        let has = |k: &str| fields.get(k).is_some_and(|v| !v.is_null());
        if has(&self.conversations) {
            Some(Schema::Sharegpt)
        } else if has(&self.messages) {
            Some(Schema::Messages)
        } else if has(&self.instruction) && has(&self.output) {
            Some(Schema::Alpaca)
        } else if has(&self.prompt) && has(&self.chosen) && has(&self.rejected) {
            Some(Schema::Preference)
        } else if has(&self.text) {
            Some(Schema::Text)
        } else if has(&self.html) {
            Some(Schema::Html)
        } else {
            None
        }
    }

    /// Check that `fields` has what `schema` needs; the error names the missing field.
    pub fn check(&self, schema: Schema, fields: &Map<String, Value>) -> Result<(), String> {
        let need: Vec<&str> = match schema {
            Schema::Text => vec![&self.text],
            Schema::Html => vec![&self.html],
            Schema::Alpaca => vec![&self.instruction, &self.output],
            Schema::Sharegpt => vec![&self.conversations],
            Schema::Messages => vec![&self.messages],
            Schema::Preference => vec![&self.prompt, &self.chosen, &self.rejected],
        };
        for key in need {
            match fields.get(key) {
                None | Some(Value::Null) => {
                    return Err(format!("missing field `{key}` ({} schema)", schema.name()))
                }
                Some(Value::String(_)) if !matches!(schema, Schema::Sharegpt | Schema::Messages) => {}
                Some(Value::Array(_)) if matches!(schema, Schema::Sharegpt | Schema::Messages) => {}
                Some(other) => {
                    return Err(format!(
                        "field `{key}` has type {}, expected {}",
                        json_type(other),
                        if matches!(schema, Schema::Sharegpt | Schema::Messages) {
                            "array"
                        } else {
                            "string"
                        }
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The JSON type name of a value, for error messages.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Who a piece of text belongs to: stages treat prompts and responses differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A whole document (`text`, `html`).
    Document,
    System,
    /// The user side: instruction, input, human/user turns, preference prompt.
    Prompt,
    /// The model side: output, gpt/assistant turns, chosen and rejected answers.
    Response,
}

/// Which text views a stage reads: `fields = "all" | "prompt" | "response"` in its table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextFields {
    /// Every segment (documents, system, prompts, responses).
    #[default]
    All,
    /// Prompt-side segments (instruction, input, user turns) and system prompts.
    Prompt,
    /// Response-side segments (output, assistant turns, chosen/rejected) and documents.
    Response,
}

impl TextFields {
    /// `response`, for stages whose `fields` defaults to it.
    pub fn response() -> TextFields {
        TextFields::Response
    }

    /// Whether a segment of `role` is read: `prompt` takes system prompts too,
    /// `response` takes whole documents too.
    pub fn selects(self, role: Role) -> bool {
        match self {
            TextFields::All => true,
            TextFields::Prompt => matches!(role, Role::Prompt | Role::System),
            TextFields::Response => matches!(role, Role::Response | Role::Document),
        }
    }
}

/// Where a text segment lives inside the record's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    /// A top-level string field.
    Field(String),
    /// `list[index][key]`, a turn of a conversation.
    Item { list: String, index: usize, key: String },
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldPath::Field(k) => write!(f, "{k}"),
            FieldPath::Item { list, index, key } => write!(f, "{list}[{index}].{key}"),
        }
    }
}

/// One text view of a record: where it is, whose it is, and which turn.
#[derive(Debug, Clone)]
pub struct Segment {
    pub path: FieldPath,
    /// The view's name: `text`, `instruction`, `output`, `chosen`, ... or the turn's speaker.
    pub label: String,
    pub role: Role,
    /// Index of the conversation turn, for multi-turn schemas.
    pub turn: Option<usize>,
}

/// Where a record came from: the input source and its position there.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The input path as named in the config (or the HTML file's path).
    pub source: Arc<str>,
    /// 1-based line where the record starts (0 where lines do not apply, e.g. Parquet).
    pub line: u64,
    /// 0-based index of the record within its source.
    pub index: u64,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}", self.source, self.line)
        } else {
            write!(f, "{}#{}", self.source, self.index)
        }
    }
}

/// One record flowing through the pipeline.
#[derive(Debug, Clone)]
pub struct Record {
    /// Stable id: the input's own id field, else derived from source and position.
    pub id: String,
    /// Every original field, in input order (the input's own `meta` included).
    pub fields: Map<String, Value>,
    /// Annotations written by stages, one key per stage kind.
    pub meta: Map<String, Value>,
    pub schema: Schema,
    pub origin: Origin,
    pub map: Arc<FieldMap>,
    /// Size of the record as read (bytes of its input line or file), for the books.
    pub input_bytes: u64,
    /// Pipeline stages (0-based) whose verdict on it was `Tagged`: for the report's
    /// books, never written out.
    pub tagged_by: Vec<u32>,
}

fn role_of_speaker(speaker: &str) -> Role {
    match speaker.to_ascii_lowercase().as_str() {
        "gpt" | "assistant" | "bot" | "model" | "chatgpt" | "bing" | "bard" | "function_call" => {
            Role::Response
        }
        "system" => Role::System,
        _ => Role::Prompt,
    }
}

impl Record {
    /// Build a record from a parsed object; `Err` says why it cannot be one (a `malformed` reason).
    pub fn from_object(
        fields: Map<String, Value>,
        schema: Option<Schema>,
        map: Arc<FieldMap>,
        origin: Origin,
    ) -> Result<Record, String> {
        Self::try_from_object(fields, schema, map, origin).map_err(|(e, _)| e)
    }

    /// Like [`Record::from_object`], but hands the fields back on failure so the
    /// rejected record can still show them.
    pub fn try_from_object(
        fields: Map<String, Value>,
        schema: Option<Schema>,
        map: Arc<FieldMap>,
        origin: Origin,
    ) -> Result<Record, (String, Map<String, Value>)> {
        let found = match schema {
            Some(s) => Ok(s),
            None => map.detect(&fields).ok_or_else(|| {
                format!(
                    "no text field: expected one of `{}`, `{}`, `{}`+`{}`, `{}`, `{}`+`{}`+`{}` or `{}`",
                    map.text,
                    map.conversations,
                    map.instruction,
                    map.output,
                    map.messages,
                    map.prompt,
                    map.chosen,
                    map.rejected,
                    map.html
                )
            }),
        };
        let schema = match found.and_then(|s| map.check(s, &fields).map(|()| s)) {
            Ok(s) => s,
            Err(e) => return Err((e, fields)),
        };
        let id = match fields.get(&map.id) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => origin.to_string(),
        };
        Ok(Record {
            id,
            fields,
            meta: Map::new(),
            schema,
            origin,
            map,
            input_bytes: 0,
            tagged_by: Vec::new(),
        })
    }

    /// The text segments of this record, in reading order.
    pub fn segments(&self) -> Vec<Segment> {
        let m = &*self.map;
        let field = |key: &str, label: &str, role: Role| Segment {
            path: FieldPath::Field(key.to_string()),
            label: label.to_string(),
            role,
            turn: None,
        };
        match self.schema {
            Schema::Text => vec![field(&m.text, "text", Role::Document)],
            Schema::Html => vec![field(&m.html, "html", Role::Document)],
            Schema::Alpaca => {
                let mut v = vec![field(&m.instruction, "instruction", Role::Prompt)];
                if matches!(self.fields.get(&m.input), Some(Value::String(s)) if !s.is_empty()) {
                    v.push(field(&m.input, "input", Role::Prompt));
                }
                v.push(field(&m.output, "output", Role::Response));
                v
            }
            Schema::Preference => vec![
                field(&m.prompt, "prompt", Role::Prompt),
                field(&m.chosen, "chosen", Role::Response),
                field(&m.rejected, "rejected", Role::Response),
            ],
            Schema::Sharegpt => self.turns(&m.conversations, &m.turn_from, &m.turn_value),
            Schema::Messages => self.turns(&m.messages, &m.message_role, &m.message_content),
        }
    }

    fn turns(&self, list: &str, speaker_key: &str, text_key: &str) -> Vec<Segment> {
        let Some(Value::Array(items)) = self.fields.get(list) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let obj = item.as_object()?;
                obj.get(text_key)?.as_str()?;
                let speaker = obj.get(speaker_key).and_then(Value::as_str).unwrap_or("");
                Some(Segment {
                    path: FieldPath::Item {
                        list: list.to_string(),
                        index: i,
                        key: text_key.to_string(),
                    },
                    label: speaker.to_string(),
                    role: role_of_speaker(speaker),
                    turn: Some(i),
                })
            })
            .collect()
    }

    /// The text at `path`, or `None` if it is absent or not a string.
    pub fn text_at(&self, path: &FieldPath) -> Option<&str> {
        match path {
            FieldPath::Field(k) => self.fields.get(k)?.as_str(),
            FieldPath::Item { list, index, key } => self
                .fields
                .get(list)?
                .as_array()?
                .get(*index)?
                .as_object()?
                .get(key)?
                .as_str(),
        }
    }

    /// Replace the text at `path` (for stages that rewrite text: extraction, redaction).
    pub fn set_text(&mut self, path: &FieldPath, text: String) -> bool {
        let slot = match path {
            FieldPath::Field(k) => self.fields.get_mut(k),
            FieldPath::Item { list, index, key } => self
                .fields
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .and_then(|a| a.get_mut(*index))
                .and_then(Value::as_object_mut)
                .and_then(|o| o.get_mut(key)),
        };
        match slot {
            Some(v) => {
                *v = Value::String(text);
                true
            }
            None => {
                if let FieldPath::Field(k) = path {
                    self.fields.insert(k.clone(), Value::String(text));
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Every segment with its text.
    pub fn texts(&self) -> Vec<(Segment, &str)> {
        self.segments()
            .into_iter()
            .filter_map(|s| {
                let t = self.text_at(&s.path)?;
                Some((s, t))
            })
            .collect()
    }

    /// All text of the record joined by blank lines: what whole-record stages read.
    pub fn full_text(&self) -> String {
        let texts = self.texts();
        let mut out = String::with_capacity(texts.iter().map(|(_, t)| t.len() + 2).sum());
        for (i, (_, t)) in texts.iter().enumerate() {
            if i > 0 {
                out.push_str("\n\n");
            }
            out.push_str(t);
        }
        out
    }

    /// Store a stage's annotation under `meta.<key>`.
    pub fn annotate(&mut self, key: &str, value: Value) {
        self.meta.insert(key.to_string(), value);
    }

    fn merged_meta(&self, meta_field: &str) -> Map<String, Value> {
        let mut meta = match self.fields.get(meta_field) {
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                let mut m = Map::new();
                m.insert("input".into(), other.clone());
                m
            }
            None => Map::new(),
        };
        for (k, v) in &self.meta {
            meta.insert(k.clone(), v.clone());
        }
        meta
    }

    /// [`Record::to_output`] by moving the fields and annotations out of the record
    /// (left without them) instead of copying: for a record that is being dropped.
    pub fn take_output(&mut self, meta_field: &str) -> Map<String, Value> {
        let fields = std::mem::take(&mut self.fields);
        let annotations = std::mem::take(&mut self.meta);
        let mut out = Map::with_capacity(fields.len() + 2);
        out.insert(self.map.id.clone(), Value::String(self.id.clone()));
        let mut input_meta = None;
        for (k, v) in fields {
            if k == meta_field {
                input_meta = Some(v);
            } else if k != self.map.id {
                out.insert(k, v);
            }
        }
        if !annotations.is_empty() || input_meta.as_ref().is_some_and(|v| !v.is_null()) {
            let mut meta = match input_meta {
                Some(Value::Object(m)) => m,
                Some(other) => {
                    let mut m = Map::new();
                    m.insert("input".into(), other);
                    m
                }
                None => Map::new(),
            };
            for (k, v) in annotations {
                meta.insert(k, v);
            }
            out.insert(meta_field.to_string(), Value::Object(meta));
        }
        out
    }

    /// The record as written to output (before it is conformed to the run's schema,
    /// `src/shape.rs`): `id` first, its other fields, and `meta` (its annotations over
    /// the input's own `meta`).
    pub fn to_output(&self, meta_field: &str) -> Map<String, Value> {
        let mut out = Map::with_capacity(self.fields.len() + 2);
        out.insert(self.map.id.clone(), Value::String(self.id.clone()));
        for (k, v) in &self.fields {
            if *k != self.map.id && k != meta_field {
                out.insert(k.clone(), v.clone());
            }
        }
        if !self.meta.is_empty() || self.fields.get(meta_field).is_some_and(|v| !v.is_null()) {
            out.insert(
                meta_field.to_string(),
                Value::Object(self.merged_meta(meta_field)),
            );
        }
        out
    }
}

/// A record from a JSON object, as stage unit tests build them (source `t`, line 1).
#[cfg(test)]
pub(crate) fn test_record(v: Value) -> Record {
    Record::from_object(
        v.as_object().expect("a JSON object").clone(),
        None,
        Arc::new(FieldMap::default()),
        Origin {
            source: "t".into(),
            line: 1,
            index: 0,
        },
    )
    .expect("a valid record")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        Record::from_object(
            v.as_object().unwrap().clone(),
            None,
            Arc::new(FieldMap::default()),
            Origin {
                source: "a.jsonl".into(),
                line: 3,
                index: 2,
            },
        )
        .unwrap()
    }

    #[test]
    fn detects_each_schema_and_derives_ids() {
        let r = rec(json!({"instruction": "写一首诗", "input": "", "output": "床前明月光"}));
        assert_eq!(r.schema, Schema::Alpaca);
        assert_eq!(r.id, "a.jsonl:3");
        assert_eq!(r.segments().len(), 2, "empty input is not a segment");
        let r = rec(
            json!({"id": 7, "conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}]}),
        );
        assert_eq!(r.schema, Schema::Sharegpt);
        assert_eq!(r.id, "7");
        let roles: Vec<Role> = r.segments().iter().map(|s| s.role).collect();
        assert_eq!(roles, vec![Role::Prompt, Role::Response]);
        let r =
            rec(json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}));
        assert_eq!(r.schema, Schema::Messages);
        assert_eq!(r.full_text(), "s\n\nu");
        let r = rec(json!({"prompt": "p", "chosen": "c", "rejected": "r"}));
        assert_eq!(r.schema, Schema::Preference);
        assert_eq!(rec(json!({"text": "t"})).schema, Schema::Text);
        assert_eq!(rec(json!({"html": "<p>x</p>"})).schema, Schema::Html);
    }

    #[test]
    fn rejects_records_without_text() {
        let err = Record::from_object(
            json!({"title": "x"}).as_object().unwrap().clone(),
            None,
            Arc::new(FieldMap::default()),
            Origin {
                source: "a".into(),
                line: 1,
                index: 0,
            },
        )
        .unwrap_err();
        assert!(err.contains("no text field"), "{err}");
        let err = FieldMap::default()
            .check(Schema::Text, json!({"text": 5}).as_object().unwrap())
            .unwrap_err();
        assert!(err.contains("type number"), "{err}");
    }

    #[test]
    fn set_text_rewrites_turns_and_output_keeps_field_order() {
        let mut r = rec(json!({"conversations": [{"from": "human", "value": "a"}], "extra": 1}));
        let seg = r.segments().remove(0);
        assert!(r.set_text(&seg.path, "b".into()));
        r.annotate("length", json!({"chars": 1}));
        let out = serde_json::to_string(&r.to_output("meta")).unwrap();
        assert_eq!(
            out,
            r#"{"id":"a.jsonl:3","conversations":[{"from":"human","value":"b"}],"extra":1,"meta":{"length":{"chars":1}}}"#
        );
    }

    #[test]
    fn take_output_is_to_output() {
        let cases = [
            json!({"id": "x", "instruction": "i", "output": "o", "meta": {"src": 1, "length": 0}}),
            json!({"conversations": [{"from": "human", "value": "a"}], "meta": 5, "extra": null}),
            json!({"text": "t", "meta": null}),
            json!({"text": "t"}),
        ];
        for v in cases {
            for annotate in [false, true] {
                let mut r = rec(v.clone());
                if annotate {
                    r.annotate("length", json!({"chars": 1}));
                    r.annotate("quality", json!({"x": 0.5}));
                }
                let copied = r.to_output("meta");
                assert_eq!(
                    serde_json::to_string(&r.take_output("meta")).unwrap(),
                    serde_json::to_string(&copied).unwrap()
                );
            }
        }
    }

    #[test]
    fn text_fields_parse_and_select_by_role() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default)]
            fields: TextFields,
        }
        let f = |t: &str| toml::from_str::<T>(t).map(|t| t.fields);
        assert_eq!(f("").unwrap(), TextFields::All);
        assert_eq!(f("fields = \"prompt\"").unwrap(), TextFields::Prompt);
        assert_eq!(f("fields = \"response\"").unwrap(), TextFields::Response);
        assert!(f("fields = \"Response\"").is_err());
        let roles = [Role::Document, Role::System, Role::Prompt, Role::Response];
        let picked = |tf: TextFields| roles.map(|r| tf.selects(r));
        assert_eq!(picked(TextFields::All), [true; 4]);
        assert_eq!(picked(TextFields::Prompt), [false, true, true, false]);
        assert_eq!(picked(TextFields::Response), [true, false, false, true]);
    }
}

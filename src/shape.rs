//! One schema per output: the shape of every value curate writes, fixed before the
//! first part, so that all parts of `kept/` and `rejected/` load together as one
//! dataset (pyarrow, pandas, Hugging Face `datasets`).
//!
//! Without it each Parquet part inferred its own Arrow schema from its own rows (a list
//! empty in one part was `list<null>` there and `list<struct<...>>` in the next) and
//! JSONL records carried only the keys they happened to have. Now:
//! - each stage declares the [`Shape`] of its `meta.<key>` annotation
//!   ([`crate::stage::Stage::annotations`]); optional keys are nullable fields that are
//!   always present;
//! - the input's fields get their shapes from a scan of the input before the main pass
//!   (`src/run/scan.rs`): the union over every record, so a key seen in one record is a
//!   column of all of them;
//! - every record is written conformed to the schema ([`Conform`]): the declared keys
//!   in the declared order, `null` for a missing value. JSONL is serialized straight from
//!   the record's values (no re-parse); Parquet parts are decoded from those lines
//!   with the one Arrow schema ([`OutputSchema::kept_arrow`]).
//!
//! A field whose values have conflicting types across the input (text in one record, a
//! number in another) has the shape [`Shape::Json`]: strings stay strings, any other
//! value is written as its JSON text.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema as ArrowSchema, SchemaRef};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::record::Record;

/// The type of one output value (every value may also be null).
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Only nulls (or empty lists) were seen.
    Null,
    Bool,
    /// A 64-bit signed integer.
    Int,
    /// A 64-bit float (integers in the same field are written as floats by readers).
    Float,
    Str,
    /// Values of conflicting types: strings as they are, anything else as its JSON text.
    Json,
    List(Box<Shape>),
    /// An object with these keys, in this order; every key is always written.
    Struct(Vec<(String, Shape)>),
}

impl Shape {
    /// A struct shape from `(key, shape)` pairs, as stages declare their annotations.
    pub fn object(fields: &[(&str, Shape)]) -> Shape {
        Shape::Struct(fields.iter().map(|(k, s)| (k.to_string(), s.clone())).collect())
    }

    /// A list of `item`.
    pub fn list(item: Shape) -> Shape {
        Shape::List(Box::new(item))
    }

    /// The shape of one JSON value.
    pub fn of(v: &Value) -> Shape {
        let mut s = Shape::Null;
        s.observe(v);
        s
    }

    /// Widen this shape so that `v` fits it (the union of both).
    pub fn observe(&mut self, v: &Value) {
        match (&mut *self, v) {
            (_, Value::Null) | (Shape::Json, _) => {}
            (Shape::Null, _) => *self = Self::fresh(v),
            (Shape::Bool, Value::Bool(_)) | (Shape::Str, Value::String(_)) => {}
            (Shape::Int, Value::Number(n)) => {
                if !n.is_i64() {
                    *self = Shape::Float;
                }
            }
            (Shape::Float, Value::Number(_)) => {}
            (Shape::List(item), Value::Array(a)) => {
                for x in a {
                    item.observe(x);
                }
            }
            (Shape::Struct(_), Value::Object(m)) => self.observe_object(m),
            _ => *self = Shape::Json,
        }
    }

    /// [`Shape::observe`] for an object held as its map (a record's fields).
    pub fn observe_object(&mut self, m: &Map<String, Value>) {
        match self {
            Shape::Null => *self = Shape::Struct(m.iter().map(|(k, x)| (k.clone(), Shape::of(x))).collect()),
            Shape::Struct(fields) => {
                for (k, x) in m {
                    match fields.iter_mut().find(|(name, _)| name == k) {
                        Some((_, s)) => s.observe(x),
                        None => fields.push((k.clone(), Shape::of(x))),
                    }
                }
            }
            Shape::Json => {}
            _ => *self = Shape::Json,
        }
    }

    fn fresh(v: &Value) -> Shape {
        match v {
            Value::Null => Shape::Null,
            Value::Bool(_) => Shape::Bool,
            Value::Number(n) if n.is_i64() => Shape::Int,
            Value::Number(_) => Shape::Float,
            Value::String(_) => Shape::Str,
            Value::Array(a) => {
                let mut item = Shape::Null;
                for x in a {
                    item.observe(x);
                }
                Shape::list(item)
            }
            Value::Object(m) => Shape::Struct(m.iter().map(|(k, x)| (k.clone(), Shape::of(x))).collect()),
        }
    }

    /// The union of two shapes (`self`'s keys first): a conflict gives [`Shape::Json`].
    pub fn merge(self, other: Shape) -> Shape {
        match (self, other) {
            (Shape::Null, s) | (s, Shape::Null) => s,
            (Shape::Json, _) | (_, Shape::Json) => Shape::Json,
            (Shape::Int, Shape::Float) | (Shape::Float, Shape::Int) => Shape::Float,
            (Shape::List(a), Shape::List(b)) => Shape::list(a.merge(*b)),
            (Shape::Struct(mut a), Shape::Struct(b)) => {
                for (k, s) in b {
                    match a.iter().position(|(name, _)| *name == k) {
                        Some(i) => {
                            let mine = std::mem::replace(&mut a[i].1, Shape::Null);
                            a[i].1 = mine.merge(s);
                        }
                        None => a.push((k, s)),
                    }
                }
                Shape::Struct(a)
            }
            (a, b) if a == b => a,
            _ => Shape::Json,
        }
    }

    /// The shape as written: an object never seen with a key has no columns to
    /// give (Parquet cannot store an empty struct), so it is written as JSON text.
    pub fn settled(self) -> Shape {
        match self {
            Shape::Struct(f) if f.is_empty() => Shape::Json,
            Shape::Struct(f) => Shape::Struct(f.into_iter().map(|(k, s)| (k, s.settled())).collect()),
            Shape::List(item) => Shape::list(item.settled()),
            s => s,
        }
    }

    /// The Arrow type of this shape.
    pub fn arrow(&self) -> DataType {
        match self {
            Shape::Null => DataType::Null,
            Shape::Bool => DataType::Boolean,
            Shape::Int => DataType::Int64,
            Shape::Float => DataType::Float64,
            Shape::Str | Shape::Json => DataType::Utf8,
            Shape::List(item) => DataType::List(Arc::new(Field::new("item", item.arrow(), true))),
            Shape::Struct(fields) => DataType::Struct(arrow_fields(fields)),
        }
    }

    /// The shape as a Hugging Face `datasets` feature, in the dict form that
    /// `datasets.Features.from_dict` reads (a list is `[item]`, a struct a plain dict).
    pub fn hf_feature(&self) -> Value {
        let value = |dtype: &str| serde_json::json!({"dtype": dtype, "_type": "Value"});
        match self {
            Shape::Null => value("null"),
            Shape::Bool => value("bool"),
            Shape::Int => value("int64"),
            Shape::Float => value("float64"),
            Shape::Str | Shape::Json => value("string"),
            Shape::List(item) => Value::Array(vec![item.hf_feature()]),
            Shape::Struct(fields) => {
                Value::Object(fields.iter().map(|(k, s)| (k.clone(), s.hf_feature())).collect())
            }
        }
    }
}

fn arrow_fields(fields: &[(String, Shape)]) -> Fields {
    fields
        .iter()
        .map(|(k, s)| Field::new(k, s.arrow(), true))
        .collect::<Vec<_>>()
        .into()
}

/// Serializes a value conformed to a shape: every declared key of an object in the
/// declared order (`null` when missing), anything but a string in a [`Shape::Json`] or
/// [`Shape::Str`] place as its JSON text. A key
/// the shape does not declare is written after the declared ones, so nothing is lost
/// (the Parquet decoder refuses such a line loudly; stage tests check declarations).
pub struct Conform<'a> {
    pub shape: &'a Shape,
    pub value: Option<&'a Value>,
}

impl Serialize for Conform<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(v) = self.value.filter(|v| !v.is_null()) else {
            return s.serialize_none();
        };
        match (self.shape, v) {
            (Shape::Json | Shape::Str, Value::String(_)) => v.serialize(s),
            // A rejected record's own fields may not fit (a numeric `id`): as text.
            (Shape::Json | Shape::Str, _) => s.serialize_str(&v.to_string()),
            (Shape::List(item), Value::Array(a)) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for x in a {
                    seq.serialize_element(&Conform {
                        shape: item,
                        value: Some(x),
                    })?;
                }
                seq.end()
            }
            (Shape::Struct(fields), Value::Object(m)) => {
                let mut out = s.serialize_map(None)?;
                let mut found = 0;
                let mut keys = InOrder::new(m);
                for (k, shape) in fields {
                    let value = keys.get(k);
                    found += usize::from(value.is_some());
                    out.serialize_entry(k, &Conform { shape, value })?;
                }
                // Only when some key was not declared (never, for a declared shape).
                if found < m.len() {
                    for (k, x) in m
                        .iter()
                        .filter(|(k, _)| !fields.iter().any(|(name, _)| name == *k))
                    {
                        out.serialize_entry(k, x)?;
                    }
                }
                out.end()
            }
            _ => v.serialize(s),
        }
    }
}

/// Looks keys up in a map that usually holds them in the order they are asked for
/// (a record's keys in its schema's order): the map's next entry is compared first,
/// and only a miss hashes the key (serde_json's map hashes with SipHash). Returns
/// what `map.get` returns.
struct InOrder<'a> {
    map: &'a Map<String, Value>,
    rest: serde_json::map::Iter<'a>,
    next: Option<(&'a String, &'a Value)>,
}

impl<'a> InOrder<'a> {
    fn new(map: &'a Map<String, Value>) -> InOrder<'a> {
        let mut rest = map.iter();
        let next = rest.next();
        InOrder { map, rest, next }
    }

    /// Step over the next entries while their key is one of `keys` (keys never asked for).
    fn skip(&mut self, keys: [&str; 2]) {
        while self.next.is_some_and(|(k, _)| keys.contains(&k.as_str())) {
            self.next = self.rest.next();
        }
    }

    fn get(&mut self, key: &str) -> Option<&'a Value> {
        match self.next {
            Some((k, v)) if k == key => {
                self.next = self.rest.next();
                Some(v)
            }
            _ => self.map.get(key),
        }
    }
}

/// The one schema of a run's output: the kept records' columns (`id`, the input's
/// fields, `meta`) and the rejected records' (`id`, `stage`, `reason`, `detail`,
/// `source`, `record` (a kept row's shape), `raw`, `raw_bytes`).
#[derive(Debug, Clone)]
pub struct OutputSchema {
    /// Name of the id column (the input's `[input.fields] id`).
    id_field: String,
    /// Name of the annotations column (`[output] meta_field`).
    meta_field: String,
    /// The input's fields, in order of first appearance, without `id` and `meta`.
    fields: Vec<(String, Shape)>,
    /// Position of each of `fields` by name.
    index: HashMap<String, usize>,
    /// The keys of `meta`: the input's own `meta` keys, then the annotations.
    meta: Vec<(String, Shape)>,
}

impl OutputSchema {
    /// The schema from the scanned shape of the input's records (a struct, or
    /// [`Shape::Null`] for no records), the fields stages add, and the annotations.
    pub fn new(
        id_field: &str,
        meta_field: &str,
        input: Shape,
        added_fields: Vec<(String, Shape)>,
        annotations: Vec<(String, Shape)>,
    ) -> OutputSchema {
        let mut row = match input {
            Shape::Struct(f) => f,
            _ => Vec::new(),
        };
        for (k, s) in added_fields {
            merge_field(&mut row, k, s);
        }
        let mut meta = Vec::new();
        let mut fields = Vec::new();
        for (k, s) in row {
            if k == meta_field {
                // The input's own `meta`: its keys are merged with the annotations (a
                // non-object `meta` is kept under `meta.input`, as `Record::to_output` does).
                match s {
                    Shape::Struct(m) => meta = m,
                    Shape::Null => {}
                    other => meta = vec![("input".to_string(), other)],
                }
            } else if k != id_field {
                fields.push((k, s.settled()));
            }
        }
        // Annotations replace an input key of the same name, as in `Record::to_output`.
        for (k, s) in annotations {
            match meta.iter_mut().find(|(name, _)| *name == k) {
                Some(slot) => slot.1 = s,
                None => meta.push((k, s)),
            }
        }
        let meta = match Shape::Struct(meta).settled() {
            Shape::Struct(m) => m,
            _ => Vec::new(),
        };
        let index = fields
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        OutputSchema {
            id_field: id_field.to_string(),
            meta_field: meta_field.to_string(),
            fields,
            index,
            meta,
        }
    }

    /// The shape of one kept row: `id`, the fields, `meta` (when anything writes there).
    pub fn row_shape(&self) -> Shape {
        let mut cols = vec![(self.id_field.clone(), Shape::Str)];
        cols.extend(self.fields.iter().cloned());
        if !self.meta.is_empty() {
            cols.push((self.meta_field.clone(), Shape::Struct(self.meta.clone())));
        }
        Shape::Struct(cols)
    }

    /// The shape of one rejected row.
    pub fn rejected_shape(&self) -> Shape {
        Shape::object(&[
            ("id", Shape::Str),
            ("stage", Shape::Str),
            ("reason", Shape::Str),
            ("detail", Shape::Str),
            ("source", Shape::Str),
            ("record", self.row_shape()),
            ("raw", Shape::Str),
            ("raw_bytes", Shape::Int),
        ])
    }

    /// The Arrow schema of the kept parts.
    pub fn kept_arrow(&self) -> SchemaRef {
        arrow_schema_of(&self.row_shape())
    }

    /// The Arrow schema of the rejected parts.
    pub fn rejected_arrow(&self) -> SchemaRef {
        arrow_schema_of(&self.rejected_shape())
    }

    /// `features.json`: the kept and rejected rows as Hugging Face features, for JSON
    /// Lines readers that infer types from the first file (where a column may be all null).
    pub fn features_json(&self) -> Value {
        serde_json::json!({
            "kept": self.row_shape().hf_feature(),
            "rejected": self.rejected_shape().hf_feature(),
        })
    }

    /// Serialize `rec` as one kept row (one JSON line), conformed to the schema.
    pub fn write_row(&self, rec: &Record, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, &RowView { schema: self, rec })
            .expect("JSON values always serialize");
        out.push(b'\n');
    }
}

fn merge_field(fields: &mut Vec<(String, Shape)>, k: String, s: Shape) {
    match fields.iter_mut().find(|(name, _)| *name == k) {
        Some(slot) => slot.1 = std::mem::replace(&mut slot.1, Shape::Null).merge(s),
        None => fields.push((k, s)),
    }
}

fn arrow_schema_of(row: &Shape) -> SchemaRef {
    let Shape::Struct(cols) = row else {
        unreachable!("a row is a struct")
    };
    Arc::new(ArrowSchema::new(arrow_fields(cols)))
}

/// A kept record in its output form, serialized from its parts (this runs once per
/// kept record, so nothing is copied or re-parsed).
struct RowView<'a> {
    schema: &'a OutputSchema,
    rec: &'a Record,
}

impl Serialize for RowView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (sc, r) = (self.schema, self.rec);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(&sc.id_field, &r.id)?;
        let mut found = usize::from(r.fields.contains_key(&sc.id_field))
            + usize::from(r.fields.contains_key(&sc.meta_field));
        let mut keys = InOrder::new(&r.fields);
        for (k, shape) in &sc.fields {
            keys.skip([&sc.id_field, &sc.meta_field]);
            let value = keys.get(k);
            found += usize::from(value.is_some());
            m.serialize_entry(k, &Conform { shape, value })?;
        }
        // A field the scan did not see (it cannot happen for input fields; a stage
        // that adds one must declare it): written rather than lost.
        if found < r.fields.len() {
            for (k, v) in &r.fields {
                if *k != sc.id_field && *k != sc.meta_field && !sc.index.contains_key(k) {
                    m.serialize_entry(k, v)?;
                }
            }
        }
        if !sc.meta.is_empty() {
            m.serialize_entry(&sc.meta_field, &MetaView { schema: sc, rec: r })?;
        }
        m.end()
    }
}

/// A record's `meta`: its annotations over the input's own `meta` keys.
struct MetaView<'a> {
    schema: &'a OutputSchema,
    rec: &'a Record,
}

impl Serialize for MetaView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (sc, r) = (self.schema, self.rec);
        let input_meta: Option<&Map<String, Value>> = match r.fields.get(&sc.meta_field) {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        };
        let input_scalar = match r.fields.get(&sc.meta_field) {
            Some(Value::Object(_)) | Some(Value::Null) | None => None,
            Some(other) => Some(other),
        };
        let mut m = s.serialize_map(None)?;
        let mut annotated = 0;
        let mut mine_in_order = InOrder::new(&r.meta);
        let mut input_in_order = input_meta.map(InOrder::new);
        for (k, shape) in &sc.meta {
            let mine = mine_in_order.get(k);
            annotated += usize::from(mine.is_some());
            let value = mine
                .or_else(|| input_in_order.as_mut().and_then(|im| im.get(k)))
                .or_else(|| (k == "input").then_some(input_scalar).flatten());
            m.serialize_entry(k, &Conform { shape, value })?;
        }
        if annotated < r.meta.len() {
            for (k, v) in &r.meta {
                if !sc.meta.iter().any(|(name, _)| name == k) {
                    m.serialize_entry(k, v)?;
                }
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conformed(shape: &Shape, v: Value) -> String {
        serde_json::to_string(&Conform {
            shape,
            value: Some(&v),
        })
        .unwrap()
    }

    #[test]
    fn observe_widens_to_the_union_and_conflicts_become_json() {
        let mut s = Shape::Null;
        s.observe(&json!({"a": 1, "hits": []}));
        s.observe(&json!({"b": "x", "a": 2.5, "hits": [{"c": "p"}]}));
        s.observe(&json!({"a": null, "c": [1, "two"]}));
        assert_eq!(
            s,
            Shape::object(&[
                ("a", Shape::Float),
                ("hits", Shape::list(Shape::object(&[("c", Shape::Str)]))),
                ("b", Shape::Str),
                ("c", Shape::list(Shape::Json)),
            ])
        );
        let merged = Shape::of(&json!({"x": 1})).merge(Shape::of(&json!({"y": true, "x": "s"})));
        assert_eq!(merged, Shape::object(&[("x", Shape::Json), ("y", Shape::Bool)]));
        assert_eq!(
            Shape::of(&json!({"e": {}})).settled(),
            Shape::object(&[("e", Shape::Json)])
        );
    }

    #[test]
    fn conform_writes_every_key_in_order_and_json_as_text() {
        let shape = Shape::object(&[
            ("lang", Shape::Str),
            ("via", Shape::Str),
            (
                "hits",
                Shape::list(Shape::object(&[("c", Shape::Str), ("n", Shape::Int)])),
            ),
            ("any", Shape::Json),
        ]);
        assert_eq!(
            conformed(&shape, json!({"hits": [{"n": 1}], "lang": "zh", "any": [1]})),
            r#"{"lang":"zh","via":null,"hits":[{"c":null,"n":1}],"any":"[1]"}"#
        );
        assert_eq!(conformed(&shape, json!(null)), "null");
        // Undeclared keys are kept after the declared ones (tests/stage_compliance.rs
        // fails a stage that writes one); a number in a text place becomes text.
        assert_eq!(
            conformed(&shape, json!({"lang": "en", "new": 1})),
            r#"{"lang":"en","via":null,"hits":null,"any":null,"new":1}"#
        );
        assert_eq!(conformed(&Shape::Str, json!(7)), r#""7""#);
    }

    #[test]
    fn rows_have_id_first_every_field_and_merged_meta() {
        let input = Shape::of(&json!({"id": 1, "text": "t", "url": "u", "meta": {"src": "a"}}));
        let sc = OutputSchema::new(
            "id",
            "meta",
            input,
            vec![],
            vec![("length".into(), Shape::object(&[("chars", Shape::Int)]))],
        );
        let mut r = crate::record::test_record(json!({"text": "hi", "meta": {"src": "b"}}));
        r.annotate("length", json!({"chars": 2}));
        let mut line = Vec::new();
        sc.write_row(&r, &mut line);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"id\":\"t:1\",\"text\":\"hi\",\"url\":null,\"meta\":{\"src\":\"b\",\"length\":{\"chars\":2}}}\n"
        );
        let arrow = sc.kept_arrow();
        let names: Vec<&str> = arrow.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "text", "url", "meta"]);
    }
}

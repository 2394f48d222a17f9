//! The schema scan: before the main pass the input is read once more and the shape
//! of every record's fields is merged into one (`src/shape.rs`), so that the output
//! schema is fixed before the first part is written. It reads the same records the
//! run reads (`--limit` included); every JSON object counts, so a rejected malformed
//! object's fields have their columns too. It walks each object's JSON without
//! building it ([`ShapeSeed`]: no strings are copied), so it costs a fraction of the
//! parse step; HTML pages have known fields and the reader's `meta.decode`, so they are
//! counted, not read.
//!
//! Every rank of a sharded run scans every source (a rank's `--limit` applies to each
//! source, a superset of what any rank reads), so all ranks write one schema. A
//! resumed run scans again: the input is the one the checkpoint was made from
//! (the fingerprint says so), so the schema is the same.

use std::fmt;

use anyhow::Result;
use rayon::prelude::*;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::options::RunOptions;
use crate::config::Pipeline;
use crate::io::{self, Payload, RawItem, Source, SourceKind};
use crate::record::FieldMap;
use crate::shape::{OutputSchema, Shape};
use crate::stage::PipelineStage;

/// The shapes the scan found: the records' fields and the reader's annotations.
struct Scanned {
    fields: Shape,
    meta: Shape,
}

impl Scanned {
    fn empty() -> Scanned {
        Scanned {
            fields: Shape::Null,
            meta: Shape::Null,
        }
    }

    /// Widen the shapes by one raw item, as the parse step would turn it into fields.
    fn observe(mut self, item: &RawItem, map: &FieldMap) -> Scanned {
        match &item.payload {
            Payload::Json(bytes) => observe_json(&mut self.fields, bytes),
            Payload::Row(text) => observe_json(&mut self.fields, text.as_bytes()),
            Payload::Html { .. } => return self.observe_page(map),
            // Rejected with its raw text only: no fields.
            Payload::Malformed { .. } => {}
        }
        self
    }

    /// Widen the shapes by an HTML page: its id and text, and `meta.decode`.
    fn observe_page(mut self, map: &FieldMap) -> Scanned {
        let page = [(map.id.as_str(), Shape::Str), (map.html.as_str(), Shape::Str)];
        self.fields = std::mem::replace(&mut self.fields, Shape::Null).merge(Shape::object(&page));
        let decode = Shape::object(&[("decode", io::html::decode_shape())]);
        self.meta = std::mem::replace(&mut self.meta, Shape::Null).merge(decode);
        self
    }

    fn merge(self, other: Scanned) -> Scanned {
        Scanned {
            fields: self.fields.merge(other.fields),
            meta: self.meta.merge(other.meta),
        }
    }
}

/// Widen `fields` by one JSON object's keys and values, without building the value.
/// Anything else (an array, a scalar, broken JSON) is a `malformed` record without
/// fields: skipped. A broken object may have widened the shape by its readable head,
/// which only adds columns that stay null.
fn observe_json(fields: &mut Shape, bytes: &[u8]) {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return;
    }
    // Valid UTF-8 (checked by SIMD) is parsed as a `str`, whose strings serde_json does
    // not check again; anything else as bytes, as before (its readable head counts).
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => {
            let _ = ShapeSeed(fields).deserialize(&mut serde_json::Deserializer::from_str(text));
        }
        Err(_) => {
            let _ = ShapeSeed(fields).deserialize(&mut serde_json::Deserializer::from_slice(bytes));
        }
    }
}

/// Widens a shape by the value it deserializes (the rules of [`Shape::observe`]).
struct ShapeSeed<'a>(&'a mut Shape);

impl ShapeSeed<'_> {
    /// A scalar of shape `kind` was seen.
    fn scalar(self, kind: Shape) {
        let s = self.0;
        let next = match (&*s, kind) {
            (Shape::Json, _) | (Shape::Float, Shape::Int) => return,
            (Shape::Null, k) => k,
            (Shape::Int, Shape::Float) => Shape::Float,
            (a, k) if *a == k => return,
            _ => Shape::Json,
        };
        *s = next;
    }
}

impl<'de> DeserializeSeed<'de> for ShapeSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ShapeSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.scalar(Shape::Bool);
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.scalar(Shape::Int);
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.scalar(if i64::try_from(v).is_ok() {
            Shape::Int
        } else {
            Shape::Float
        });
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.scalar(Shape::Float);
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.scalar(Shape::Str);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let s = self.0;
        if *s == Shape::Null {
            *s = Shape::list(Shape::Null);
        }
        match s {
            Shape::List(item) => while seq.next_element_seed(ShapeSeed(item.as_mut()))?.is_some() {},
            other => {
                *other = Shape::Json;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let s = self.0;
        if *s == Shape::Null {
            *s = Shape::Struct(Vec::new());
        }
        match s {
            Shape::Struct(fields) => {
                while let Some(i) = map.next_key_seed(KeySeed(&mut *fields))? {
                    map.next_value_seed(ShapeSeed(&mut fields[i].1))?;
                }
            }
            other => {
                *other = Shape::Json;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            }
        }
        Ok(())
    }
}

/// Finds an object key among a struct's fields (adding it when new): its position.
struct KeySeed<'a>(&'a mut Vec<(String, Shape)>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, k: &str) -> Result<usize, E> {
        Ok(match self.0.iter().position(|(name, _)| name == k) {
            Some(i) => i,
            None => {
                self.0.push((k.to_string(), Shape::Null));
                self.0.len() - 1
            }
        })
    }
}

/// Scan the input and fix the run's output schema: the input's fields, the fields
/// and annotations the stages declare, the reader's annotations.
pub(super) fn output_schema(
    pipeline: &Pipeline,
    opts: &RunOptions,
    sources: &[Source],
    stages: &[PipelineStage],
    pool: &rayon::ThreadPool,
) -> Result<OutputSchema> {
    let map = &pipeline.input.fields;
    let per_source = opts.rank.is_some();
    let mut left = opts.limit.unwrap_or(u64::MAX);
    let batch = pipeline.run.batch_records.max(1);
    let mut scanned = Scanned::empty();
    for source in sources {
        if per_source {
            left = opts.limit.unwrap_or(u64::MAX);
        }
        if source.remote.is_none() && matches!(source.kind, SourceKind::HtmlDir | SourceKind::HtmlFile) {
            // A page's shape is known without reading it (reading every page
            // again was a sixteenth of an extract-only run); a page that turns
            // out unreadable leaves its columns null.
            let pages = match source.kind {
                SourceKind::HtmlDir => io::html::list_pages(&source.path)?.len() as u64,
                _ => 1,
            };
            if pages.min(left) > 0 {
                scanned = scanned.observe_page(map);
            }
            left -= pages.min(left);
            continue;
        }
        let mut reader = io::open_source(source, pipeline.input.max_record_bytes, map)?;
        while left > 0 {
            let room = left.min(batch as u64) as usize;
            let items: Vec<RawItem> = std::iter::from_fn(|| reader.next_item()).take(room).collect();
            if items.is_empty() {
                break;
            }
            left -= items.len() as u64;
            // Folded in order (rayon's reduce keeps it), so keys come in order of first
            // appearance whatever the thread count.
            let found = pool.install(|| {
                items
                    .par_iter()
                    .fold(Scanned::empty, |acc, item| acc.observe(item, map))
                    .reduce(Scanned::empty, Scanned::merge)
            });
            scanned = scanned.merge(found);
        }
    }
    let added = stages.iter().flat_map(|s| s.added_fields(map)).collect();
    let mut annotations: Vec<(String, Shape)> = match scanned.meta {
        Shape::Struct(reader) => reader,
        _ => Vec::new(),
    };
    for (key, shape) in stages.iter().flat_map(|s| s.annotations()) {
        // Two stages of one kind write the same key: the union of their shapes.
        match annotations.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = std::mem::replace(&mut slot.1, Shape::Null).merge(shape),
            None => annotations.push((key.to_string(), shape)),
        }
    }
    Ok(OutputSchema::new(
        &map.id,
        &pipeline.output.meta_field,
        scanned.fields,
        added,
        annotations,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walking_the_json_gives_the_shape_of_the_parsed_values() {
        let lines = [
            r#"{"id": 1, "tags": [], "meta": {"a": null}, "n": 3}"#,
            r#"{"tags": ["x"], "meta": {"a": {"b": 1}}, "n": 2.5, "big": 18446744073709551615}"#,
            r#"{"turns": [{"from": "h", "value": "v"}, {"from": "g", "w": true}], "n": -1, "mix": "s"}"#,
            r#"{"mix": [1], "nested": {"deep": [[1, 2], []]}, "s": "esc\"aped"}"#,
            r#"[1, 2]"#,
            r#"{"broken": tru"#,
        ];
        let mut walked = Shape::Null;
        let mut parsed = Shape::Null;
        for line in lines {
            observe_json(&mut walked, line.as_bytes());
            if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(line) {
                parsed.observe_object(&m);
            }
        }
        // The broken object's head adds a column that stays null; otherwise the same.
        let Shape::Struct(mut w) = walked else {
            panic!("a struct")
        };
        assert_eq!(w.pop(), Some(("broken".to_string(), Shape::Null)));
        assert_eq!(Shape::Struct(w), parsed);
    }
}

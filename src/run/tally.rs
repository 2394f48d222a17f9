//! The report's books of each batch: the histogram of every score a stage declares
//! (`Stage::scores`), split by what the stage did, and the records nearest its
//! threshold (`StageStats::scores` in `stats.json`).
//!
//! They are kept in the main pass, on the main thread in input order, in the
//! checkpoint's stats, rather than computed afterwards from the written parts: the
//! books are then saved with every unit's checkpoint, so a resumed run continues
//! them exactly as it continues the stage counts; they need no second read of the
//! output (JSONL or Parquet); and they add up over the ranks of a sharded run.
//! Counts do not depend on order, and examples are chosen by (distance to the
//! threshold, position in the input), so neither depends on the thread count.
//!
//! What a stage did comes from the executor, not from the annotation: dropped by
//! it (the rejection's stage), tagged by it ([`Record::tagged_by`]) or passed.
//!
//! [`Record::tagged_by`]: crate::record::Record::tagged_by

use serde_json::{Map, Value};

use super::read::{preview, Slot};
use crate::stage::PipelineStage;
use crate::stats::{Outcome, ScoreExample, StageStats};

/// Characters of a record's text shown beside its score.
const PREVIEW_CHARS: usize = 300;

/// Start the score books of a fresh run (a resumed one has them from its checkpoint).
pub(super) fn init_scores(books: &mut [StageStats], stages: &[PipelineStage]) {
    for (i, stage) in stages.iter().enumerate() {
        let b = &mut books[i + 1];
        if b.scores.is_empty() {
            b.scores = stage
                .scores()
                .into_iter()
                .map(crate::stats::ScoreStats::new)
                .collect();
        }
    }
}

/// Count the scores of a batch whose stages have run. `books[0]` is the reader's;
/// `at` is the batch's (input source number, number of its first item in the source).
pub(super) fn tally_scores(
    books: &mut [StageStats],
    slots: &[Slot],
    at: (usize, u64),
    meta_field: &str,
    stages: &[PipelineStage],
) {
    for (i, b) in books.iter_mut().enumerate().skip(1) {
        if b.scores.is_empty() {
            continue;
        }
        let stage = (i - 1) as u32;
        for (k, slot) in slots.iter().enumerate() {
            let (meta, outcome): (Option<&Map<String, Value>>, Outcome) = match slot {
                Slot::Live(rec) => (Some(&rec.meta), tagged_or_passed(&rec.tagged_by, stage)),
                Slot::Gone(rej) if rej.stage < i => continue,
                Slot::Gone(rej) => {
                    let meta = rej
                        .record
                        .as_ref()
                        .and_then(|r| r.get(meta_field))
                        .and_then(Value::as_object);
                    let outcome = if rej.stage == i {
                        Outcome::Dropped
                    } else {
                        tagged_or_passed(&rej.tagged_by, stage)
                    };
                    (meta, outcome)
                }
            };
            let Some(meta) = meta else { continue };
            let pos = [at.0 as u64, at.1 + k as u64];
            for sc in &mut b.scores {
                let Some(value) = sc.score.value_in(meta).filter(|v| v.is_finite()) else {
                    continue;
                };
                sc.count(value, outcome);
                if sc.wants_example(value, pos) {
                    sc.offer_example(example(
                        slot,
                        value,
                        sc.score.flagged(value),
                        outcome,
                        pos,
                        stages,
                    ));
                }
            }
        }
    }
}

fn tagged_or_passed(tagged_by: &[u32], stage: u32) -> Outcome {
    if tagged_by.contains(&stage) {
        Outcome::Tagged
    } else {
        Outcome::Passed
    }
}

/// An example for the report; the text as it may be shown to a person (PII masked by
/// whichever stage finds it).
fn example(
    slot: &Slot,
    value: f64,
    flagged_side: bool,
    outcome: Outcome,
    at: [u64; 2],
    stages: &[PipelineStage],
) -> ScoreExample {
    let (id, origin, text) = match slot {
        Slot::Live(rec) => (
            rec.id.clone(),
            rec.origin.to_string(),
            preview(&rec.full_text(), PREVIEW_CHARS),
        ),
        Slot::Gone(rej) => (rej.id.clone(), rej.origin.clone(), rej.preview.clone()),
    };
    let preview = stages
        .iter()
        .fold(text, |t, st| st.scrub_for_display(&t).unwrap_or(t));
    ScoreExample {
        value,
        flagged_side,
        outcome,
        id,
        origin,
        preview,
        at,
    }
}

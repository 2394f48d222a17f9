//! Personal data in text: where it is ([`PiiDetector::detect`]) and how it is
//! hidden ([`redact`]). The `pii` stage ([`crate::stages::pii`], whose docs list
//! every type) runs this on every text segment; tests and benchmarks call it
//! directly.
//!
//! Detection is regex candidates plus validation, tuned for precision:
//! `detect.rs` holds the types, the patterns, the checks of a candidate against
//! the text around it (digit runs, decimals, context words) and the choice
//! among overlapping finds; `validate.rs` holds the checks of a candidate's
//! value alone (a resident ID's region, birth date and check digit, a card's
//! issuer prefix and Luhn checksum).

mod detect;
mod validate;

pub use detect::{redact, PiiDetector, PiiSpan, PiiType};
pub use validate::{cn_id_check_char, luhn, valid_card, valid_cn_id15, valid_cn_id18, valid_date};

use hashbrown::HashMap;

use super::utils::{TrigramsWithPositions, get_trigrams_with_positions};
use super::{ARABIC_LANGS, CYRILLIC_LANGS, DEVANAGARI_LANGS, HEBREW_LANGS, LATIN_LANGS};
use super::{LangProfile, LangProfileList};
use super::{MAX_TOTAL_DISTANCE, MAX_TRIGRAM_DISTANCE, Trigram};
use crate::Lang;
use crate::core::{FilterList, Info, InternalQuery, Text, calculate_confidence};
use crate::scripts::grouping::MultiLangScript;

#[derive(Debug)]
pub struct RawOutcome {
    pub trigrams_count: usize,
    #[allow(dead_code)]
    pub raw_distances: Vec<(Lang, u32)>,
    pub scores: Vec<(Lang, f64)>,
}

#[inline]
pub fn detect(iquery: &InternalQuery) -> Option<Info> {
    let raw_outcome = raw_detect(iquery);
    let RawOutcome {
        trigrams_count,
        scores,
        ..
    } = raw_outcome;

    let mut raw_scores_iter = scores.into_iter();

    let opt_lang_score1 = raw_scores_iter.next();
    let opt_lang_score2 = raw_scores_iter.next();

    // TODO: Logic is duplicated in alphabets. Consider refactoring
    opt_lang_score1.map(|(lang1, score1)| {
        let script = iquery.multi_lang_script.to_script();
        let confidence = if let Some((_, score2)) = opt_lang_score2 {
            calculate_confidence(score1, score2, trigrams_count)
        } else {
            1.0
        };
        Info::new(script, lang1, confidence)
    })
}

#[inline]
pub fn raw_detect(iquery: &InternalQuery) -> RawOutcome {
    let lang_profile_list = script_to_lang_profile_list(iquery.multi_lang_script);
    let index = script_to_profile_index(iquery.multi_lang_script);
    calculate_scores_in_profiles(&iquery.text, iquery.filter_list, lang_profile_list, index)
}

// curate's change (vendor/README.md): the distances of a text to every profile of a
// script are computed from an inverted index (trigram -> its positions in the
// profiles), one lookup per text trigram (at most 600) instead of one per profile
// trigram (300 per language, ~12,000 for Latin). The sums are the same integers.

/// Where each trigram sits in the profiles of one script: (profile index, position).
pub struct ProfileIndex {
    positions: HashMap<Trigram, Vec<(u16, u16)>>,
}

impl ProfileIndex {
    fn build(list: LangProfileList) -> ProfileIndex {
        let mut positions: HashMap<Trigram, Vec<(u16, u16)>> = HashMap::new();
        for (p, (_, trigrams)) in list.iter().enumerate() {
            for (i, &t) in trigrams.iter().enumerate() {
                positions.entry(t).or_default().push((p as u16, i as u16));
            }
        }
        ProfileIndex { positions }
    }
}

fn script_to_profile_index(script: MultiLangScript) -> &'static ProfileIndex {
    use std::sync::OnceLock;
    use MultiLangScript as MLS;
    static LATIN: OnceLock<ProfileIndex> = OnceLock::new();
    static CYRILLIC: OnceLock<ProfileIndex> = OnceLock::new();
    static ARABIC: OnceLock<ProfileIndex> = OnceLock::new();
    static DEVANAGARI: OnceLock<ProfileIndex> = OnceLock::new();
    static HEBREW: OnceLock<ProfileIndex> = OnceLock::new();
    let cell = match script {
        MLS::Latin => &LATIN,
        MLS::Cyrillic => &CYRILLIC,
        MLS::Arabic => &ARABIC,
        MLS::Devanagari => &DEVANAGARI,
        MLS::Hebrew => &HEBREW,
    };
    cell.get_or_init(|| ProfileIndex::build(script_to_lang_profile_list(script)))
}

/// Per profile of the list: the sum over its trigrams found in the text of
/// |text position - profile position|, and how many were found.
fn matched_distances(
    index: &ProfileIndex,
    profiles: usize,
    text_trigrams: &HashMap<Trigram, u32>,
) -> Vec<(u32, u32)> {
    let mut sums = vec![(0u32, 0u32); profiles];
    for (trigram, &n) in text_trigrams {
        if let Some(hits) = index.positions.get(trigram) {
            for &(p, i) in hits {
                let s = &mut sums[p as usize];
                s.0 += (n as i32 - i as i32).unsigned_abs();
                s.1 += 1;
            }
        }
    }
    sums
}

fn script_to_lang_profile_list(script: MultiLangScript) -> LangProfileList {
    use MultiLangScript as MLS;
    match script {
        MLS::Latin => LATIN_LANGS,
        MLS::Cyrillic => CYRILLIC_LANGS,
        MLS::Arabic => ARABIC_LANGS,
        MLS::Devanagari => DEVANAGARI_LANGS,
        MLS::Hebrew => HEBREW_LANGS,
    }
}

#[inline]
fn calculate_scores_in_profiles(
    text: &Text,
    filter_list: &FilterList,
    lang_profile_list: LangProfileList,
    index: &ProfileIndex,
) -> RawOutcome {
    let mut lang_distances: Vec<(Lang, u32)> = vec![];

    let TrigramsWithPositions {
        trigram_positions, ..
    } = get_trigrams_with_positions(&text.lowercase());
    let unique_trigrams_count = trigram_positions.len();
    let matched = matched_distances(index, lang_profile_list.len(), &trigram_positions);

    for (&(lang, lang_trigrams), &(sum, found)) in lang_profile_list.iter().zip(&matched) {
        if !filter_list.is_allowed(lang) {
            continue;
        }
        let dist = distance_from_matches(lang_trigrams.len() as u32, sum, found, &trigram_positions);
        debug_assert_eq!(dist, calculate_distance(lang_trigrams, &trigram_positions));
        lang_distances.push(((lang), dist));
    }

    // Sort languages by distance
    lang_distances.sort_unstable_by_key(|(_, dist)| *dist);

    let max_dist = unique_trigrams_count as u32 * MAX_TRIGRAM_DISTANCE;

    let raw_scores = lang_distances
        .iter()
        .map(|&(lang, distance)| (lang, distance_to_raw_score(distance, max_dist)))
        .collect();

    RawOutcome {
        trigrams_count: unique_trigrams_count,
        scores: raw_scores,
        raw_distances: lang_distances,
    }
}

/// [`calculate_distance`] from the found trigrams' summed distance: each of the
/// profile's trigrams not in the text adds MAX_TRIGRAM_DISTANCE.
#[inline]
fn distance_from_matches(
    profile_len: u32,
    matched_sum: u32,
    found: u32,
    text_trigrams: &HashMap<Trigram, u32>,
) -> u32 {
    let mut total_dist = matched_sum + (profile_len - found) * MAX_TRIGRAM_DISTANCE;
    let count = text_trigrams.len() as u32;
    if MAX_TRIGRAM_DISTANCE > count {
        let delta = MAX_TRIGRAM_DISTANCE - count;
        total_dist = total_dist.wrapping_sub(delta * MAX_TRIGRAM_DISTANCE);
    }
    total_dist.clamp(0, MAX_TOTAL_DISTANCE)
}

#[inline]
#[cfg_attr(not(debug_assertions), allow(dead_code))]
fn calculate_distance(lang_trigrams: LangProfile, text_trigrams: &HashMap<Trigram, u32>) -> u32 {
    let mut total_dist = 0u32;

    for (i, &trigram) in lang_trigrams.iter().enumerate() {
        let dist = match text_trigrams.get(&trigram) {
            Some(&n) => (n as i32 - i as i32).unsigned_abs(),
            None => MAX_TRIGRAM_DISTANCE,
        };
        total_dist += dist;
    }

    let count = text_trigrams.len() as u32;

    if MAX_TRIGRAM_DISTANCE > count {
        let delta = MAX_TRIGRAM_DISTANCE - count;
        total_dist -= delta * MAX_TRIGRAM_DISTANCE;
    }

    total_dist.clamp(0, MAX_TOTAL_DISTANCE)
}

#[inline]
fn distance_to_raw_score(distance: u32, max_distance: u32) -> f64 {
    let similarity = max_distance - distance;
    similarity as f64 / max_distance as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_when_german_is_given() {
        let text = "Die Ordnung muss für immer in diesem Codebase bleiben";
        let iq = InternalQuery {
            text: Text::new(text),
            filter_list: &FilterList::default(),
            multi_lang_script: MultiLangScript::Latin,
        };
        let raw_outcome = raw_detect(&iq);

        assert_eq!(raw_outcome.trigrams_count, 50);

        let &(first_lang, first_score) = raw_outcome.scores.first().unwrap();
        let &(_last_lang, last_score) = raw_outcome.scores.last().unwrap();

        assert_eq!(first_lang, Lang::Deu);

        assert!(first_score >= 0.0);
        assert!(first_score <= 1.0);

        assert!(last_score >= 0.0);
        assert!(last_score <= 1.0);
    }
}

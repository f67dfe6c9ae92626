//! Lexical ranking for retrieval without an embedding model: Okapi BM25 over the chunks
//! being searched, with each score brought into 0..1 so a score threshold means the same
//! kind of thing as it does for cosine similarity.
//!
//! A chunk's normalised score is the share of the query's IDF weight it covers, each term
//! counting by its BM25 term weight capped at 1: a chunk of typical length that contains
//! every query term scores about 1, one that contains none scores 0, and rare terms count
//! for more than common ones. Chunks with equal normalised scores are ordered by their raw
//! BM25 score. Written here rather than taken from a crate: the crates on offer bring their
//! own tokenisers, stemmers and language detection for what is some fifty lines.

use std::collections::{HashMap, HashSet};

const K1: f64 = 1.2;
const B: f64 = 0.75;

/// Words too common to say what a text is about; they are dropped from queries and chunks.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "do", "does", "for", "from", "has",
    "have", "how", "i", "in", "is", "it", "its", "me", "my", "of", "on", "or", "so", "that", "the",
    "their", "there", "these", "this", "to", "was", "we", "were", "what", "when", "where", "which",
    "who", "why", "will", "with", "you", "your",
];

/// Lowercased words (runs of letters and digits), stop words left out.
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

/// One score per document, in order: (normalised score in 0..=1, raw BM25 score).
pub fn score<S: AsRef<str>>(query: &str, documents: &[S]) -> Vec<(f64, f64)> {
    let query_terms: HashSet<String> = tokenize(query).into_iter().collect();
    let documents: Vec<HashMap<String, usize>> = documents
        .iter()
        .map(|d| {
            let mut counts = HashMap::new();
            for term in tokenize(d.as_ref()) {
                *counts.entry(term).or_insert(0) += 1;
            }
            counts
        })
        .collect();
    let lengths: Vec<f64> = documents
        .iter()
        .map(|d| d.values().sum::<usize>() as f64)
        .collect();
    let n = documents.len() as f64;
    let average_length = (lengths.iter().sum::<f64>() / n.max(1.0)).max(1.0);
    let idf: Vec<(&String, f64)> = query_terms
        .iter()
        .map(|term| {
            let containing = documents.iter().filter(|d| d.contains_key(term)).count() as f64;
            (
                term,
                (1.0 + (n - containing + 0.5) / (containing + 0.5)).ln(),
            )
        })
        .collect();
    let total_idf: f64 = idf.iter().map(|(_, w)| w).sum();
    documents
        .iter()
        .zip(&lengths)
        .map(|(counts, length)| {
            let norm = K1 * (1.0 - B + B * length / average_length);
            let (mut covered, mut raw) = (0.0, 0.0);
            for (term, weight) in &idf {
                let tf = counts.get(*term).copied().unwrap_or(0) as f64;
                let term_weight = tf * (K1 + 1.0) / (tf + norm);
                raw += weight * term_weight;
                covered += weight * term_weight.min(1.0);
            }
            let normalised = if total_idf > 0.0 {
                (covered / total_idf).clamp(0.0, 1.0)
            } else {
                0.0
            };
            (normalised, raw)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNKS: [&str; 4] = [
        "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
        "Photosynthesis converts light energy into chemical energy in plants.",
        "Paris is the capital of France and its largest city.",
        "Bananas are rich in potassium.",
    ];

    #[test]
    fn tokens_are_lowercased_words_without_stop_words() {
        assert_eq!(
            tokenize("What is the Eiffel-Tower's height? 330m!"),
            ["eiffel", "tower", "s", "height", "330m"]
        );
    }

    #[test]
    fn the_chunk_about_the_query_ranks_first_and_unrelated_ones_score_zero() {
        let scores = score("What is the capital of France?", &CHUNKS);
        assert!(scores[2].0 > scores[0].0, "{scores:?}");
        assert!(scores[2].0 > 0.9, "{scores:?}");
        assert_eq!(scores[1].0, 0.0);
        assert_eq!(scores[3].0, 0.0);
    }

    #[test]
    fn covering_part_of_the_query_scores_in_between() {
        let scores = score("Eiffel tower photosynthesis", &CHUNKS);
        assert!(scores[0].0 > 0.4 && scores[0].0 < 0.9, "{scores:?}");
        assert!(scores[1].0 > 0.2 && scores[1].0 < 0.6, "{scores:?}");
        assert!(scores.iter().all(|(s, _)| (0.0..=1.0).contains(s)));
    }

    #[test]
    fn a_rare_term_counts_for_more_than_a_common_one() {
        let chunks = ["apple banana", "apple cherry", "apple durian", "banana"];
        let scores = score("apple durian", &chunks);
        // "durian" is in one chunk, "apple" in three.
        assert!(scores[2].0 > scores[0].0);
        assert!(scores[2].0 > 0.9);
    }

    #[test]
    fn a_query_of_stop_words_matches_nothing() {
        assert!(score("what is the", &CHUNKS).iter().all(|(s, _)| *s == 0.0));
        assert!(score("anything", &[] as &[&str]).is_empty());
    }
}

//! Splits a document's text into overlapping chunks of at most `chunk_size` characters.
//!
//! A chunk ends on the best boundary in the second half of its window: a paragraph break,
//! else a line break, else the end of a sentence, else a space; only a text with none of
//! these is cut mid-word. The next chunk starts `chunk_overlap` characters before that end,
//! moved forward to the start of a word, so the overlap repeats whole words.

/// One chunk and where it lies in the text, in characters (`end_char` exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub content: String,
    pub start_char: usize,
    pub end_char: usize,
}

pub const DEFAULT_CHUNK_SIZE: u32 = 1000;
pub const DEFAULT_CHUNK_OVERLAP: u32 = 200;
/// The contract's bounds on `chunk_size` and `chunk_overlap`.
pub const CHUNK_SIZE_RANGE: (i64, i64) = (100, 10_000);
pub const CHUNK_OVERLAP_RANGE: (i64, i64) = (0, 2_000);

/// Splits `text`; `overlap` must be below `size` (callers validate both).
pub fn split(text: &str, size: usize, overlap: usize) -> Vec<Chunk> {
    let chars: Vec<char> = text.chars().collect();
    let size = size.max(1);
    let overlap = overlap.min(size - 1);
    let mut chunks = Vec::new();
    let mut start = skip_whitespace(&chars, 0);
    while start < chars.len() {
        let window_end = (start + size).min(chars.len());
        let end = if window_end == chars.len() {
            window_end
        } else {
            boundary(&chars, start + size / 2, window_end).unwrap_or(window_end)
        };
        push_trimmed(&mut chunks, &chars, start, end);
        if end == chars.len() {
            break;
        }
        // Always move forward, even when the chunk ended early on a boundary.
        let mut next = end.saturating_sub(overlap).max(start + 1);
        while next < end && !starts_word(&chars, next) {
            next += 1;
        }
        start = skip_whitespace(&chars, next);
    }
    chunks
}

/// The best place to end a chunk within `from..=to` (the end is exclusive): just after a
/// paragraph break, a line break, a sentence's end or a space, searching from the end.
fn boundary(chars: &[char], from: usize, to: usize) -> Option<usize> {
    let after = |ok: &dyn Fn(usize) -> bool| (from.max(1)..=to).rev().find(|&i| ok(i));
    let is = |i: usize, c: char| chars.get(i) == Some(&c);
    after(&|i| i >= 2 && is(i - 1, '\n') && is(i - 2, '\n'))
        .or_else(|| after(&|i| is(i - 1, '\n')))
        .or_else(|| {
            after(&|i| {
                i >= 2
                    && chars[i - 1].is_whitespace()
                    && matches!(chars[i - 2], '.' | '!' | '?' | '。')
            })
        })
        .or_else(|| after(&|i| chars[i - 1].is_whitespace()))
}

fn starts_word(chars: &[char], i: usize) -> bool {
    i == 0 || chars[i - 1].is_whitespace()
}

fn skip_whitespace(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

fn push_trimmed(chunks: &mut Vec<Chunk>, chars: &[char], mut start: usize, mut end: usize) {
    while start < end && chars[start].is_whitespace() {
        start += 1;
    }
    while end > start && chars[end - 1].is_whitespace() {
        end -= 1;
    }
    if start < end {
        chunks.push(Chunk {
            content: chars[start..end].iter().collect(),
            start_char: start,
            end_char: end,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let paragraph = |n: usize| {
            (0..12)
                .map(|i| format!("Sentence {i} of paragraph {n} says something."))
                .collect::<Vec<_>>()
                .join(" ")
        };
        (0..6).map(paragraph).collect::<Vec<_>>().join("\n\n")
    }

    #[test]
    fn every_chunk_fits_and_the_chunks_cover_the_text() {
        let text = sample();
        let chars: Vec<char> = text.chars().collect();
        let chunks = split(&text, 300, 60);
        assert!(chunks.len() > 5);
        let mut covered = vec![false; chars.len()];
        for chunk in &chunks {
            assert!(chunk.content.chars().count() <= 300);
            let slice: String = chars[chunk.start_char..chunk.end_char].iter().collect();
            assert_eq!(slice, chunk.content);
            covered[chunk.start_char..chunk.end_char].fill(true);
        }
        for (i, c) in chars.iter().enumerate() {
            assert!(
                covered[i] || c.is_whitespace(),
                "character {i} ({c:?}) is in no chunk"
            );
        }
    }

    #[test]
    fn chunks_end_on_sentences_and_overlap_by_whole_words() {
        let text = sample();
        let chunks = split(&text, 300, 60);
        for pair in chunks.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(a.content.ends_with('.'), "{:?}", a.content);
            assert!(
                b.start_char < a.end_char,
                "no overlap between {a:?} and {b:?}"
            );
            assert!(b.start_char > a.start_char);
            let first_word = b.content.split_whitespace().next().unwrap();
            assert!(a.content.contains(first_word));
        }
    }

    #[test]
    fn a_paragraph_break_is_preferred() {
        let text = format!(
            "{}\n\n{}",
            "word ".repeat(30).trim(),
            "next ".repeat(30).trim()
        );
        let chunks = split(&text, 200, 0);
        assert_eq!(chunks[0].content, "word ".repeat(30).trim());
        assert!(chunks[1].content.starts_with("next"));
    }

    #[test]
    fn text_without_spaces_is_cut_at_the_size_and_still_moves_forward() {
        let text = "x".repeat(1_000);
        let chunks = split(&text, 100, 99);
        assert!(chunks.iter().all(|c| c.content.chars().count() <= 100));
        assert_eq!(chunks.last().unwrap().end_char, 1_000);
        assert!(chunks.windows(2).all(|p| p[1].start_char > p[0].start_char));
    }

    #[test]
    fn offsets_count_characters_not_bytes() {
        let text = "héllo wörld ".repeat(50);
        let chunks = split(&text, 100, 10);
        let chars: Vec<char> = text.chars().collect();
        for chunk in chunks {
            let slice: String = chars[chunk.start_char..chunk.end_char].iter().collect();
            assert_eq!(slice, chunk.content);
        }
    }

    #[test]
    fn short_and_empty_texts() {
        assert_eq!(split("  hello  ", 100, 20).len(), 1);
        assert_eq!(split("  hello  ", 100, 20)[0].content, "hello");
        assert!(split(" \n ", 100, 20).is_empty());
    }
}

use super::*;
use crate::domain::{DocumentStatus, DocumentType, NewDocument};

fn document() -> Document {
    let mut document = Document::create(
        "alice",
        NewDocument {
            title: Some("Guide".into()),
            description: None,
            tags: Some(vec!["a".into(), "b".into()]),
            is_public: false,
            filename: "guide.md".into(),
            file_size: 12,
            file_hash: "00".into(),
            mime_type: "text/markdown".into(),
            document_type: DocumentType::Markdown,
            chunk_size: 1000,
            chunk_overlap: 200,
        },
    );
    document.id = "d-1".into();
    document.status = DocumentStatus::Processed;
    document.processing_completed_at = Some(crate::domain::now());
    document.chunk_count = 1;
    document
}

fn chunk() -> DocumentChunk {
    let now = crate::domain::now();
    DocumentChunk {
        id: "c-1".into(),
        document_id: "d-1".into(),
        content: "Hello".into(),
        chunk_index: 7,
        start_char: Some(0),
        end_char: Some(5),
        extra_metadata: None,
        token_count: Some(2),
        language: None,
        embedding_model: Some("embed-x".into()),
        embedding_provider: Some("default".into()),
        embedding_created_at: Some(now),
        content_hash: "ab".into(),
        created_at: now,
        updated_at: now,
    }
}

#[test]
fn a_document_survives_the_round_trip() {
    let stored = DocumentItem::new(document());
    let item = to_item(&stored).unwrap();
    assert_eq!(item["pk"], AttributeValue::S("DOC#d-1".into()));
    assert_eq!(item["gsi1pk"], AttributeValue::S("USER#alice#DOCS".into()));
    assert_eq!(item["status"], AttributeValue::S("processed".into()));
    let back: DocumentItem = from_item(item).unwrap();
    assert_eq!(back, stored);
}

#[test]
fn a_chunks_vector_is_stored_as_little_endian_bytes_and_comes_back_exactly() {
    let vector = vec![0.5_f32, -1.25, 3.0e-7, f32::MAX];
    let stored = ChunkItem::new("alice", chunk(), Some(vector.clone()));
    let item = to_item(&stored).unwrap();
    let AttributeValue::B(blob) = &item["embedding"] else {
        panic!(
            "the vector is not a binary attribute: {:?}",
            item["embedding"]
        );
    };
    assert_eq!(blob.as_ref().len(), 16);
    assert_eq!(&blob.as_ref()[..4], &0.5_f32.to_le_bytes());
    assert_eq!(item["sk"], AttributeValue::S("CHUNK#000007".into()));
    assert_eq!(item["gsi1sk"], AttributeValue::S("d-1#000007".into()));
    let back: ChunkItem = from_item(item).unwrap();
    assert_eq!(back.embedding, Some(PackedVector(vector)));
    assert_eq!(back, stored);
}

#[test]
fn a_chunk_without_a_vector_has_no_vector_attribute() {
    let item = to_item(&ChunkItem::new("alice", chunk(), None)).unwrap();
    assert!(!item.contains_key("embedding"));
    let back: ChunkItem = from_item(item).unwrap();
    assert_eq!(back.embedding, None);
}

#[test]
fn a_vector_of_the_largest_common_size_fits_an_item_many_times_over() {
    let item = to_item(&ChunkItem::new("alice", chunk(), Some(vec![0.1; 3072]))).unwrap();
    assert!(super::super::items::item_size(&item) < 13_000);
}

#[test]
fn text_parts_split_on_character_boundaries() {
    let text = "ééé";
    assert_eq!(text_parts(text, 3), ["é", "é", "é"]);
    assert_eq!(text_parts("abcdef", 4), ["abcd", "ef"]);
    assert!(text_parts("", 4).is_empty());
}

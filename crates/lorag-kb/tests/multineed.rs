//! Multi-need requests (issue 17): a long request with two questions about two different
//! documents gets both documents, and one long document's many chunks do not crowd the other out.

use lorag_embed::{BertEmbedder, EmbedOptions};
use lorag_ingest::ChunkOptions;
use lorag_kb::{IngestOptions, SearchOptions};
use std::collections::HashSet;
use std::path::Path;

const BREAD: &str = "Sourdough bread is leavened by a starter of wild yeast and lactic acid bacteria. \
The starter is fed with flour and water every day and kept at room temperature. \
A typical loaf uses twenty percent starter by weight of the flour. \
After mixing, the dough rests for an autolyse of about thirty minutes. \
Bulk fermentation takes four to six hours at twenty-four degrees, with stretch and folds every half hour. \
The shaped loaf then proofs overnight in the refrigerator, which deepens the sour flavour. \
It is baked in a preheated Dutch oven at two hundred and fifty degrees for twenty minutes with the lid on. \
The lid comes off for another twenty-five minutes so that the crust browns and crackles. \
The bread must cool for at least an hour before slicing, or the crumb turns gummy. \
Rye and whole wheat flours ferment faster than white flour because they carry more enzymes.";

const CHESS: &str = "In chess, castling moves the king two squares towards a rook and puts the rook \
on the square the king crossed. It is allowed only if neither piece has moved, the squares between \
them are empty, and the king is not in check, does not pass through an attacked square and does not \
land on one.";

const VOLCANO: &str =
    "A stratovolcano is a tall, conical volcano built up by many layers of hardened \
lava and ash. Mount Fuji in Japan and Mount St. Helens in the United States are examples.";

fn kb(tmp: &Path) -> (BertEmbedder, std::sync::Arc<dyn lorag_kb::Store>) {
    let emb = BertEmbedder::load(
        &lorag_models::test_model("all-minilm-l6-v2"),
        &EmbedOptions::default(),
    )
    .unwrap();
    let docs = tmp.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("bread.txt"), BREAD).unwrap();
    std::fs::write(docs.join("chess.txt"), CHESS).unwrap();
    std::fs::write(docs.join("volcano.txt"), VOLCANO).unwrap();
    let opts = IngestOptions {
        // Small chunks: the bread document becomes many chunks.
        chunk: ChunkOptions {
            max_tokens: 24,
            overlap: 0,
        },
        ..IngestOptions::default()
    };
    let dir = tmp.join("kb");
    let r = lorag_kb::ingest(&dir, &[docs.to_string_lossy().into_owned()], &emb, &opts).unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert!(
        r.chunks >= 8,
        "the bread document is split into many chunks: {}",
        r.chunks
    );
    let store = lorag_kb::open_for_search(&dir, &emb).unwrap();
    (emb, store)
}

fn sources(hits: &[lorag_kb::Hit]) -> Vec<String> {
    hits.iter()
        .map(|h| {
            Path::new(&h.chunk.source)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

const REQUEST: &str = "I'm baking for a party on Saturday and my nephew is coming, so I have a \
couple of questions. First, how long should sourdough dough ferment and proof before it is baked, \
and at what oven temperature? Also, when is a chess player allowed to castle?";

#[test]
fn a_two_question_request_gets_both_documents_in_the_top_two() {
    let tmp = tempfile::tempdir().unwrap();
    let (emb, store) = kb(tmp.path());
    let hits = lorag_kb::search(
        &store,
        &emb,
        REQUEST,
        &SearchOptions {
            k: 2,
            ..SearchOptions::default()
        },
    )
    .unwrap();
    let got: HashSet<String> = sources(&hits).into_iter().collect();
    assert_eq!(
        got,
        ["bread".to_string(), "chess".to_string()].into(),
        "{:?}",
        sources(&hits)
    );
}

#[test]
fn the_per_source_cap_keeps_one_chunk_of_each_document() {
    let tmp = tempfile::tempdir().unwrap();
    let (emb, store) = kb(tmp.path());
    let q = "How long does sourdough proof, and how hot is the oven?";
    let uncapped = SearchOptions {
        k: 3,
        max_per_source: 0,
        split_needs: false,
        ..SearchOptions::default()
    };
    let hits = lorag_kb::search(&store, &emb, q, &uncapped).unwrap();
    assert!(
        sources(&hits).iter().all(|s| s == "bread"),
        "without the cap the long document fills the top 3: {:?}",
        sources(&hits)
    );
    let capped = SearchOptions {
        max_per_source: 1,
        ..uncapped
    };
    let hits = lorag_kb::search(&store, &emb, q, &capped).unwrap();
    let s = sources(&hits);
    assert_eq!(s.len(), 3, "{s:?}");
    assert_eq!(s[0], "bread");
    assert_eq!(
        s.iter().collect::<HashSet<_>>().len(),
        3,
        "one chunk per document: {s:?}"
    );
}

#[test]
fn a_single_question_is_searched_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let (emb, store) = kb(tmp.path());
    let q = "When is a chess player allowed to castle?";
    let plain = SearchOptions {
        k: 3,
        max_per_source: 0,
        split_needs: false,
        ..SearchOptions::default()
    };
    let split = SearchOptions {
        split_needs: true,
        ..plain.clone()
    };
    let a = lorag_kb::search(&store, &emb, q, &plain).unwrap();
    let b = lorag_kb::search(&store, &emb, q, &split).unwrap();
    let ids = |h: &[lorag_kb::Hit]| h.iter().map(|h| h.chunk.id).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(sources(&a)[0], "chess");
}

